// mask_logits_cuda against mask_logits_cpu (kernels/token_mask*.h), and CUDA decode steps with
// allowed-token masks (replays of the decode graph, which masks the rows that have one): every
// drawn token allowed, equal to sample_cpu on the step's (masked) logits; unmasked steps after
// them see no mask; a mask moved to another row masks that row alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "cuda_test_util.h"
#include "fixture_util.h"
#include "kernels/token_mask.h"
#include "kernels/token_mask_cuda.h"
#include "model/backend.h"

using namespace nemotron;
using namespace nemotron::kernels;

namespace {

TEST(TokenMaskCuda, EqualsTheCpuReference) {
  for (int64_t V : {int64_t{131072}, int64_t{1000}, int64_t{37}}) {
    const int64_t rows = 5, words = token_mask_words(V);
    std::mt19937 rng(static_cast<unsigned>(V));
    std::uniform_real_distribution<float> u(-4, 4);
    std::vector<float> logits(static_cast<std::size_t>(rows * V));
    for (auto& x : logits) x = u(rng);
    std::vector<uint32_t> masks(static_cast<std::size_t>(3 * words));
    for (auto& w : masks) w = static_cast<uint32_t>(rng()) & static_cast<uint32_t>(rng());
    masks[static_cast<std::size_t>(words)] = 0xffffffffu;  // a word allowing all
    // Sample rows 0..3 read logit rows 4, 0, 2, 3 with masks 1, -1, 0, 2.
    std::vector<SampleRow> srows(4);
    const int lr[4] = {4, 0, 2, 3};
    for (int i = 0; i < 4; ++i) srows[i].logit_row = lr[i];
    const std::vector<int32_t> mrows{1, -1, 0, 2};
    std::vector<float> want = logits;
    for (int i = 0; i < 4; ++i)
      if (mrows[i] >= 0) mask_logits_cpu(want.data() + lr[i] * V, V, masks.data() + mrows[i] * words);
    nemotron::testing::DeviceBuffer<float> d_logits(logits);
    nemotron::testing::DeviceBuffer<SampleRow> d_rows(srows);
    nemotron::testing::DeviceBuffer<int32_t> d_mrows(mrows);
    nemotron::testing::DeviceBuffer<uint32_t> d_masks(masks);
    mask_logits_cuda(d_logits.get(), V, d_rows.get(), d_mrows.get(), d_masks.get(), 4, nullptr);
    const auto got = d_logits.download();
    int64_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      bad += !(got[i] == want[i] || (std::isinf(got[i]) && std::isinf(want[i])));
    EXPECT_EQ(bad, 0) << "V = " << V;
  }
}

TEST(TokenMaskCuda, MaskedStepsDrawOnlyAllowedTokens) {
  const model::Model m = model::Model::load(nemotron::testing::fixture_dir("nano-moe"));
  const int64_t V = m.config.vocab_size, words = token_mask_words(V);
  model::BackendOptions o;
  o.device = "cuda";
  o.max_seqs = 2;
  o.max_step_tokens = 64;
  o.kv_tokens = 1024;
  const auto b = model::make_backend(m, o);
  const int s0 = b->acquire_slot(), s1 = b->acquire_slot();
  std::vector<uint32_t> allow(static_cast<std::size_t>(words), 0);
  for (int64_t t = 0; t < V; t += 3) allow[static_cast<std::size_t>(t / 32)] |= 1u << (t % 32);
  SamplingParams p;
  p.temperature = 0.9f;
  int32_t a = 5, c = 6;
  std::vector<int32_t> prompt{1, 2, 3, 4};
  b->step({{.slot = s0, .ids = prompt.data(), .T = 4}, {.slot = s1, .ids = prompt.data(), .T = 4}});
  for (int k = 0; k < 6; ++k) {
    const auto out = b->step({{.slot = s0, .ids = &a, .T = 1, .sampling = &p, .sample = true, .seed = 4,
                               .draw = static_cast<uint64_t>(k), .logits = model::LogitsOut::Last,
                               .allowed = allow.data()},
                              {.slot = s1, .ids = &c, .T = 1, .sample = true, .logits = model::LogitsOut::Last}});
    EXPECT_EQ(out[0].sample.token % 3, 0) << out[0].sample.token;
    const auto ref = sample_cpu(out[0].logits.data(), V, p, 4, static_cast<uint64_t>(k), nullptr);
    EXPECT_EQ(out[0].sample.token, ref.token);
    for (int64_t t = 0; t < V; ++t) {
      if (t % 3 != 0) {
        ASSERT_TRUE(std::isinf(out[0].logits[static_cast<std::size_t>(t)])) << t;
      }
    }
    a = out[0].sample.token;
    c = out[1].sample.token;
  }
  // Those were decode steps of 2 rows: the decode graph's replays, masks included. Unmasked
  // steps after them replay the same graph with every row's mask index reset; then the mask
  // moves to row 1.
  auto no_inf = [&](const std::vector<float>& l) {
    return std::none_of(l.begin(), l.end(), [](float x) { return std::isinf(x); });
  };
  int off_grid = 0;
  for (int k = 0; k < 6; ++k) {
    const auto out = b->step({{.slot = s0, .ids = &a, .T = 1, .sampling = &p, .sample = true, .seed = 4,
                               .draw = static_cast<uint64_t>(10 + k), .logits = model::LogitsOut::Last},
                              {.slot = s1, .ids = &c, .T = 1, .sample = true, .logits = model::LogitsOut::Last}});
    EXPECT_TRUE(no_inf(out[0].logits)) << "step " << k << ": row 0 still masked";
    EXPECT_TRUE(no_inf(out[1].logits)) << "step " << k;
    const auto ref = sample_cpu(out[0].logits.data(), V, p, 4, static_cast<uint64_t>(10 + k), nullptr);
    EXPECT_EQ(out[0].sample.token, ref.token);
    off_grid += out[0].sample.token % 3 != 0;
    a = out[0].sample.token;
    c = out[1].sample.token;
  }
  EXPECT_GT(off_grid, 0) << "six unmasked draws at temperature 0.9 all on the masked grid";
  for (int k = 0; k < 3; ++k) {
    const auto out = b->step({{.slot = s0, .ids = &a, .T = 1, .sample = true, .logits = model::LogitsOut::Last},
                              {.slot = s1, .ids = &c, .T = 1, .sampling = &p, .sample = true, .seed = 5,
                               .draw = static_cast<uint64_t>(k), .logits = model::LogitsOut::Last,
                               .allowed = allow.data()}});
    EXPECT_TRUE(no_inf(out[0].logits)) << "step " << k << ": row 0 masked by row 1's mask";
    EXPECT_EQ(out[1].sample.token % 3, 0) << out[1].sample.token;
    for (int64_t t = 1; t < V; t += 3) ASSERT_TRUE(std::isinf(out[1].logits[static_cast<std::size_t>(t)])) << t;
    a = out[0].sample.token;
    c = out[1].sample.token;
  }
}

}  // namespace
