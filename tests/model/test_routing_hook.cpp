// The CPU reference's routing hook (RoutingScope, used by the routing-aware GPU fixture
// tests): what it observes is the reference's own routing, forcing that routing changes
// nothing, forcing another routing really changes the computation, and bad ids are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "fixture_util.h"
#include "model/cpu/cpu_forward.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;
using nemotron::testing::max_abs_diff;

namespace {

struct RoutedRun {
  std::vector<float> logits;
  std::map<int, std::vector<int32_t>> own;  // block -> [rows, k]
};

RoutedRun run(const CpuModel& cpu, const std::vector<int32_t>& ids, const std::map<int, std::vector<int32_t>>* force,
        int64_t k, int64_t experts, bool check_top_k) {
  RoutedRun r;
  RoutingHook hook;
  hook.observe = [&](int block, int64_t rows, const float* scores, const int32_t* own) {
    r.own[block].assign(own, own + rows * k);
    if (!check_top_k) return;
    // n_group = 1: the chosen experts are exactly the k best selection scores of each row
    for (int64_t t = 0; t < rows; ++t) {
      const float* s = scores + t * experts;
      float worst_chosen = 1e30f;
      for (int64_t j = 0; j < k; ++j) worst_chosen = std::min(worst_chosen, s[own[t * k + j]]);
      for (int64_t e = 0; e < experts; ++e) {
        const bool chosen = std::find(own + t * k, own + (t + 1) * k, static_cast<int32_t>(e)) != own + (t + 1) * k;
        if (!chosen) {
          EXPECT_LE(s[e], worst_chosen) << "block " << block << " row " << t;
        }
      }
    }
  };
  if (force) {
    hook.force = [force](int block, int64_t) -> const int32_t* {
      auto it = force->find(block);
      return it == force->end() ? nullptr : it->second.data();
    };
  }
  RoutingScope scope(hook);
  auto st = cpu.new_state();
  r.logits = cpu.forward(st, ids.data(), static_cast<int64_t>(ids.size()), true).logits;
  return r;
}

TEST(RoutingHook, ObservesAndForcesTheReferenceRouting) {
  const Model m = Model::load(fixture_dir("nano-moe"));
  const CpuModel cpu(m);
  const Expected ex("nano-moe");
  const auto ids = ex.ids("p0.input_ids");
  const int64_t k = m.config.num_experts_per_tok, E = m.config.n_routed_experts;
  ASSERT_EQ(m.config.n_group, 1);

  auto plain_state = cpu.new_state();
  const auto plain = cpu.forward(plain_state, ids.data(), static_cast<int64_t>(ids.size()), true).logits;
  const RoutedRun observed = run(cpu, ids, nullptr, k, E, true);
  EXPECT_EQ(observed.logits, plain);  // observing changes nothing
  ASSERT_EQ(observed.own.size(), 4u);  // the four MoE blocks of MEM*EMEM*E

  // forcing the reference's own routes: bit-identical
  const RoutedRun same = run(cpu, ids, &observed.own, k, E, false);
  EXPECT_EQ(same.logits, plain);

  // forcing another route in one block (each row's last expert replaced by an unchosen one)
  auto other = observed.own;
  const int block = other.begin()->first;
  auto& routes = other[block];
  for (std::size_t t = 0; t * k < routes.size(); ++t) {
    for (int32_t e = 0; e < E; ++e) {
      if (std::find(routes.begin() + t * k, routes.begin() + (t + 1) * k, e) == routes.begin() + (t + 1) * k) {
        routes[t * k + k - 1] = e;
        break;
      }
    }
  }
  const RoutedRun forced = run(cpu, ids, &other, k, E, false);
  EXPECT_EQ(forced.own.at(block), observed.own.at(block));  // observe reports the block's own choice
  EXPECT_GT(max_abs_diff(forced.logits.data(), plain.data(), plain.size()), 1e-3f);

  // the hook only lives as long as its scope
  auto after_state = cpu.new_state();
  EXPECT_EQ(cpu.forward(after_state, ids.data(), static_cast<int64_t>(ids.size()), true).logits, plain);
}

TEST(RoutingHook, RefusesExpertIdsOutOfRange) {
  const Model m = Model::load(fixture_dir("nano-moe"));
  const CpuModel cpu(m);
  const auto ids = Expected("nano-moe").ids("p1.input_ids");
  const int64_t k = m.config.num_experts_per_tok, E = m.config.n_routed_experts;
  const RoutedRun observed = run(cpu, ids, nullptr, k, E, false);
  auto bad = observed.own;
  bad.begin()->second[0] = static_cast<int32_t>(E);
  EXPECT_THROW(run(cpu, ids, &bad, k, E, false), nemotron::Error);
}

}  // namespace
