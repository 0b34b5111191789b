// A batched step (several sequences, prefill chunks and decodes mixed) gives each sequence
// exactly what it gets when run alone: row-wise work is computed row by row, so the
// results are bit-identical, not merely close.
#include <gtest/gtest.h>

#include "fixture_util.h"
#include "model/cpu/cpu_forward.h"

using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

class BatchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchTest, BatchEqualsEachSequenceAlone) {
  const Model m = Model::load(fixture_dir(GetParam()));
  const CpuModel cpu(m);
  const Expected ex(GetParam());
  const int n = ex.num_prompts();
  ASSERT_GE(n, 2);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) prompts.push_back(ex.ids("p" + std::to_string(i) + ".input_ids"));

  // Alone: each prompt prefilled in one go, then 4 greedy decode steps.
  std::vector<std::vector<std::vector<float>>> alone(n);  // [seq][step] logits of the last row
  for (int i = 0; i < n; ++i) {
    auto st = cpu.new_state();
    auto r = cpu.forward(st, prompts[i].data(), static_cast<int64_t>(prompts[i].size()), false);
    alone[i].push_back(r.logits);
    for (int k = 0; k < 4; ++k) {
      const int32_t tok = argmax(r.logits.data(), m.config.vocab_size);
      r = cpu.forward(st, &tok, 1, false);
      alone[i].push_back(r.logits);
    }
  }

  // Batched: sequence i is prefilled in chunks of (5 + 4i) tokens while the others that are
  // already done prefilling decode in the same steps.
  std::vector<SequenceState> states;
  for (int i = 0; i < n; ++i) states.push_back(cpu.new_state());
  std::vector<int64_t> done(n, 0);
  std::vector<std::vector<std::vector<float>>> batched(n);
  std::vector<int32_t> next(n, -1);
  for (int step = 0; step < 200; ++step) {
    std::vector<SequenceChunk> chunks;
    std::vector<int> who;
    for (int i = 0; i < n; ++i) {
      const int64_t len = static_cast<int64_t>(prompts[i].size());
      if (done[i] < len) {
        const int64_t c = std::min<int64_t>(5 + 4 * i, len - done[i]);
        chunks.push_back({&states[i], prompts[i].data() + done[i], c, false});
        done[i] += c;
        who.push_back(i);
      } else if (batched[i].size() < 5) {
        chunks.push_back({&states[i], &next[i], 1, false});
        who.push_back(i);
      }
    }
    if (chunks.empty()) break;
    auto results = cpu.forward_batch(chunks);
    for (std::size_t j = 0; j < who.size(); ++j) {
      const int i = who[j];
      if (done[i] == static_cast<int64_t>(prompts[i].size()) &&
          (chunks[j].ids == &next[i] || chunks[j].ids + chunks[j].T == prompts[i].data() + prompts[i].size())) {
        batched[i].push_back(results[j].logits);
        next[i] = argmax(results[j].logits.data(), m.config.vocab_size);
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(batched[i].size(), alone[i].size()) << "sequence " << i;
    for (std::size_t k = 0; k < alone[i].size(); ++k) EXPECT_EQ(batched[i][k], alone[i][k]) << "sequence " << i << " step " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BatchTest, ::testing::Values("nano-moe", "super-latent-mtp", "nano-nvfp4"),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
