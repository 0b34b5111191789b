// The whole model on the GPU against the transformers fixtures and against itself:
// prefill logits, teacher-forced decode logits, chunked prefill = full prefill, decode =
// prefill, a mixed batch = each sequence alone. BF16 activations: compared with relative
// error bounds and top-1 agreement where the reference has a clear margin.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "fixture_util.h"
#include "model/cpu_forward.h"
#include "model/cuda_model.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

// ||a - b|| / ||b|| over n values.
double rel_err(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Agreement {
  int compared = 0, agree = 0;
};

// Top-1 agreement over rows whose reference top-2 margin exceeds `margin`.
Agreement top1(const std::vector<float>& got, const std::vector<float>& ref, int64_t V, float margin) {
  Agreement a;
  for (std::size_t r = 0; r * V < ref.size(); ++r) {
    const float* rr = ref.data() + r * V;
    std::vector<float> row(rr, rr + V);
    std::nth_element(row.begin(), row.begin() + 1, row.end(), std::greater<float>());
    if (row[0] - row[1] < margin) continue;
    ++a.compared;
    a.agree += argmax(got.data() + r * V, V) == argmax(rr, V);
  }
  return a;
}

constexpr double kLogitRelTol = 3e-2;  // BF16 activations through ~10 blocks vs an fp32 reference
constexpr double kSelfRelTol = 1e-2;   // GPU vs GPU along different kernel paths (GEMM vs GEMV)

class CudaModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
    model_ = std::make_unique<Model>(Model::load(fixture_dir(GetParam())));
    CudaModelOptions o;
    o.max_seqs = 4;
    o.max_step_tokens = 256;
    o.kv_tokens = 4096;
    o.verbose = false;
    gpu_ = std::make_unique<CudaModel>(*model_, o);
    ex_ = std::make_unique<Expected>(GetParam());
  }
  int64_t V() const { return model_->config.vocab_size; }
  std::vector<int32_t> prompt(int i) const { return ex_->ids("p" + std::to_string(i) + ".input_ids"); }

  std::vector<float> prefill(const std::vector<int32_t>& ids, int64_t chunk) {
    const int slot = gpu_->acquire_slot();
    std::vector<float> all;
    const int64_t T = static_cast<int64_t>(ids.size());
    for (int64_t s = 0; s < T; s += chunk) {
      const int64_t n = std::min(chunk, T - s);
      auto r = gpu_->forward({{slot, ids.data() + s, n, true}});
      all.insert(all.end(), r[0].begin(), r[0].end());
    }
    gpu_->release_slot(slot);
    return all;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<CudaModel> gpu_;
  std::unique_ptr<Expected> ex_;
};

TEST_P(CudaModelTest, PrefillLogitsMatchReference) {
  for (int i = 0; i < ex_->num_prompts(); ++i) {
    const auto ids = prompt(i);
    const auto ref = ex_->f32("p" + std::to_string(i) + ".logits");
    const auto got = prefill(ids, static_cast<int64_t>(ids.size()));
    ASSERT_EQ(got.size(), ref.size());
    const double e = rel_err(got.data(), ref.data(), ref.size());
    const auto a = top1(got, ref, V(), 0.1f);
    std::printf("[ %s p%d ] prefill rel_err=%.4g top1 %d/%d\n", GetParam().c_str(), i, e, a.agree, a.compared);
    EXPECT_LE(e, kLogitRelTol);
    EXPECT_GE(a.agree, a.compared * 95 / 100);
  }
}

TEST_P(CudaModelTest, TeacherForcedDecodeMatchesReference) {
  for (int i = 0; i < ex_->num_prompts(); ++i) {
    const std::string p = "p" + std::to_string(i) + ".";
    const auto ids = prompt(i);
    const auto greedy = ex_->ids(p + "greedy_ids");
    const auto dref = ex_->f32(p + "decode_logits");
    const int slot = gpu_->acquire_slot();
    gpu_->forward({{slot, ids.data(), static_cast<int64_t>(ids.size()), false}});
    std::vector<float> got;
    for (std::size_t k = 0; k + 1 < greedy.size(); ++k) {
      auto r = gpu_->forward({{slot, &greedy[k], 1, false}});
      got.insert(got.end(), r[0].begin(), r[0].end());
    }
    gpu_->release_slot(slot);
    const double e = rel_err(got.data(), dref.data(), dref.size());
    const auto a = top1(got, dref, V(), 0.1f);
    std::printf("[ %s p%d ] decode rel_err=%.4g top1 %d/%d\n", GetParam().c_str(), i, e, a.agree, a.compared);
    EXPECT_LE(e, kLogitRelTol);
    EXPECT_GE(a.agree, a.compared * 95 / 100);
  }
}

TEST_P(CudaModelTest, ChunkedPrefillEqualsFullPrefill) {
  const auto ids = prompt(0);
  const auto full = prefill(ids, static_cast<int64_t>(ids.size()));
  for (int64_t chunk : {1, 3, 16}) {
    const auto got = prefill(ids, chunk);
    const double e = rel_err(got.data(), full.data(), full.size());
    std::printf("[ %s ] chunk %lld vs full rel=%.4g\n", GetParam().c_str(), static_cast<long long>(chunk), e);
    EXPECT_LE(e, kSelfRelTol) << "chunk " << chunk;
  }
}

TEST_P(CudaModelTest, MixedBatchEqualsEachAlone) {
  const int n = std::min(ex_->num_prompts(), 3);
  std::vector<std::vector<int32_t>> ps;
  std::vector<std::vector<float>> alone;
  for (int i = 0; i < n; ++i) {
    ps.push_back(prompt(i));
    alone.push_back(prefill(ps.back(), static_cast<int64_t>(ps.back().size())));
  }
  // Sequence 0 is prefilled first, then decodes while the others prefill in the same steps.
  std::vector<int> slots;
  for (int i = 0; i < n; ++i) slots.push_back(gpu_->acquire_slot());
  const int64_t T0 = static_cast<int64_t>(ps[0].size());
  auto first = gpu_->forward({{slots[0], ps[0].data(), T0 - 1, true}});
  std::vector<CudaChunk> step{{slots[0], &ps[0][T0 - 1], 1, true}};
  for (int i = 1; i < n; ++i) step.push_back({slots[i], ps[i].data(), static_cast<int64_t>(ps[i].size()), true});
  auto mixed = gpu_->forward(step);
  first[0].insert(first[0].end(), mixed[0].begin(), mixed[0].end());
  mixed[0] = first[0];
  for (int i = 0; i < n; ++i) {
    const double e = rel_err(mixed[i].data(), alone[i].data(), alone[i].size());
    std::printf("[ %s ] batch seq %d vs alone rel=%.4g\n", GetParam().c_str(), i, e);
    EXPECT_LE(e, kSelfRelTol) << "sequence " << i;
  }
  for (int s : slots) gpu_->release_slot(s);
}

TEST_P(CudaModelTest, MatchesCpuReferenceOnAFreshPrompt) {
  const std::vector<int32_t> ids{3, 17, 99, 250, 4, 4, 71, 300, 123, 5, 6, 7, 8, 200, 201};
  const CpuModel cpu(*model_);
  auto st = cpu.new_state();
  const auto ref = cpu.forward(st, ids.data(), static_cast<int64_t>(ids.size()), true).logits;
  const auto got = prefill(ids, 4);
  const double e = rel_err(got.data(), ref.data(), ref.size());
  std::printf("[ %s ] cuda vs cpu rel=%.4g\n", GetParam().c_str(), e);
  EXPECT_LE(e, kLogitRelTol);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaModelTest,
                         ::testing::Values("nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(CudaModel, InvalidInputsAreErrors) {
  const Model m = Model::load(fixture_dir("nano-moe"));
  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 8;
  o.kv_tokens = 32;
  o.verbose = false;
  CudaModel gpu(m, o);
  const int a = gpu.acquire_slot();
  gpu.acquire_slot();
  EXPECT_THROW(gpu.acquire_slot(), nemotron::Error);
  const std::vector<int32_t> bad{1, 99999};
  EXPECT_THROW(gpu.forward({{a, bad.data(), 2, false}}), nemotron::Error);
  const std::vector<int32_t> many(9, 5);
  EXPECT_THROW(gpu.forward({{a, many.data(), 9, false}}), nemotron::Error);
  EXPECT_THROW(gpu.forward({{3, many.data(), 1, false}}), nemotron::Error);
  // KV exhaustion: 32 tokens (+ one page of slack per slot) then a clear error.
  const std::vector<int32_t> eight(8, 5);
  int64_t fed = 0;
  bool threw = false;
  for (int i = 0; i < 20 && !threw; ++i) {
    try {
      gpu.forward({{a, eight.data(), 8, false}});
      fed += 8;
    } catch (const nemotron::Error&) {
      threw = true;
    }
  }
  EXPECT_TRUE(threw);
  EXPECT_GE(fed, 32);
}

}  // namespace
