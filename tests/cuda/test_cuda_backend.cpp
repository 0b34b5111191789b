// The CUDA model behind the one model interface (model/backend.h): a step's sampled tokens
// -- drawn on the device, in eager prefill steps and in replayed decode graphs, with
// penalties, filters and logprobs -- equal kernels::sample_cpu on the logits the same step
// returns, with the CPU reference's penalty state; greedy rows are the argmax; rows that do
// not sample return nothing; bad inputs are errors before anything runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "fixture_util.h"
#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

class CudaBackendTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaBackendTest, DeviceSamplingEqualsSampleCpuOnTheStepsLogits) {
  const Model m = Model::load(fixture_dir(GetParam()));
  const Expected ex(GetParam());
  const int64_t V = m.config.vocab_size;
  BackendOptions o;
  o.device = "cuda";
  o.max_seqs = 4;
  o.max_step_tokens = 256;
  o.kv_tokens = 4096;
  const auto b = make_backend(m, o);
  ASSERT_STREQ(b->device(), "cuda");

  // Four sequences with different settings, decoded together (graph steps of B = 4).
  std::vector<SamplingParams> ps(4);
  ps[0].temperature = 0.0f;  // greedy
  ps[1].temperature = 0.8f;
  ps[1].top_p = 0.9f;
  ps[1].logprobs = 5;
  ps[2].temperature = 1.0f;
  ps[2].top_k = 20;
  ps[2].repetition_penalty = 1.3f;
  ps[2].frequency_penalty = 0.4f;
  ps[3].temperature = 1.2f;
  ps[3].min_p = 0.05f;
  ps[3].presence_penalty = 0.7f;
  ps[3].logprobs = 0;
  const int n = 4, steps = 12;
  std::vector<std::vector<int32_t>> prompts, got(n);
  std::vector<kernels::PenaltyState> pen(n);
  std::vector<int> slot(n);
  for (int i = 0; i < n; ++i) {
    prompts.push_back(ex.ids("p" + std::to_string(i % ex.num_prompts()) + ".input_ids"));
    prompts.back().push_back(static_cast<int32_t>(7 + i));  // distinct prompts
    kernels::penalty_observe_prompt(pen[i], prompts[i].data(), static_cast<int64_t>(prompts[i].size()));
    slot[i] = b->acquire_slot();
  }
  int mismatches = 0, compared = 0;
  double worst_lp = 0;
  for (int k = 0; k < steps; ++k) {
    std::vector<StepChunk> chunks;
    for (int i = 0; i < n; ++i) {
      StepChunk c{.slot = slot[i], .sampling = &ps[i], .sample = true, .seed = 1000u + static_cast<uint64_t>(i),
                  .draw = static_cast<uint64_t>(k), .logits = LogitsOut::Last};
      if (k == 0) {
        c.ids = prompts[i].data();
        c.T = static_cast<int64_t>(prompts[i].size());
      } else {
        c.ids = &got[i].back();
        c.T = 1;
      }
      chunks.push_back(c);
    }
    const auto out = b->step(chunks);
    ASSERT_EQ(out.size(), chunks.size());
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(static_cast<int64_t>(out[i].logits.size()), V);
      const auto ref = kernels::sample_cpu(out[i].logits.data(), V, ps[i], 1000u + i, k, &pen[i]);
      const auto& s = out[i].sample;
      ++compared;
      if (s.token != ref.token) {
        ++mismatches;
        std::printf("[ %s ] step %d seq %d: device %d, sample_cpu %d\n", GetParam().c_str(), k, i, s.token, ref.token);
      }
      if (ps[i].greedy()) {
        EXPECT_EQ(s.token, argmax(out[i].logits.data(), V));
      }
      if (ps[i].logprobs >= 0) {
        worst_lp = std::max(worst_lp, static_cast<double>(std::fabs(s.logprob - ref.logprob)));
        ASSERT_EQ(s.top.size(), static_cast<std::size_t>(ps[i].logprobs));
        for (std::size_t j = 0; j < s.top.size(); ++j) {
          EXPECT_EQ(s.top[j].token, ref.top[j].token);
        }
      }
      got[i].push_back(s.token);
      // The reference's penalty state follows the device's token (sample_cpu counted its own).
      if (s.token != ref.token) {
        if (--pen[i].counts[ref.token] == 0) pen[i].counts.erase(ref.token);
        pen[i].counts[s.token]++;
        pen[i].seen.insert(s.token);
      }
    }
  }
  std::printf("[ %s ] %d sampled tokens, %d differ from sample_cpu; worst logprob diff %.3g\n", GetParam().c_str(),
              compared, mismatches, worst_lp);
  EXPECT_LE(mismatches, 1);  // float expf/logf may differ by an ulp at a near-tie
  EXPECT_LE(worst_lp, 1e-4);
}

TEST_P(CudaBackendTest, RowsThatDoNotSampleReturnNothingAndLogitsMatchForward) {
  const Model m = Model::load(fixture_dir(GetParam()));
  const Expected ex(GetParam());
  BackendOptions o;
  o.device = "cuda";
  o.max_seqs = 2;
  o.max_step_tokens = 128;
  o.kv_tokens = 1024;
  const auto b = make_backend(m, o);
  const auto ids = ex.ids("p0.input_ids");
  const auto T = static_cast<int64_t>(ids.size());
  const int s0 = b->acquire_slot(), s1 = b->acquire_slot();
  // A prefill chunk before the prompt's end computes no logits and samples nothing.
  auto out = b->step({{.slot = s0, .ids = ids.data(), .T = T - 1}, {.slot = s1, .ids = ids.data(), .T = T, .sample = true}});
  EXPECT_EQ(out[0].sample.token, -1);
  EXPECT_TRUE(out[0].logits.empty());
  EXPECT_GE(out[1].sample.token, 0);
  // A decode step (graph) where one row samples and the other only wants its logits.
  const int32_t last = ids.back(), next = out[1].sample.token;
  out = b->step({{.slot = s0, .ids = &last, .T = 1, .logits = LogitsOut::Last},
                 {.slot = s1, .ids = &next, .T = 1, .sample = true}});
  EXPECT_EQ(out[0].sample.token, -1);
  ASSERT_EQ(static_cast<int64_t>(out[0].logits.size()), m.config.vocab_size);
  EXPECT_GE(out[1].sample.token, 0);
  EXPECT_TRUE(out[1].logits.empty());
  EXPECT_EQ(b->position(s0), T);
  EXPECT_EQ(b->position(s1), T + 1);
  // Bad inputs: errors before anything runs.
  const int32_t bad = 1 << 30;
  EXPECT_THROW(b->step({{.slot = s0, .ids = &bad, .T = 1}}), Error);
  EXPECT_THROW(b->step({{.slot = 3, .ids = &last, .T = 1}}), Error);
  SamplingParams p;
  p.min_p = 2;
  EXPECT_THROW(b->step({{.slot = s0, .ids = &last, .T = 1, .sampling = &p, .sample = true}}), Error);
  EXPECT_THROW(b->finish_step(), Error);
  EXPECT_EQ(b->position(s0), T);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaBackendTest, ::testing::Values("nano-moe", "super-latent-mtp", "nano-nvfp4"),
                         nemotron::testing::FixtureParamName());

}  // namespace
