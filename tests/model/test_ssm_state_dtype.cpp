// A 16-bit SSM state on the CPU reference (CpuModel::set_ssm_state, kernels/state_round.h):
// the states it keeps are on the storage type's grid, it stays close to the fp32 state, a batch
// rounds like each sequence alone, a kept row state equals the state of a shorter chunk (what
// the GPU's roll-back replay writes), and the backend option and snapshot tags reach it.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "fixture_util.h"
#include "kernels/state_round.h"
#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "model/checkpoint/weights.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using kernels::SsmStateFormat;
using kernels::StateDType;

namespace {

std::vector<int32_t> seed_ids(const Model& m, int n, uint32_t x = 99) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    ids.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(m.config.vocab_size)));
  }
  return ids;
}

// Every SSM element of every Mamba block lies on d's grid.
void expect_on_grid(const SequenceState& st, StateDType d) {
  int64_t checked = 0;
  for (const auto& b : st.blocks)
    for (float v : b.ssm) {
      ASSERT_EQ(kernels::round_state(v, d, false, 0), v);
      ++checked;
    }
  EXPECT_GT(checked, 0);
}

// The expert ids of every MoE block call of a run, in call order: recorded from the fp32 run
// and forced on the 16-bit runs, so that a rounding-level change of the state cannot break a
// near-tie of a random fixture's router (one flipped route moves logits by their whole spread).
struct RecordedRoutes {
  std::vector<std::vector<int32_t>> calls;
  std::size_t next = 0;
};

// Logits of every position of `ids` fed one token per call (decode-like) with format f;
// routes: recorded into (record) or replayed from.
std::vector<float> decode_logits(const Model& m, const std::vector<int32_t>& ids, const SsmStateFormat& f,
                                 SequenceState* out_state = nullptr, RecordedRoutes* routes = nullptr,
                                 bool record = false) {
  CpuModel cpu(m);
  cpu.set_ssm_state(f);
  const int64_t k = m.config.num_experts_per_tok;
  RoutingHook hook;
  if (routes && record)
    hook.observe = [&](int, int64_t rows, const float*, const int32_t* own) {
      routes->calls.emplace_back(own, own + rows * k);
    };
  if (routes && !record)
    hook.force = [&](int, int64_t rows) -> const int32_t* {
      EXPECT_LT(routes->next, routes->calls.size());
      if (routes->next >= routes->calls.size()) return nullptr;
      const auto& c = routes->calls[routes->next++];
      EXPECT_EQ(static_cast<int64_t>(c.size()), rows * k);
      return c.data();
    };
  RoutingScope scope(hook);
  SequenceState st = cpu.new_state();
  std::vector<float> all;
  for (int32_t t : ids) {
    const auto r = cpu.forward(st, &t, 1, false);
    all.insert(all.end(), r.logits.begin(), r.logits.end());
  }
  if (out_state) *out_state = st;
  return all;
}

class SsmStateDTypeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SsmStateDTypeTest, StatesAreOnTheGridAndCloseToFloat32) {
  const Model m = Model::load(nemotron::testing::fixture_dir(GetParam()));
  const auto ids = seed_ids(m, 48);
  RecordedRoutes routes;
  const auto ref = decode_logits(m, ids, {}, nullptr, &routes, true);
  for (StateDType d : {StateDType::BF16, StateDType::F16}) {
    for (bool sr : {true, false}) {
      SequenceState st;
      routes.next = 0;
      const auto got = decode_logits(m, ids, {d, sr}, &st, &routes);
      EXPECT_EQ(routes.next, routes.calls.size());
      expect_on_grid(st, d);
      ASSERT_EQ(got.size(), ref.size());
      double max_err = 0, rms = 0;
      for (std::size_t i = 0; i < ref.size(); ++i) {
        max_err = std::max(max_err, static_cast<double>(std::fabs(got[i] - ref[i])));
        rms += static_cast<double>(ref[i]) * ref[i];
      }
      rms = std::sqrt(rms / static_cast<double>(ref.size()));
      // A 16-bit state moves the logits, but by far less than their spread.
      EXPECT_GT(max_err, 0.0) << kernels::state_dtype_name(d) << " changed nothing";
      EXPECT_LT(max_err, 0.1 * rms + 0.05) << kernels::state_dtype_name(d) << (sr ? " stochastic" : " nearest");
    }
  }
}

TEST_P(SsmStateDTypeTest, ABatchRoundsLikeEachSequenceAlone) {
  const Model m = Model::load(nemotron::testing::fixture_dir(GetParam()));
  const SsmStateFormat f{StateDType::BF16, true};
  CpuModel cpu(m);
  cpu.set_ssm_state(f);
  const auto a = seed_ids(m, 9, 1), b = seed_ids(m, 5, 2);
  SequenceState sa = cpu.new_state(), sb = cpu.new_state();
  // Different positions in one step: a's prompt with b's; then one decode token each.
  auto r = cpu.forward_batch({{&sa, a.data(), 9, true}, {&sb, b.data(), 5, true}});
  const int32_t na = 3, nb = 4;
  auto r2 = cpu.forward_batch({{&sa, &na, 1, false}, {&sb, &nb, 1, false}});
  SequenceState xa = cpu.new_state(), xb = cpu.new_state();
  const auto ra = cpu.forward(xa, a.data(), 9, true);
  const auto rb = cpu.forward(xb, b.data(), 5, true);
  const auto ra2 = cpu.forward(xa, &na, 1, false);
  const auto rb2 = cpu.forward(xb, &nb, 1, false);
  EXPECT_EQ(r[0].logits, ra.logits);
  EXPECT_EQ(r[1].logits, rb.logits);
  EXPECT_EQ(r2[0].logits, ra2.logits);
  EXPECT_EQ(r2[1].logits, rb2.logits);
  for (std::size_t l = 0; l < sa.blocks.size(); ++l) {
    EXPECT_EQ(sa.blocks[l].ssm, xa.blocks[l].ssm) << l;
    EXPECT_EQ(sb.blocks[l].ssm, xb.blocks[l].ssm) << l;
  }
}

TEST_P(SsmStateDTypeTest, AKeptRowStateIsTheStateOfTheShorterChunk) {
  // Roll-back keeps the state after each row of a verify chunk: rounded as if the chunk had
  // ended there, so rolling back to row j equals having fed only rows 0..j (the GPU replays
  // the kept rows as one chunk and rounds once at its end).
  const Model m = Model::load(nemotron::testing::fixture_dir(GetParam()));
  for (StateDType d : {StateDType::BF16, StateDType::F16}) {
    CpuModel cpu(m);
    cpu.set_ssm_state({d, true});
    const auto prompt = seed_ids(m, 6, 5), chunk = seed_ids(m, 4, 6);
    SequenceState st = cpu.new_state();
    cpu.forward(st, prompt.data(), 6, false);
    const std::vector<BlockCache> before = st.blocks;
    RowStates rows;
    cpu.forward_batch({{&st, chunk.data(), 4, true, &rows}});
    for (int64_t keep = 0; keep <= 4; ++keep) {
      SequenceState rolled = st;
      roll_back_state(rolled, rows, before, 6 + keep, m.config.kv_dim());
      SequenceState fresh = cpu.new_state();
      cpu.forward(fresh, prompt.data(), 6, false);
      if (keep > 0) cpu.forward(fresh, chunk.data(), keep, false);
      ASSERT_EQ(rolled.pos, fresh.pos);
      for (std::size_t l = 0; l < fresh.blocks.size(); ++l)
        EXPECT_EQ(rolled.blocks[l].ssm, fresh.blocks[l].ssm) << kernels::state_dtype_name(d) << " keep " << keep
                                                              << " block " << l;
      // And the continuation from both is the same.
      const int32_t next = 7;
      EXPECT_EQ(cpu.forward(rolled, &next, 1, false).logits, cpu.forward(fresh, &next, 1, false).logits);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SsmStateDTypeTest, ::testing::Values("nano-moe", "super-latent-mtp"));

TEST(SsmStateDType, TheBackendOptionReachesTheForwardAndTagsSnapshots) {
  const Model m = Model::load(nemotron::testing::fixture_dir("nano-moe"));
  const auto ids = seed_ids(m, 12);
  auto last_logits = [&](const SsmStateFormat& f) {
    BackendOptions o;
    o.device = "cpu";
    o.ssm_state = f;
    auto b = make_backend(m, o);
    const int slot = b->acquire_slot();
    std::vector<float> out;
    for (int32_t t : ids) out = b->step({{.slot = slot, .ids = &t, .T = 1, .logits = LogitsOut::Last}})[0].logits;
    return out;
  };
  const SsmStateFormat bf16{StateDType::BF16, true};
  const auto ref = decode_logits(m, ids, bf16);
  const std::vector<float> ref_last(ref.end() - m.config.vocab_size, ref.end());
  EXPECT_EQ(last_logits(bf16), ref_last);
  EXPECT_NE(last_logits({}), ref_last);
}

TEST(SsmStateDType, SnapshotsImportOnlyIntoTheSameFormat) {
  const Model m = Model::load(nemotron::testing::fixture_dir("nano-moe"));
  const auto ids = seed_ids(m, 7);
  auto backend = [&](const SsmStateFormat& f) {
    BackendOptions o;
    o.device = "cpu";
    o.ssm_state = f;
    return make_backend(m, o);
  };
  auto src = backend({StateDType::BF16, true});
  const int slot = src->acquire_slot();
  src->step({{.slot = slot, .ids = ids.data(), .T = 7, .logits = LogitsOut::Last}});
  src->save_snapshot(slot, 1);
  const auto bytes = src->export_snapshot(1);
  EXPECT_NO_THROW(backend({StateDType::BF16, true})->import_snapshot(1, bytes));
  EXPECT_NO_THROW(backend({StateDType::BF16, false})->import_snapshot(1, bytes));  // the same grid
  for (const SsmStateFormat& other : {SsmStateFormat{}, SsmStateFormat{StateDType::F16, true}}) {
    try {
      backend(other)->import_snapshot(1, bytes);
      ADD_FAILURE() << "imported into " << kernels::state_dtype_name(other.dtype);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--mamba-ssm-cache-dtype"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
