// The CPU reference engine against the transformers fixtures: prefill logits, every
// layer's hidden state, greedy continuation with the decode path, decode logits,
// chunked prefill, and the MTP head (logits and chained drafts).
#include <gtest/gtest.h>

#include <algorithm>

#include "fixture_util.h"
#include "model/cpu/cpu_forward.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;
using nemotron::testing::max_abs;
using nemotron::testing::max_abs_diff;

namespace {

constexpr float kLogitTol = 1e-3f;  // max abs logit error (issue requirement)

class FixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {}
  void SetUp() override {
    model_ = std::make_unique<Model>(Model::load(fixture_dir(GetParam())));
    cpu_ = std::make_unique<CpuModel>(*model_);
    expected_ = std::make_unique<Expected>(GetParam());
  }
  int64_t V() const { return model_->config.vocab_size; }
  std::string p(int i, const char* what) const { return "p" + std::to_string(i) + "." + what; }

  // Full-prompt logits processed in chunks of `chunk` tokens (0 = all at once).
  std::vector<float> prefill_logits(const std::vector<int32_t>& ids, int64_t chunk, SequenceState& st) const {
    std::vector<float> all;
    const int64_t T = static_cast<int64_t>(ids.size());
    if (chunk <= 0) chunk = T;
    for (int64_t s = 0; s < T; s += chunk) {
      const int64_t n = std::min(chunk, T - s);
      auto r = cpu_->forward(st, ids.data() + s, n, true);
      all.insert(all.end(), r.logits.begin(), r.logits.end());
    }
    return all;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<CpuModel> cpu_;
  std::unique_ptr<Expected> expected_;
};

TEST_P(FixtureTest, PrefillLogitsMatchReference) {
  ASSERT_GT(expected_->num_prompts(), 0);
  for (int i = 0; i < expected_->num_prompts(); ++i) {
    const auto ids = expected_->ids(p(i, "input_ids"));
    const auto ref = expected_->f32(p(i, "logits"));
    auto st = cpu_->new_state();
    const auto got = prefill_logits(ids, 0, st);
    ASSERT_EQ(got.size(), ref.size());
    const float err = max_abs_diff(got.data(), ref.data(), ref.size());
    EXPECT_LE(err, kLogitTol) << "prompt " << i << " (" << ids.size() << " tokens)";
    // Top-1 at every position where the reference has a clear margin.
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const float* r = ref.data() + t * V();
      std::vector<float> row(r, r + V());
      std::nth_element(row.begin(), row.begin() + 1, row.end(), std::greater<float>());
      if (row[0] - row[1] < 1e-3f) continue;
      EXPECT_EQ(argmax(got.data() + t * V(), V()), argmax(r, V())) << "prompt " << i << " position " << t;
    }
  }
}

TEST_P(FixtureTest, EveryLayerHiddenStateMatchesReference) {
  const auto ids = expected_->ids("p0.input_ids");
  auto st = cpu_->new_state();
  int seen = 0;
  cpu_->forward(st, ids.data(), static_cast<int64_t>(ids.size()), true, [&](int index, const std::vector<float>& rows) {
    // HF convention: hidden.0 = embeddings, hidden.l = output of block l-1 for l < L, and
    // hidden.L is after norm_f (the last block's raw output is not recorded).
    const int L = model_->config.num_layers();
    if (index == L) return;
    const std::string name = "p0.hidden." + std::to_string(index == L + 1 ? L : index);
    ASSERT_TRUE(expected_->has(name)) << name;
    const auto ref = expected_->f32(name);
    ASSERT_EQ(rows.size(), ref.size()) << name;
    const float tol = 1e-4f * std::max(1.0f, max_abs(ref));
    EXPECT_LE(max_abs_diff(rows.data(), ref.data(), ref.size()), tol) << name;
    ++seen;
  });
  EXPECT_EQ(seen, model_->config.num_layers() + 1) << "hidden.0 .. hidden.L expected in the fixture";
}

TEST_P(FixtureTest, GreedyDecodeMatchesReference) {
  for (int i = 0; i < expected_->num_prompts(); ++i) {
    const auto ids = expected_->ids(p(i, "input_ids"));
    const auto greedy = expected_->ids(p(i, "greedy_ids"));
    const auto dref = expected_->f32(p(i, "decode_logits"));
    auto st = cpu_->new_state();
    auto r = cpu_->forward(st, ids.data(), static_cast<int64_t>(ids.size()), false);
    std::vector<int32_t> out{argmax(r.logits.data(), V())};
    float worst = 0;
    for (std::size_t k = 0; k + 1 < greedy.size(); ++k) {
      // Teacher-forced on the reference tokens so one flip cannot cascade.
      const int32_t tok = greedy[k];
      r = cpu_->forward(st, &tok, 1, false);
      worst = std::max(worst, max_abs_diff(r.logits.data(), dref.data() + k * V(), V()));
      out.push_back(argmax(r.logits.data(), V()));
    }
    EXPECT_LE(worst, kLogitTol) << "decode logits, prompt " << i;
    EXPECT_EQ(out, greedy) << "greedy ids, prompt " << i;
  }
}

TEST_P(FixtureTest, ChunkedPrefillEqualsFullPrefill) {
  for (int i = 0; i < expected_->num_prompts(); ++i) {
    const auto ids = expected_->ids(p(i, "input_ids"));
    const auto ref = expected_->f32(p(i, "logits"));
    auto full_state = cpu_->new_state();
    const auto full = prefill_logits(ids, 0, full_state);
    for (int64_t chunk : {1, 3, 16}) {
      auto st = cpu_->new_state();
      const auto got = prefill_logits(ids, chunk, st);
      ASSERT_EQ(got.size(), full.size());
      EXPECT_LE(max_abs_diff(got.data(), full.data(), full.size()), 1e-4f) << "chunk " << chunk << ", prompt " << i;
      EXPECT_LE(max_abs_diff(got.data(), ref.data(), ref.size()), kLogitTol) << "chunk " << chunk << " vs reference";
      // The carried state after the last chunk is the same too.
      for (std::size_t b = 0; b < st.blocks.size(); ++b) {
        const auto& a = st.blocks[b];
        const auto& f = full_state.blocks[b];
        ASSERT_EQ(a.ssm.size(), f.ssm.size());
        EXPECT_LE(max_abs_diff(a.ssm.data(), f.ssm.data(), a.ssm.size()), 1e-4f * std::max(1.0f, max_abs(f.ssm)))
            << "ssm state of block " << b << ", chunk " << chunk;
        EXPECT_EQ(a.conv, f.conv) << "conv window of block " << b << ", chunk " << chunk;
        EXPECT_EQ(a.k.size(), f.k.size());
      }
    }
  }
}

TEST_P(FixtureTest, MtpHeadMatchesReference) {
  if (!model_->config.has_mtp()) {
    EXPECT_FALSE(expected_->has("p0.mtp_logits")) << "fixture has MTP outputs but the config has no MTP head";
    auto mst = cpu_->new_mtp_state();
    const int32_t tok = 5;
    std::vector<float> h(model_->config.hidden_size, 0.0f);
    EXPECT_THROW(cpu_->mtp_forward(mst, &tok, h.data(), 1, false), Error);
    return;
  }
  for (int i = 0; i < expected_->num_prompts(); ++i) {
    const auto ids = expected_->ids(p(i, "input_ids"));
    const auto greedy = expected_->ids(p(i, "greedy_ids"));
    const int64_t T = static_cast<int64_t>(ids.size()), H = model_->config.hidden_size;
    auto st = cpu_->new_state();
    const auto trunk = cpu_->forward(st, ids.data(), T, false);
    const auto trunk_ref = expected_->f32(p(i, "trunk_hidden"));
    EXPECT_LE(max_abs_diff(trunk.hidden.data(), trunk_ref.data(), trunk_ref.size()), 1e-4f * std::max(1.0f, max_abs(trunk_ref)));
    // Position j is fed token j+1; the last position the first generated token.
    std::vector<int32_t> next(ids.begin() + 1, ids.end());
    next.push_back(greedy[0]);
    auto mst = cpu_->new_mtp_state();
    auto m = cpu_->mtp_forward(mst, next.data(), trunk.hidden.data(), T, true);
    const auto mref = expected_->f32(p(i, "mtp_logits"));
    EXPECT_LE(max_abs_diff(m.logits.data(), mref.data(), mref.size()), kLogitTol) << "MTP logits, prompt " << i;
    // Chained drafts: the first from the last prompt position, then feed draft + own output.
    const auto dref = expected_->ids(p(i, "mtp_draft_ids"));
    std::vector<int32_t> drafts{argmax(m.logits.data() + (T - 1) * V(), V())};
    std::vector<float> h(m.hidden.end() - H, m.hidden.end());
    while (drafts.size() < dref.size()) {
      const int32_t tok = drafts.back();
      auto step = cpu_->mtp_forward(mst, &tok, h.data(), 1, false);
      drafts.push_back(argmax(step.logits.data(), V()));
      h = step.hidden;
    }
    EXPECT_EQ(drafts, dref) << "MTP drafts, prompt " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest,
                         ::testing::Values("nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
