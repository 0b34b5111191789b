// expert_gemm_cuda (the grouped routed-expert GEMM of prefill) against the CPU computation on
// the same BF16 inputs (dequantize_row per selected expert, double accumulation; tolerance as
// in test_moe.cpp: 1e-5 of the absolute dot sum, x2|a| after relu², + one BF16 rounding), for
// every weight format, ragged shapes, skewed routing (experts with no pairs, one expert with
// most pairs, repeats), bad ids (NaN rows, nothing read), up-style (token rows) and down-style
// (pair rows) inputs; at the real Nano and Super-latent expert shapes a sample of the pairs
// is checked against the CPU and all of them against the tested GEMV path (expert_gemv_cuda).
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/expert_gemm_cuda.h"
#include "kernels/moe_cuda.h"
#include "expert_test_util.h"
#include "linear_test_util.h"

namespace nemotron::testing {
namespace {

enum class Routing { Spread, Skewed, OneExpert };

std::vector<int32_t> make_ids(int64_t n, int64_t E, Routing r, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  uint64_t s = seed;
  for (auto& id : ids) {
    const uint64_t v = splitmix(s);
    switch (r) {
      case Routing::Spread: id = static_cast<int32_t>(v % E); break;
      // Three quarters of the pairs on expert 1, the rest on the upper half (lower half empty).
      case Routing::Skewed: id = static_cast<int32_t>(v % 4 ? 1 : E / 2 + static_cast<int64_t>(v >> 8) % (E - E / 2)); break;
      case Routing::OneExpert: id = static_cast<int32_t>(E - 1); break;
    }
  }
  return ids;
}

// Runs expert_gemm_cuda and checks every `stride`-th pair against the CPU (all pairs when 1),
// and, with `vs_gemv`, every pair against expert_gemv_cuda within one BF16 rounding.
void check(kernels::WeightFormat f, int64_t E, int64_t out, int64_t in, int64_t T, int64_t k, bool per_slot,
           bool relu2, Routing routing, int64_t stride, bool vs_gemv, bool bad_ids, uint64_t seed) {
  const auto ex = make_experts(f, E, out, in, seed, 1000);
  const int64_t N = T * k;
  auto ids = make_ids(N, E, routing, seed + 7);
  std::vector<std::size_t> bad;
  if (bad_ids) {
    bad = {0, static_cast<std::size_t>(N / 2), static_cast<std::size_t>(N - 1)};
    ids[bad[0]] = static_cast<int32_t>(E);
    ids[bad[1]] = -1;
    ids[bad[2]] = static_cast<int32_t>(E + 100);
  }
  DeviceBuffer<int32_t> d_ids(ids);
  Rng rng(seed + 3);
  std::vector<float> xf;
  const auto xb = rng.bf16(static_cast<std::size_t>((per_slot ? N : T) * in), 1.0f, &xf);
  DeviceBuffer<uint16_t> dx(xb), dy(static_cast<std::size_t>(N * out));
  dy.poison();
  const int64_t ws_bytes = kernels::expert_gemm_workspace_bytes(T, k, E);
  DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(ws_bytes));
  kernels::ExpertGemvArgs a;
  a.w = ex->table;
  a.ids = d_ids.get();
  a.T = T;
  a.k = k;
  a.x = dx.get();
  a.x_per_slot = per_slot;
  a.relu2 = relu2;
  a.y = dy.get();
  ASSERT_NO_THROW(kernels::expert_gemm_cuda(a, ws.get(), ws_bytes, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = bf16_to_f32(dy.download());
  const std::string name = std::string("grouped ") + kernels::weight_format_name(f) + " [" + std::to_string(out) +
                           "," + std::to_string(in) + "] E=" + std::to_string(E) + " T=" + std::to_string(T) +
                           " k=" + std::to_string(k) + (per_slot ? " per-slot" : "") + (relu2 ? " relu2" : "") +
                           (routing == Routing::Skewed ? " skewed" : routing == Routing::OneExpert ? " one-expert" : "");
  std::vector<float> g, ref, tol, row(static_cast<std::size_t>(in));
  for (int64_t i = 0; i < N; ++i) {
    if (std::find(bad.begin(), bad.end(), static_cast<std::size_t>(i)) != bad.end()) {
      for (int64_t r = 0; r < out; ++r) ASSERT_TRUE(std::isnan(got[i * out + r])) << name << " bad id row " << r;
      continue;
    }
    if (i % stride) continue;
    const float* xr = xf.data() + (per_slot ? i : i / k) * in;
    for (int64_t r = 0; r < out; ++r) {
      kernels::dequantize_row(ex->hw[ids[i]].w, r, row.data());
      double s = 0, sa = 0;
      for (int64_t c = 0; c < in; ++c) {
        s += static_cast<double>(row[c]) * xr[c];
        sa += std::fabs(static_cast<double>(row[c]) * xr[c]);
      }
      const float av = static_cast<float>(s);
      const float v = relu2 ? (av > 0 ? av * av : 0.0f) : av;
      const float d = 1e-5f * static_cast<float>(sa);
      g.push_back(got[i * out + r]);
      ref.push_back(v);
      tol.push_back((relu2 ? 2.0f * std::fabs(av) * d + d * d : d) + std::ldexp(std::fabs(v), -8) + 1e-30f);
    }
  }
  EXPECT_EQ(report(name + (stride > 1 ? " (sampled)" : ""), g, ref, tol), 0u);
  if (!vs_gemv) return;
  DeviceBuffer<uint16_t> dz(static_cast<std::size_t>(N * out));
  a.y = dz.get();
  ASSERT_NO_THROW(kernels::expert_gemv_cuda(a, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto gemv = bf16_to_f32(dz.download());
  // Both are within a BF16 rounding of the fp32 sum, whose own error scales with the terms,
  // not the (possibly cancelled) result: allow 2^-7 |r| + 2^-9 of the row's largest |r|.
  std::vector<float> t2(got.size());
  std::vector<float> g3 = got, r3 = gemv;
  for (int64_t i = 0; i < N; ++i) {
    float row_max = 0.0f;
    for (int64_t r = 0; r < out; ++r) {
      float& gv = g3[i * out + r];
      float& rv = r3[i * out + r];
      if (std::isnan(rv) && std::isnan(gv)) gv = rv = 0.0f;  // bad-id rows: NaN in both
      row_max = std::max(row_max, std::fabs(rv));
    }
    for (int64_t r = 0; r < out; ++r)
      t2[i * out + r] = std::ldexp(std::fabs(r3[i * out + r]), -7) + std::ldexp(row_max, -9) + 1e-6f;
  }
  EXPECT_EQ(report(name + " vs GEMV", g3, r3, t2), 0u);
}

TEST(ExpertGemm, EveryFormatRaggedShapesAndRouting) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 11;
  for (auto f : {kernels::WeightFormat::Dense, kernels::WeightFormat::FP8, kernels::WeightFormat::NVFP4}) {
    check(f, 7, 100, 96, 50, 3, false, true, Routing::Spread, 1, false, true, seed++);
    check(f, 7, 37, 224, 33, 2, true, false, Routing::Skewed, 1, false, false, seed++);
    check(f, 5, 130, 64, 70, 4, false, false, Routing::OneExpert, 1, false, true, seed++);
    check(f, 16, 64, 128, 9, 6, true, true, Routing::Spread, 1, false, false, seed++);
  }
}

// Nano (128 experts, k 6, 1856 x 2688 up + relu², 2688 x 1856 down) and Super latent (512
// experts, k 22, 2688 x 1024 / 1024 x 2688) with prefill-sized T.
TEST(ExpertGemm, RealShapesAgainstCpuSampleAndGemv) {
  ASSERT_TRUE(have_device());
  using kernels::WeightFormat;
  check(WeightFormat::NVFP4, 128, 1856, 2688, 512, 6, false, true, Routing::Spread, 97, true, true, 101);
  check(WeightFormat::NVFP4, 128, 2688, 1856, 512, 6, true, false, Routing::Skewed, 97, true, false, 102);
  check(WeightFormat::NVFP4, 512, 2688, 1024, 256, 22, false, true, Routing::Spread, 211, true, false, 103);
  check(WeightFormat::NVFP4, 512, 1024, 2688, 256, 22, true, false, Routing::Spread, 211, true, false, 104);
  check(WeightFormat::FP8, 128, 1856, 2688, 128, 6, false, true, Routing::Spread, 31, true, false, 105);
}

TEST(ExpertGemm, RejectsBadArguments) {
  ASSERT_TRUE(have_device());
  const auto ex = make_experts(kernels::WeightFormat::Dense, 4, 32, 64, 5, 1000);
  DeviceBuffer<int32_t> ids(std::vector<int32_t>(8, 0));
  DeviceBuffer<uint16_t> x(std::vector<uint16_t>(8 * 64, 0)), y(std::vector<uint16_t>(8 * 32, 0));
  kernels::ExpertGemvArgs a;
  a.w = ex->table;
  a.ids = ids.get();
  a.T = 4;
  a.k = 2;
  a.x = x.get();
  a.y = y.get();
  const int64_t need = kernels::expert_gemm_workspace_bytes(4, 2, 4);
  DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(need));
  EXPECT_THROW(kernels::expert_gemm_cuda(a, ws.get(), need - 16, nullptr), Error);  // workspace too small
  EXPECT_THROW(kernels::expert_gemm_cuda(a, nullptr, need, nullptr), Error);
  a.w.in = 48;  // not a multiple of 32
  EXPECT_THROW(kernels::expert_gemm_cuda(a, ws.get(), need, nullptr), Error);
  a.w.in = 64;
  EXPECT_NO_THROW(kernels::expert_gemm_cuda(a, ws.get(), need, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nemotron::testing
