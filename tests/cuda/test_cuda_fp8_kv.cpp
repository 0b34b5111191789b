// The CUDA backend's FP8 KV cache with the checkpoint's per-layer k/v scales against the CPU
// reference's FP8 KV emulation (CpuModel::set_kv_fp8), on fixtures with non-unit scales written
// into a copy of the checkpoint (calibrated amax / 448, and 4x coarser): prefill logits,
// teacher-forced decode steps (the decode attention path), and the MTP head's attention.
// The CPU runs on the GPU's routes (Lockstep), so the tolerance is that of BF16 activations.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "cuda_model_test_util.h"
#include "fixture_util.h"
#include "kv_scale_fixture.h"
#include "model/cpu/cpu_forward.h"
#include "model/cuda/cuda_model.h"

using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;
using nemotron::testing::kLogitRelTol;
using nemotron::testing::Lockstep;
using nemotron::testing::rel_err;
using nemotron::testing::TempDir;
using nemotron::testing::calibrate_kv_scales;
using nemotron::testing::top1;

namespace {

struct Case {
  std::string fixture;
  float factor;  // scales = factor * amax / 448
};

class CudaFp8Kv : public ::testing::TestWithParam<Case> {};

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref, int64_t V) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  const double e = rel_err(got.data(), ref.data(), ref.size());
  const auto a = top1(got, ref, V, 0.1f);
  std::printf("[ %s ] rel_err=%.4g top1 %d/%d\n", what.c_str(), e, a.agree, a.compared);
  EXPECT_LE(e, kLogitRelTol) << what;
  EXPECT_GE(a.agree, a.compared * 95 / 100) << what;
}

TEST_P(CudaFp8Kv, MatchesCpuFp8Reference) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Case c = GetParam();
  const Model base = Model::load(fixture_dir(c.fixture));
  const Expected ex(c.fixture);
  const std::vector<int32_t> ids = ex.ids("p0.input_ids");
  const int64_t T = static_cast<int64_t>(ids.size()), V = base.config.vocab_size;

  // Non-unit scales from a CPU fp32 run over the prompt (trunk and MTP head).
  std::map<std::string, float> scales;
  {
    CpuModel cpu(base);
    SequenceState st = cpu.new_state();
    const auto r = cpu.forward(st, ids.data(), T, false);
    calibrate_kv_scales(base.weights.blocks, st, scales, c.factor);
    if (base.config.has_mtp()) {
      std::vector<int32_t> next(ids.begin() + 1, ids.end());
      next.push_back(0);
      SequenceState mst = cpu.new_mtp_state();
      cpu.mtp_forward(mst, next.data(), r.hidden.data(), T, false);
      calibrate_kv_scales(base.weights.mtp.blocks, mst, scales, c.factor);
    }
  }
  TempDir dir;
  nemotron::testing::copy_with_scales(fixture_dir(c.fixture), dir, scales);
  const Model m = Model::load(dir.str());

  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 256;
  o.kv_tokens = 1024;
  o.kv_fp8 = true;
  CudaModel gpu(m, o);
  Lockstep ls(m, gpu, /*kv_fp8=*/true);
  const std::string tag = c.fixture + " x" + std::to_string(c.factor);

  // Prefill of all but the last 4 tokens, then 4 teacher-forced decode steps.
  const int64_t P = T - 4;
  const int slot = gpu.acquire_slot();
  SequenceState st = ls.cpu().new_state();
  auto pre = ls.forward(slot, st, ids.data(), P, true);
  expect_close(tag + " fp8 prefill vs CPU fp8", pre.gpu, pre.cpu, V);
  std::vector<float> gpu_hidden = pre.gpu_hidden, cpu_hidden = pre.cpu_hidden;
  for (int64_t t = P; t < T; ++t) {
    auto d = ls.forward(slot, st, ids.data() + t, 1, true);
    expect_close(tag + " fp8 decode pos " + std::to_string(t), d.gpu, d.cpu, V);
  }
  // The unscaled CPU reference (fp32 KV), for the record.
  {
    CpuModel cpu32(m);
    SequenceState s32 = cpu32.new_state();
    const auto r32 = cpu32.forward(s32, ids.data(), P, true);
    std::printf("[ %s ] GPU fp8 prefill vs CPU fp32 KV (unforced routes): rel_err=%.4g\n", tag.c_str(),
                rel_err(pre.gpu.data(), r32.logits.data(), r32.logits.size()));
  }
  if (m.config.has_mtp()) {
    std::vector<int32_t> next(ids.begin() + 1, ids.begin() + P + 1);
    SequenceState mst = ls.cpu().new_mtp_state();
    auto h = ls.mtp(slot, mst, next.data(), gpu_hidden.data(), cpu_hidden.data(), P, true);
    expect_close(tag + " fp8 MTP head vs CPU fp8", h.gpu, h.cpu, V);
  }
  gpu.release_slot(slot);
  ls.stats.print(tag.c_str());
  ls.stats.expect_legitimate(tag.c_str());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaFp8Kv,
                         ::testing::Values(Case{"nano-moe", 1.0f}, Case{"nano-moe", 4.0f},
                                           Case{"super-mixed-mtp", 1.0f}, Case{"dense-mlp", 4.0f}),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           std::string s = param_info.param.fixture + "_x" + std::to_string(static_cast<int>(param_info.param.factor));
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
