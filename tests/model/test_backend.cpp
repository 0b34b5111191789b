// The one model interface (model/backend.h) on the CPU: what a step returns equals the CPU
// reference it wraps (logits, hidden rows, the MTP head, routing) and kernels::sample_cpu on
// those logits; a batch gives each sequence what it gets alone, sampled tokens included;
// every bad input is an Error before anything runs. The CUDA backend is held to the same
// tests against this one (tests/cuda).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "fixture_util.h"
#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

std::unique_ptr<Backend> cpu_backend(const Model& m, int slots = 4, int64_t rows = 256) {
  BackendOptions o;
  o.device = "cpu";
  o.max_seqs = slots;
  o.max_step_tokens = rows;
  return make_backend(m, o);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Backend, LogitsAndHiddenEqualTheReference) {
  const Model m = Model::load(fixture_dir("nano-moe"));
  const CpuModel cpu(m);
  const Expected ex("nano-moe");
  const auto ids = ex.ids("p0.input_ids");
  const auto T = static_cast<int64_t>(ids.size());
  auto state = cpu.new_state();
  const auto ref = cpu.forward(state, ids.data(), T, true);

  auto b = cpu_backend(m);
  EXPECT_STREQ(b->device(), "cpu");
  const int slot = b->acquire_slot();
  const auto out = b->step({{.slot = slot, .ids = ids.data(), .T = T, .logits = LogitsOut::All}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].logits, ref.logits);
  EXPECT_EQ(out[0].sample.token, -1);
  EXPECT_EQ(b->last_hidden(), ref.hidden);
  EXPECT_EQ(b->position(slot), T);

  // Last row only; greedy sampling is the argmax of that row.
  const int32_t tok = argmax(ref.logits.data() + (T - 1) * m.config.vocab_size, m.config.vocab_size);
  const auto ref2 = cpu.forward(state, &tok, 1, false);
  const auto out2 = b->step({{.slot = slot, .ids = &tok, .T = 1, .sample = true, .logits = LogitsOut::Last}});
  EXPECT_EQ(out2[0].logits, ref2.logits);
  EXPECT_EQ(out2[0].sample.token, argmax(ref2.logits.data(), m.config.vocab_size));
}

TEST(Backend, SampledTokensEqualSampleCpuAndABatchEqualsEachAlone) {
  const Model m = Model::load(fixture_dir("nano-moe"));
  const Expected ex("nano-moe");
  const int n = ex.num_prompts();
  ASSERT_GE(n, 2);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) prompts.push_back(ex.ids("p" + std::to_string(i) + ".input_ids"));
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.top_k = 40;
  p.repetition_penalty = 1.2f;
  p.presence_penalty = 0.3f;
  p.logprobs = 3;
  const int steps = 6;

  // Alone: each sequence on its own backend; the reference samples its logits with
  // sample_cpu and its own penalty state.
  std::vector<std::vector<int32_t>> alone(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto b = cpu_backend(m, 1);
    const int slot = b->acquire_slot();
    kernels::PenaltyState pen;
    kernels::penalty_observe_prompt(pen, prompts[i].data(), static_cast<int64_t>(prompts[i].size()));
    const int32_t* ids = prompts[i].data();
    int64_t T = static_cast<int64_t>(prompts[i].size());
    int32_t last = -1;
    for (int k = 0; k < steps; ++k) {
      const auto out = b->step({{.slot = slot, .ids = ids, .T = T, .sampling = &p, .sample = true,
                                 .seed = 100u + static_cast<uint64_t>(i), .draw = static_cast<uint64_t>(k),
                                 .logits = LogitsOut::Last}});
      const auto ref = kernels::sample_cpu(out[0].logits.data(), m.config.vocab_size, p, 100u + i, k, &pen);
      EXPECT_EQ(out[0].sample.token, ref.token);
      EXPECT_EQ(out[0].sample.logprob, ref.logprob);
      ASSERT_EQ(out[0].sample.top.size(), 3u);
      last = out[0].sample.token;
      alone[i].push_back(last);
      kernels::penalty_observe_prompt(pen, &last, 1);
      ids = &alone[i].back();
      T = 1;
    }
  }

  // Batched: all sequences in the same steps (prefills and decodes mixed: sequence i starts
  // at step i).
  auto b = cpu_backend(m, n);
  std::vector<int> slot(static_cast<std::size_t>(n));
  std::vector<std::vector<int32_t>> got(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) slot[i] = b->acquire_slot();
  for (int t = 0; t < steps + n - 1; ++t) {
    std::vector<StepChunk> chunks;
    std::vector<int> who;
    for (int i = 0; i < n; ++i) {
      const int k = t - i;
      if (k < 0 || k >= steps) continue;
      StepChunk c{.slot = slot[i], .sampling = &p, .sample = true, .seed = 100u + static_cast<uint64_t>(i),
                  .draw = static_cast<uint64_t>(k)};
      if (k == 0) {
        c.ids = prompts[i].data();
        c.T = static_cast<int64_t>(prompts[i].size());
      } else {
        c.ids = &got[i].back();
        c.T = 1;
      }
      chunks.push_back(c);
      who.push_back(i);
    }
    const auto out = b->step(chunks);
    for (std::size_t j = 0; j < who.size(); ++j) got[who[j]].push_back(out[j].sample.token);
  }
  EXPECT_EQ(got, alone);
}

TEST(Backend, MtpHeadAndRoutingEqualTheReference) {
  const Model m = Model::load(fixture_dir("super-latent-mtp"));
  ASSERT_TRUE(m.config.has_mtp());
  const CpuModel cpu(m);
  const Expected ex("super-latent-mtp");
  const auto ids = ex.ids("p0.input_ids");
  const auto T = static_cast<int64_t>(ids.size());

  // Reference: the trunk, then the head over (ids[1..], first greedy token) and the hidden
  // rows; the routing each MoE block chose, as a RoutingScope observes it.
  std::vector<std::vector<int32_t>> ref_routes(m.config.layers.size() + m.config.mtp_layers.size());
  RoutingHook hook;
  hook.observe = [&](int block, int64_t rows, const float*, const int32_t* own) {
    ref_routes[static_cast<std::size_t>(block)].assign(own, own + rows * m.config.num_experts_per_tok);
  };
  auto state = cpu.new_state();
  ForwardResult trunk;
  {
    RoutingScope scope(hook);
    trunk = cpu.forward(state, ids.data(), T, false);
  }
  std::vector<int32_t> next(ids.begin() + 1, ids.end());
  next.push_back(argmax(trunk.logits.data(), m.config.vocab_size));
  auto mst = cpu.new_mtp_state();
  const auto head = cpu.mtp_forward(mst, next.data(), trunk.hidden.data(), T, true);

  auto b = cpu_backend(m, 1);
  const int slot = b->acquire_slot();
  b->record_routing(true);
  const auto out = b->step({{.slot = slot, .ids = ids.data(), .T = T, .sample = true}});
  EXPECT_EQ(out[0].sample.token, next.back());
  const auto routes = b->routing();
  for (std::size_t l = 0; l < m.config.layers.size(); ++l) EXPECT_EQ(routes[l], ref_routes[l]) << "block " << l;
  const auto hidden = b->last_hidden();
  EXPECT_EQ(hidden, trunk.hidden);
  const auto logits = b->mtp_forward(slot, next.data(), hidden.data(), T, true);
  EXPECT_EQ(logits, head.logits);
  EXPECT_EQ(b->last_hidden(), head.hidden);
  EXPECT_EQ(b->mtp_position(slot), T);
  int mtp_blocks_routed = 0;
  for (std::size_t j = 0; j < m.config.mtp_layers.size(); ++j)
    mtp_blocks_routed += !b->routing()[m.config.layers.size() + j].empty();
  EXPECT_EQ(mtp_blocks_routed,
            std::count(m.config.mtp_layers.begin(), m.config.mtp_layers.end(), LayerKind::MoE));
}

TEST(Backend, BadInputsAreErrorsBeforeAnythingRuns) {
  const Model m = Model::load(fixture_dir("nano-moe"));
  auto b = cpu_backend(m, 2, 8);
  const int s0 = b->acquire_slot();
  const int32_t ok[3] = {1, 2, 3}, bad[2] = {1, 1 << 30};
  using ::testing::HasSubstr;
  EXPECT_THAT(error_of([&] { b->step({{.slot = 1, .ids = ok, .T = 3}}); }), HasSubstr("not in use"));
  EXPECT_THAT(error_of([&] { b->step({{.slot = s0, .ids = bad, .T = 2}}); }), HasSubstr("outside the vocabulary"));
  EXPECT_THAT(error_of([&] { b->step({{.slot = s0, .ids = ok, .T = 3}, {.slot = s0, .ids = ok, .T = 1}}); }),
              HasSubstr("twice"));
  std::vector<int32_t> many(9, 1);
  EXPECT_THAT(error_of([&] { b->step({{.slot = s0, .ids = many.data(), .T = 9}}); }), HasSubstr("max_step_tokens"));
  SamplingParams p;
  p.top_p = 2;
  EXPECT_THAT(error_of([&] { b->step({{.slot = s0, .ids = ok, .T = 3, .sampling = &p, .sample = true}}); }),
              HasSubstr("top_p"));
  EXPECT_THAT(error_of([&] { b->finish_step(); }), HasSubstr("without a step"));
  EXPECT_EQ(b->position(s0), 0);  // nothing ran
  b->acquire_slot();
  EXPECT_THAT(error_of([&] { b->acquire_slot(); }), HasSubstr("slots are in use"));
  b->release_slot(s0);
  b->release_slot(99);  // ignored
  EXPECT_EQ(b->acquire_slot(), s0);
  EXPECT_THAT(error_of([&] { b->mtp_forward(s0, ok, nullptr, 1, false); }), HasSubstr("no MTP head"));
  BackendOptions o;
  o.device = "gpu";
  EXPECT_THAT(error_of([&] { make_backend(m, o); }), HasSubstr("--device must be cpu or cuda"));
  EXPECT_EQ(resolve_device(""), default_device());
  EXPECT_EQ(resolve_device("cpu"), "cpu");
}

}  // namespace
