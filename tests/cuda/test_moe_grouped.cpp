// The grouped path of expert_gemv_cuda (moe_grouped.cu: pairs bucketed by expert on the device,
// tensor-core GEMM per row tile) against the CPU: dequantize_row of the selected expert (the
// rows linear_cpu multiplies) times the same BF16 x row, double accumulation. Tolerance as in
// test_linear's GEMM: 3e-5 of the absolute dot sum (x2|a| after relu²) + one BF16 rounding.
// Covered: every weight format; ragged shapes (out not a multiple of the 128 column tile, in %
// 64 == 32, odd out); every row tile (32, 64, 128; forced through launch_expert_grouped); experts
// with no pairs, one expert with most or all pairs (several row tiles); bad ids (NaN rows);
// token rows (up) and pair rows (down, x_per_slot); T*k >= 65536 (beyond the GEMV); the real
// Nano (128 experts, k 6) and Super-latent (512 experts, k 22) expert shapes at T up to 2048
// (a sample of the pairs against the CPU, all of them against the GEMV path within one BF16
// rounding); results independent of the bucket order (bitwise, with the slots permuted); the
// decode sizes (T*k < kExpertGroupedMinPairs) do not take it (the per-pair GEMV at one row,
// the batch path from kExpertBatchMinRows rows, bit for bit); argument errors.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "expert_test_util.h"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/moe_cuda.h"
#include "linear_test_util.h"
#include "util/parallel.h"

namespace nemotron::testing {
namespace {

using kernels::WeightFormat;

enum class Routing { Spread, Skewed, OneExpert };

std::vector<int32_t> make_ids(int64_t n, int64_t E, Routing r, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  uint64_t s = seed;
  for (auto& id : ids) {
    const uint64_t v = splitmix(s);
    switch (r) {
      case Routing::Spread: id = static_cast<int32_t>(v % static_cast<uint64_t>(E)); break;
      // Three quarters on expert 1, the rest on the upper half; the other experts get none.
      case Routing::Skewed:
        id = static_cast<int32_t>(v % 4 ? 1 : E / 2 + static_cast<int64_t>((v >> 8) % static_cast<uint64_t>(E - E / 2)));
        break;
      case Routing::OneExpert: id = static_cast<int32_t>(E - 1); break;
    }
  }
  return ids;
}

struct Case {
  WeightFormat f;
  int64_t E, out, in, T, k;
  bool per_slot, relu2;
  Routing routing;
  int bm = 0;            // 0: grouped, auto row tile (through expert_gemv_cuda when T*k allows); 32 / 64 / 128:
                         // forced; -1: expert_gemv_cuda's choice
  int64_t stride = 1;    // check every stride-th pair against the CPU
  bool vs_gemv = false;  // and all pairs against the GEMV path
  bool bad_ids = false;
  uint64_t seed = 1;
};

std::vector<uint16_t> launch(const Case& c, const Experts& ex, const std::vector<int32_t>& ids,
                             const std::vector<uint16_t>& xb, bool with_workspace) {
  const int64_t N = c.T * c.k;
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<uint16_t> dx(xb), dy(static_cast<std::size_t>(N * c.out));
  dy.poison();
  const int64_t ws_bytes = kernels::expert_gemv_workspace_bytes(c.T, c.k, c.E);
  DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(ws_bytes));
  kernels::ExpertGemvArgs a;
  a.w = ex.table;
  a.ids = d_ids.get();
  a.T = c.T;
  a.k = c.k;
  a.x = dx.get();
  a.x_per_slot = c.per_slot;
  a.relu2 = c.relu2;
  a.y = dy.get();
  if (with_workspace) {
    a.workspace = ws.get();
    a.workspace_bytes = ws_bytes;
  }
  // bm 0 below the grouped threshold: the grouped path with its automatic row tile (the
  // dispatch would take the GEMV there); bm -1: always through the dispatch.
  if (with_workspace && c.bm >= 0 && (c.bm || N < kernels::kExpertGroupedMinPairs)) {
    EXPECT_NO_THROW(kernels::cuda::launch_expert_grouped(a, nullptr, c.bm));
  } else {
    EXPECT_NO_THROW(kernels::expert_gemv_cuda(a, nullptr));
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return dy.download();
}

std::string case_name(const Case& c) {
  return std::string(kernels::weight_format_name(c.f)) + " [" + std::to_string(c.out) + "," + std::to_string(c.in) +
         "] E=" + std::to_string(c.E) + " T=" + std::to_string(c.T) + " k=" + std::to_string(c.k) +
         (c.per_slot ? " per-slot" : "") + (c.relu2 ? " relu2" : "") +
         (c.routing == Routing::Skewed ? " skewed" : c.routing == Routing::OneExpert ? " one-expert" : "") +
         (c.bm ? " bm=" + std::to_string(c.bm) : "");
}

void check(const Case& c) {
  const auto ex = make_experts(c.f, c.E, c.out, c.in, c.seed, 7919);
  const int64_t N = c.T * c.k;
  auto ids = make_ids(N, c.E, c.routing, c.seed + 7);
  std::vector<int64_t> bad;
  if (c.bad_ids) {
    bad = {0, N / 2, N - 1};
    ids[static_cast<std::size_t>(bad[0])] = static_cast<int32_t>(c.E);
    ids[static_cast<std::size_t>(bad[1])] = -1;
    ids[static_cast<std::size_t>(bad[2])] = static_cast<int32_t>(c.E + 100);
  }
  Rng rng(c.seed + 3);
  std::vector<float> xf;
  const auto xb = rng.bf16(static_cast<std::size_t>((c.per_slot ? N : c.T) * c.in), 1.0f, &xf);
  const auto got = bf16_to_f32(launch(c, *ex, ids, xb, true));
  const std::string name = "grouped " + case_name(c);

  auto is_bad = [&](int64_t i) { return std::find(bad.begin(), bad.end(), i) != bad.end(); };
  for (int64_t i : bad)
    for (int64_t r = 0; r < c.out; ++r) ASSERT_TRUE(std::isnan(got[static_cast<std::size_t>(i * c.out + r)])) << name;
  std::vector<int64_t> sample;
  for (int64_t i = 0; i < N; i += c.stride)
    if (!is_bad(i)) sample.push_back(i);
  const std::size_t n = sample.size() * static_cast<std::size_t>(c.out);
  std::vector<float> g(n), ref(n), tol(n);
  parallel_for(sample.size(), [&](std::size_t s0, std::size_t s1) {
    std::vector<float> row(static_cast<std::size_t>(c.in));
    for (std::size_t s = s0; s < s1; ++s) {
      const int64_t i = sample[s];
      const float* xr = xf.data() + (c.per_slot ? i : i / c.k) * c.in;
      for (int64_t r = 0; r < c.out; ++r) {
        kernels::dequantize_row(ex->hw[static_cast<std::size_t>(ids[static_cast<std::size_t>(i)])].w, r, row.data());
        double sum = 0, sa = 0;
        for (int64_t q = 0; q < c.in; ++q) {
          sum += static_cast<double>(row[q]) * xr[q];
          sa += std::fabs(static_cast<double>(row[q]) * xr[q]);
        }
        const float av = static_cast<float>(sum), v = c.relu2 ? (av > 0 ? av * av : 0.0f) : av;
        const float d = 3e-5f * static_cast<float>(sa);
        const std::size_t o = s * static_cast<std::size_t>(c.out) + static_cast<std::size_t>(r);
        g[o] = got[static_cast<std::size_t>(i * c.out + r)];
        ref[o] = v;
        tol[o] = (c.relu2 ? 2.0f * std::fabs(av) * d + d * d : d) + std::ldexp(std::fabs(v), -8) + 1e-30f;
      }
    }
  });
  EXPECT_EQ(report(name + (c.stride > 1 ? " (sampled)" : ""), g, ref, tol), 0u);
  if (!c.vs_gemv) return;
  const auto gemv = bf16_to_f32(launch(c, *ex, ids, xb, false));
  // Both are one BF16 rounding of an fp32 sum (different orders): within 2^-7 |r| plus a few
  // fp32 ulps of the row's largest magnitude (cancellation).
  std::vector<float> g2 = got, r2 = gemv, t2(got.size());
  for (int64_t i = 0; i < N; ++i) {
    float row_max = 0.0f;
    for (int64_t r = 0; r < c.out; ++r) {
      const std::size_t o = static_cast<std::size_t>(i * c.out + r);
      if (std::isnan(g2[o]) && std::isnan(r2[o]) && is_bad(i)) g2[o] = r2[o] = 0.0f;
      row_max = std::max(row_max, std::fabs(r2[o]));
    }
    for (int64_t r = 0; r < c.out; ++r) {
      const std::size_t o = static_cast<std::size_t>(i * c.out + r);
      t2[o] = std::ldexp(std::fabs(r2[o]), -7) + std::ldexp(row_max, -9) + 1e-6f;
    }
  }
  EXPECT_EQ(report(name + " vs GEMV", g2, r2, t2), 0u);
}

const WeightFormat kFormats[] = {WeightFormat::Dense, WeightFormat::FP8, WeightFormat::NVFP4};

TEST(MoeGrouped, EveryFormatRaggedShapesAndRouting) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 11;
  for (auto f : kFormats) {
    for (int bm : {0, 32, 64, 128}) {
      check({f, 7, 100, 96, 50, 3, false, true, Routing::Spread, bm, 1, bm == 0, true, seed++});
      check({f, 7, 37, 224, 33, 2, true, false, Routing::Skewed, bm, 1, false, false, seed++});
      check({f, 5, 130, 64, 70, 4, false, false, Routing::OneExpert, bm, 1, false, true, seed++});
      check({f, 16, 257, 160, 29, 6, true, true, Routing::Spread, bm, 1, false, false, seed++});
    }
    check({f, 3, 301, 352, 300, 2, false, false, Routing::OneExpert, 0, 1, true, false, seed++});  // 600 pairs, odd out
  }
}

// T*k beyond the GEMV's 65536-pair limit: the grouped path takes it.
TEST(MoeGrouped, MorePairsThanTheGemvTakes) {
  ASSERT_TRUE(have_device());
  check({WeightFormat::NVFP4, 9, 96, 128, 17000, 4, true, false, Routing::Spread, 0, 13, false, true, 41});
  check({WeightFormat::FP8, 9, 64, 96, 35000, 2, false, true, Routing::Skewed, 128, 17, false, false, 42});
}

// Nano (128 experts, k 6: 1856 x 2688 up + relu², 2688 x 1856 down) and Super latent (512
// experts, k 22: 2688 x 1024 up, 1024 x 2688 down), prefill-sized T.
TEST(MoeGrouped, RealShapesAgainstCpuSampleAndGemv) {
  ASSERT_TRUE(have_device());
  check({WeightFormat::NVFP4, 128, 1856, 2688, 2048, 6, false, true, Routing::Spread, 0, 257, true, true, 101});
  check({WeightFormat::NVFP4, 128, 2688, 1856, 2048, 6, true, false, Routing::Skewed, 0, 257, true, false, 102});
  check({WeightFormat::NVFP4, 512, 2688, 1024, 2048, 22, false, true, Routing::Spread, 0, 911, true, false, 103});
  check({WeightFormat::NVFP4, 512, 1024, 2688, 1024, 22, true, false, Routing::Spread, 0, 457, true, false, 104});
  check({WeightFormat::FP8, 128, 1856, 2688, 512, 6, false, true, Routing::Spread, 0, 61, true, false, 105});
  check({WeightFormat::Dense, 128, 2688, 1856, 256, 6, true, false, Routing::Spread, 0, 31, true, false, 106});
  // A 512-row prefill step of Nano (24 pairs per expert: the 32-row tile) and of Super latent.
  check({WeightFormat::NVFP4, 128, 1856, 2688, 512, 6, false, true, Routing::Spread, 0, 67, true, false, 107});
  check({WeightFormat::NVFP4, 512, 1024, 2688, 512, 22, true, false, Routing::Skewed, 0, 131, true, false, 108});
}

// The output of a pair depends only on its own x row and expert: permuting the slots of every
// token (which reorders every bucket) permutes the output rows bit for bit.
TEST(MoeGrouped, IndependentOfBucketOrder) {
  ASSERT_TRUE(have_device());
  for (auto f : kFormats) {
    const Case c{f, 8, 200, 192, 200, 4, false, true, Routing::Spread, 0, 1, false, false, 61};
    const auto ex = make_experts(c.f, c.E, c.out, c.in, c.seed, 7919);
    const auto ids = make_ids(c.T * c.k, c.E, c.routing, 62);
    Rng rng(63);
    const auto xb = rng.bf16(static_cast<std::size_t>(c.T * c.in), 1.0f, nullptr);
    auto perm = ids;
    for (int64_t t = 0; t < c.T; ++t) std::reverse(perm.begin() + t * c.k, perm.begin() + (t + 1) * c.k);
    const auto y1 = launch(c, *ex, ids, xb, true), y2 = launch(c, *ex, perm, xb, true);
    std::size_t diff = 0;
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t s = 0; s < c.k; ++s)
        for (int64_t r = 0; r < c.out; ++r)
          diff += y1[static_cast<std::size_t>((t * c.k + s) * c.out + r)] !=
                  y2[static_cast<std::size_t>((t * c.k + c.k - 1 - s) * c.out + r)];
    EXPECT_EQ(diff, 0u) << kernels::weight_format_name(f);
  }
}

// Decode sizes (below the grouped thresholds) do not take the grouped GEMM with a workspace:
// single rows keep the per-pair GEMV bit for bit, batches take the batch path (bit for bit
// launch_expert_batch; test_moe_batch.cpp checks that path against the CPU).
TEST(MoeGrouped, DecodeSizesTakeTheGemvOrTheBatchPath) {
  ASSERT_TRUE(have_device());
  for (int64_t T : {1, 4, 8, 10, 42}) {
    ASSERT_LT(T * 6, kernels::kExpertGroupedMinPairs);
    const Case c{WeightFormat::NVFP4, 128, 1856, 2688, T, 6, false, true, Routing::Spread, -1, 1, false, false, 71};
    const auto ex = make_experts(c.f, c.E, c.out, c.in, c.seed, 7919);
    const auto ids = make_ids(T * 6, 128, Routing::Spread, 72 + static_cast<uint64_t>(T));
    Rng rng(73);
    const auto xb = rng.bf16(static_cast<std::size_t>(T * c.in), 1.0f, nullptr);
    const auto with_ws = launch(c, *ex, ids, xb, true);
    if (T < kernels::kExpertBatchMinRows) {
      EXPECT_EQ(with_ws, launch(c, *ex, ids, xb, false)) << "T=" << T;
      continue;
    }
    // The batch path through its launcher, in a fresh poisoned y.
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<uint16_t> dx(xb), dy(static_cast<std::size_t>(T * 6 * c.out));
    dy.poison();
    const int64_t wsb = kernels::expert_gemv_workspace_bytes(T, 6, c.E);
    DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(wsb));
    kernels::ExpertGemvArgs a;
    a.w = ex->table;
    a.ids = d_ids.get();
    a.T = T;
    a.k = 6;
    a.x = dx.get();
    a.relu2 = true;
    a.y = dy.get();
    a.workspace = ws.get();
    a.workspace_bytes = wsb;
    bool launched = false;
    EXPECT_NO_THROW(launched = kernels::cuda::launch_expert_batch(a, nullptr));
    EXPECT_TRUE(launched);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(with_ws, dy.download()) << "T=" << T;
  }
}

TEST(MoeGrouped, RejectsBadArguments) {
  ASSERT_TRUE(have_device());
  const auto ex = make_experts(WeightFormat::Dense, 4, 32, 64, 5, 7919);
  DeviceBuffer<int32_t> ids(std::vector<int32_t>(256, 0));
  DeviceBuffer<uint16_t> x(std::vector<uint16_t>(128 * 64, 0)), y(std::vector<uint16_t>(256 * 32, 0));
  kernels::ExpertGemvArgs a;
  a.w = ex->table;
  a.ids = ids.get();
  a.T = 128;  // 256 pairs: the grouped path
  a.k = 2;
  a.x = x.get();
  a.y = y.get();
  ASSERT_GE(a.T * a.k, kernels::kExpertGroupedMinPairs);
  const int64_t need = kernels::expert_gemv_workspace_bytes(128, 2, 4);
  DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(need));
  a.workspace = ws.get();
  a.workspace_bytes = need - 16;
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);  // workspace too small
  a.workspace_bytes = need;
  a.workspace = static_cast<uint8_t*>(ws.get()) + 4;
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);  // misaligned workspace
  a.workspace = ws.get();
  a.w.in = 48;  // not a multiple of 32
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);
  a.w.in = 64;
  EXPECT_NO_THROW(kernels::expert_gemv_cuda(a, nullptr));
  a.T = 40000;  // 80000 pairs: only with a workspace (this one is too small)
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);
  a.workspace = nullptr;
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);
  a.T = 128;
  a.w.experts = 5000;  // the grouped (and batch) paths' limit
  EXPECT_THROW(kernels::expert_gemv_workspace_bytes(64, 2, 5000), Error);
  a.workspace = ws.get();
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);
  EXPECT_THROW(kernels::expert_gemv_workspace_bytes(-1, 2, 4), Error);
  CUDA_OK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nemotron::testing
