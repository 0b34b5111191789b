// linear_cuda (GEMV paths: tensor-core tiles and warp-per-row; GEMM; Dense BF16 / FP8 / NVFP4,
// BF16 and fp32 output) against linear_cpu on the same BF16 inputs and the same stored weights.
// Tolerance per output element: |gpu - ref| <= c * sum_k |w_k x_k| (+ 2^-8 |ref| when the output
// is BF16: one rounding). c = 1e-5 for the GEMV, 3e-5 for the tensor-core GEMM; both sides
// accumulate exact products in fp32 in different orders, so the gap is a few ulps of the
// absolute sum. Outputs are poisoned (NaN) before the launch: an unwritten element fails.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/linear_cuda.h"
#include "linear_test_util.h"
#include "split_workspace.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::testing {
namespace {

using kernels::LinearPath;
using kernels::OutType;
using kernels::WeightFormat;

struct Case {
  const char* name;
  int64_t out, in;
};

// Real Nemotron 3 shapes ([out, in]) plus small ones with ragged tiles.
const Case kNano[] = {{"nano.in_proj", 10304, 2688}, {"nano.out_proj", 2688, 4096}, {"nano.expert_up", 1856, 2688},
                      {"nano.expert_down", 2688, 1856}, {"nano.router", 128, 2688}};
const Case kSuper[] = {{"super.in_proj", 18560, 4096}, {"super.latent_expert_up", 2688, 1024},
                       {"super.latent_expert_down", 1024, 2688}};
const Case kSmall[] = {{"ragged", 37, 96}, {"one_row", 1, 32}, {"tile+1", 65, 160}};

// Extreme NVFP4 block scales (0, the smallest E4M3 subnormal 2^-9, the largest 448, a
// negative one) and extreme FP8 codes (+-448, +-2^-9, +-0) written over part of a weight.
void add_extremes(HostWeight& hw) {
  if (hw.w.format == WeightFormat::NVFP4) {
    const uint8_t codes[] = {0x00, 0x01, 0x7E, 0xB8};
    for (std::size_t i = 0; i < hw.scales.size(); i += 7) hw.scales[i] = codes[(i / 7) % 4];
  } else if (hw.w.format == WeightFormat::FP8) {
    const uint8_t codes[] = {0x7E, 0xFE, 0x01, 0x81, 0x00, 0x80};
    for (std::size_t i = 0; i < hw.data.size(); i += 5) hw.data[i] = codes[(i / 5) % 6];
  }
}

void run_case(const Case& c, WeightFormat f, int64_t T, LinearPath path, OutType yt, uint64_t seed,
              bool extremes = false, bool split = false, int tiles_per_block = 0) {
  HostWeight hw = make_weight(f, c.out, c.in, seed);
  if (extremes) add_extremes(hw);
  Rng rng(seed * 7 + 1);
  std::vector<float> xf;
  const std::vector<uint16_t> xb = rng.bf16(static_cast<std::size_t>(T * c.in), 1.0f, &xf);

  DeviceBuffer<uint8_t> dw(hw.data), ds(hw.scales.empty() ? std::vector<uint8_t>(16) : hw.scales);
  DeviceBuffer<uint16_t> dx(xb);
  const std::size_t ny = static_cast<std::size_t>(T * c.out);
  DeviceBuffer<float> dyf(yt == OutType::F32 ? ny : 1);
  DeviceBuffer<uint16_t> dyb(yt == OutType::BF16 ? ny : 1);
  ASSERT_TRUE(dw.get() && dx.get());
  dyf.poison();
  dyb.poison();

  kernels::LinearCudaArgs a;
  a.w = hw.w;
  a.w.data = dw.get();
  a.w.block_scale = f == WeightFormat::NVFP4 ? ds.get() : nullptr;
  a.x = dx.get();
  a.T = T;
  a.y = yt == OutType::F32 ? static_cast<void*>(dyf.get()) : static_cast<void*>(dyb.get());
  a.y_type = yt;
  a.path = path;
  a.tiles_per_block = tiles_per_block;
  SplitWorkspace ws;
  if (split) ws.attach(a);
  ASSERT_NO_THROW(kernels::linear_cuda(a, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> got = yt == OutType::F32 ? dyf.download() : bf16_to_f32(dyb.download());
  if (split) {
    // Counters back at zero, and a second call gives the same bits (the partials are added
    // in split order whichever block finishes last).
    EXPECT_TRUE(ws.counters_zero()) << c.name;
    ASSERT_NO_THROW(kernels::linear_cuda(a, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const std::vector<float> again = yt == OutType::F32 ? dyf.download() : bf16_to_f32(dyb.download());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), again.begin(), [](float x, float y) {
      return std::memcmp(&x, &y, sizeof x) == 0;
    })) << c.name << " T=" << T << ": split-K not deterministic";
  }

  std::vector<float> ref(ny), tol(ny);
  kernels::linear_cpu(hw.w, xf.data(), T, ref.data());
  const float c_acc = path == LinearPath::Gemm ? 3e-5f : 1e-5f;
  parallel_for(static_cast<std::size_t>(c.out), [&](std::size_t r0, std::size_t r1) {
    std::vector<float> row(static_cast<std::size_t>(c.in));
    for (std::size_t r = r0; r < r1; ++r) {
      kernels::dequantize_row(hw.w, static_cast<int64_t>(r), row.data());
      for (int64_t t = 0; t < T; ++t) {
        double s = 0;
        for (int64_t k = 0; k < c.in; ++k) s += std::fabs(static_cast<double>(row[k]) * xf[t * c.in + k]);
        const std::size_t o = static_cast<std::size_t>(t * c.out) + r;
        tol[o] = c_acc * static_cast<float>(s) + 1e-30f +
                 (yt == OutType::BF16 ? std::ldexp(std::fabs(ref[o]), -8) : 0.0f);
      }
    }
  }, 16);
  const char* pname = path == LinearPath::Gemm ? " gemm" : path == LinearPath::GemvWarpRow ? " gemv-rows" : " gemv";
  const std::string what = std::string(c.name) + " " + kernels::weight_format_name(f) + " T=" + std::to_string(T) +
                           pname + (yt == OutType::F32 ? " f32" : " bf16") + (extremes ? " extremes" : "") +
                           (split ? " split-K" : "") +
                           (tiles_per_block ? " tiles/block=" + std::to_string(tiles_per_block) : "");
  EXPECT_EQ(report(what, got, ref, tol), 0u);
}

const WeightFormat kFormats[] = {WeightFormat::Dense, WeightFormat::FP8, WeightFormat::NVFP4};

TEST(LinearCuda, GemvRealShapes) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 1;
  for (const auto& c : kNano)
    for (auto f : kFormats)
      for (int64_t T : {1, 3, 8})
        run_case(c, f, T, LinearPath::Gemv, std::string(c.name) == "nano.router" ? OutType::F32 : OutType::BF16, seed++);
  for (const auto& c : kSuper)
    for (auto f : kFormats)
      for (int64_t T : {1, 5}) run_case(c, f, T, LinearPath::Gemv, OutType::BF16, seed++);
}

TEST(LinearCuda, GemvLmHeadF32) {
  ASSERT_TRUE(have_device());
  const Case lm{"nano.lm_head", 131072, 2688};
  run_case(lm, WeightFormat::Dense, 1, LinearPath::Gemv, OutType::F32, 99);
  run_case(lm, WeightFormat::Dense, 2, LinearPath::Gemv, OutType::F32, 98);
}

TEST(LinearCuda, GemvSmallAndEveryT) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 200;
  for (const auto& c : kSmall)
    for (auto f : kFormats)
      for (int64_t T = 1; T <= 8; ++T)
        run_case(c, f, T, LinearPath::Gemv, T % 2 ? OutType::BF16 : OutType::F32, seed++);
}

// The warp-per-row CUDA-core GEMV (the fallback for x too large for shared memory).
TEST(LinearCuda, GemvWarpRowPath) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 500;
  for (auto f : kFormats) {
    run_case(kNano[3], f, 1, LinearPath::GemvWarpRow, OutType::BF16, seed++);
    run_case(kNano[4], f, 6, LinearPath::GemvWarpRow, OutType::F32, seed++);
    for (const auto& c : kSmall) run_case(c, f, 3, LinearPath::GemvWarpRow, OutType::BF16, seed++);
  }
}

// Tensor-core GEMV edge cases: every T on shapes whose K is not a multiple of the 128-element
// NVFP4 super-step (1856, 96, 160) and whose rows are not a multiple of the 16-row tile; extreme
// scales and codes; the largest weights with every format; x too large for shared memory
// (T=8, in=16384: 256 KiB) falls back to the warp-per-row kernel.
TEST(LinearCuda, GemvTilesEdgeCases) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 600;
  const Case odd[] = {{"k1856_rows37", 37, 1856}, {"k160_rows1", 1, 160}, {"k96_rows17", 17, 96},
                      {"k224_rows300", 300, 224}};
  for (const auto& c : odd)
    for (auto f : kFormats)
      for (int64_t T = 1; T <= 8; ++T) run_case(c, f, T, LinearPath::Gemv, T % 3 ? OutType::BF16 : OutType::F32, seed++);
  for (auto f : {WeightFormat::FP8, WeightFormat::NVFP4})
    for (int64_t T : {1, 4, 8}) {
      run_case(kNano[2], f, T, LinearPath::Gemv, OutType::BF16, seed++, true);
      run_case(odd[0], f, T, LinearPath::Gemv, OutType::F32, seed++, true);
    }
  const Case lm{"nano.lm_head", 131072, 2688};
  for (auto f : {WeightFormat::FP8, WeightFormat::NVFP4}) run_case(lm, f, 2, LinearPath::Gemv, OutType::F32, seed++);
  const Case wide{"wide_in16384", 24, 16384};
  for (auto f : kFormats) {
    run_case(wide, f, 8, LinearPath::Gemv, OutType::F32, seed++);
    run_case(wide, f, 1, LinearPath::Gemv, OutType::BF16, seed++);
  }
}

// Blocks of several 16-row tiles (LinearCudaArgs::tiles_per_block; x staged once per block):
// real shapes at the row counts of decode batches and verify steps, ragged shapes whose last
// block holds fewer tiles (37 rows: 3 tiles; 300: 19), every format.
TEST(LinearCuda, GemvSeveralTilesPerBlock) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 700;
  for (int tpb : {2, 3, 4}) {
    for (auto f : kFormats) {
      for (int64_t T : {1, 4, 8})
        run_case(kNano[0], f, T, LinearPath::Gemv, OutType::BF16, seed++, false, false, tpb);
      run_case(kNano[1], f, 2, LinearPath::Gemv, OutType::F32, seed++, false, false, tpb);
      run_case({"k1856_rows37", 37, 1856}, f, 5, LinearPath::Gemv, OutType::BF16, seed++, false, false, tpb);
      run_case({"k224_rows300", 300, 224}, f, 8, LinearPath::Gemv, OutType::F32, seed++, false, false, tpb);
    }
    run_case(kNano[2], WeightFormat::NVFP4, 8, LinearPath::Gemv, OutType::BF16, seed++, true, false, tpb);
  }
}

TEST(LinearCuda, GemmRealShapes) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 300;
  for (const auto& c : kNano)
    for (auto f : kFormats) run_case(c, f, 77, LinearPath::Gemm, OutType::BF16, seed++);
  for (const auto& c : kSuper)
    for (auto f : kFormats) run_case(c, f, 40, LinearPath::Gemm, OutType::F32, seed++);
}

TEST(LinearCuda, GemmSmallShapesAndAutoPath) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 400;
  for (const auto& c : kSmall)
    for (auto f : kFormats)
      for (int64_t T : {1, 9, 64, 130}) run_case(c, f, T, LinearPath::Gemm, T % 2 ? OutType::F32 : OutType::BF16, seed++);
  run_case(kNano[2], WeightFormat::NVFP4, 200, LinearPath::Auto, OutType::BF16, seed++);
  for (auto f : kFormats) {  // Auto at T = 1 picks per format and size (both GEMV kernels)
    run_case(kNano[0], f, 1, LinearPath::Auto, OutType::BF16, seed++);
    run_case(kNano[2], f, 1, LinearPath::Auto, OutType::BF16, seed++);
  }
  run_case(kNano[2], WeightFormat::FP8, 4, LinearPath::Auto, OutType::BF16, seed++);
}

// The mma GEMM at prefill sizes: both row tiles (128 when the grid is large enough, else 64),
// T not a multiple of the tile, out not a multiple of the 128 column tile, in % 64 == 32 (a
// zero-filled half slice), odd out (unpaired stores), BF16 and fp32 outputs.
TEST(LinearCuda, GemmLargeTAndRaggedShapes) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 700;
  const Case big[] = {{"nano.expert_down", 2688, 1856}, {"wide_k96", 2200, 96}, {"odd_out301_k352", 301, 352}};
  for (auto f : kFormats) {
    run_case(big[0], f, 2048, LinearPath::Gemm, OutType::BF16, seed++);
    run_case(big[1], f, 2047, LinearPath::Gemm, OutType::F32, seed++);
    run_case(big[2], f, 1000, LinearPath::Gemm, f == WeightFormat::FP8 ? OutType::F32 : OutType::BF16, seed++);
  }
  run_case(kNano[1], WeightFormat::NVFP4, 600, LinearPath::Gemm, OutType::BF16, seed++, true);
  run_case(kNano[2], WeightFormat::FP8, 1500, LinearPath::Gemm, OutType::BF16, seed++, true);
}

// The split-K GEMM (a workspace given, tiles filling less than half the device): the decode
// and verify batch sizes 9..64 (32- and 64-row tiles) on every Nano and Super shape, 100 rows (two row tiles), a
// ragged out (301: odd, unpaired stores), K with a half slice at the end (1856), extreme codes.
TEST(LinearCuda, GemmSplitKFewRows) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 800;
  for (const auto& c : kNano)
    for (auto f : kFormats)
      for (int64_t T : {9, 33, 64})
        run_case(c, f, T, LinearPath::Gemm, std::string(c.name) == "nano.router" ? OutType::F32 : OutType::BF16, seed++,
                 false, true);
  for (const auto& c : kSuper)
    for (auto f : kFormats) run_case(c, f, 24, LinearPath::Gemm, OutType::F32, seed++, false, true);
  const Case odd{"odd_out301_k352", 301, 352};
  for (auto f : kFormats) {
    run_case(odd, f, 20, LinearPath::Gemm, OutType::BF16, seed++, false, true);
    run_case(kNano[1], f, 100, LinearPath::Gemm, OutType::BF16, seed++, false, true);
  }
  run_case(kNano[3], WeightFormat::NVFP4, 48, LinearPath::Gemm, OutType::BF16, seed++, true, true);
  run_case(kNano[0], WeightFormat::FP8, 16, LinearPath::Gemm, OutType::F32, seed++, true, true);
}

// Calls of 9..32 rows run 32-row tiles (with and without split K): both ends of the range,
// every format, ragged out and a K with a half slice (the register-staged weights).
TEST(LinearCuda, GemmThirtyTwoRowTiles) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 900;
  const Case odd{"odd_out301_k352", 301, 352}, half{"k160_out200", 200, 160};
  for (auto f : kFormats)
    for (int64_t T : {9, 17, 32}) {
      run_case(kNano[0], f, T, LinearPath::Gemm, OutType::BF16, seed++);
      run_case(kNano[1], f, T, LinearPath::Gemm, T == 17 ? OutType::F32 : OutType::BF16, seed++, false, true);
      run_case(odd, f, T, LinearPath::Gemm, OutType::BF16, seed++, false, T != 9);
      run_case(half, f, T, LinearPath::Gemm, OutType::F32, seed++, false, T == 32);
    }
}

// linear_group_cuda gives each part's linear_cuda result bit for bit, in one launch (the Nano
// attention q, k, v in BF16 and FP8 at T = 1; ragged rows) or one call each (T > 1, the tile
// GEMV, mixed formats).
void check_group(const std::vector<Case>& parts, const std::vector<WeightFormat>& fmts, int64_t T, uint64_t seed) {
  const int n = static_cast<int>(parts.size());
  const int64_t in = parts[0].in;
  Rng rng(seed);
  std::vector<float> xf;
  const std::vector<uint16_t> xb = rng.bf16(static_cast<std::size_t>(T * in), 1.0f, &xf);
  DeviceBuffer<uint16_t> dx(xb);
  std::vector<HostWeight> hw;
  std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> dw, ds;
  std::vector<std::unique_ptr<DeviceBuffer<uint16_t>>> y1, y2;
  std::vector<kernels::LinearCudaArgs> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    hw.push_back(make_weight(fmts[i], parts[i].out, in, seed * 10 + static_cast<uint64_t>(i)));
    dw.push_back(std::make_unique<DeviceBuffer<uint8_t>>(hw[i].data));
    ds.push_back(std::make_unique<DeviceBuffer<uint8_t>>(hw[i].scales.empty() ? std::vector<uint8_t>(16) : hw[i].scales));
    y1.push_back(std::make_unique<DeviceBuffer<uint16_t>>(static_cast<std::size_t>(T * parts[i].out)));
    y2.push_back(std::make_unique<DeviceBuffer<uint16_t>>(static_cast<std::size_t>(T * parts[i].out)));
    y1[i]->poison();
    y2[i]->poison();
    a[i].w = hw[i].w;
    a[i].w.data = dw[i]->get();
    a[i].w.block_scale = fmts[i] == WeightFormat::NVFP4 ? ds[i]->get() : nullptr;
    a[i].x = dx.get();
    a[i].T = T;
    a[i].y = y1[i]->get();
    b[i] = a[i];
    b[i].y = y2[i]->get();
  }
  for (int i = 0; i < n; ++i) ASSERT_NO_THROW(kernels::linear_cuda(a[i], nullptr));
  ASSERT_NO_THROW(kernels::linear_group_cuda(b.data(), n, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(y1[i]->download(), y2[i]->download())
        << "group part " << i << " (" << parts[i].name << ", " << kernels::weight_format_name(fmts[i]) << ") T=" << T;
}

TEST(LinearCuda, GroupEqualsSeparateCalls) {
  ASSERT_TRUE(have_device());
  const std::vector<Case> qkv = {{"nano.q", 4096, 2688}, {"nano.k", 256, 2688}, {"nano.v", 256, 2688}};
  const std::vector<Case> ragged = {{"a", 37, 96}, {"b", 1, 96}, {"c", 17, 96}, {"d", 8, 96}};
  uint64_t seed = 900;
  for (auto f : {WeightFormat::Dense, WeightFormat::FP8}) {
    check_group(qkv, {f, f, f}, 1, seed++);
    check_group(ragged, {f, f, f, f}, 1, seed++);
  }
  check_group(ragged, std::vector<WeightFormat>(4, WeightFormat::NVFP4), 1, seed++);  // small NVFP4: warp rows
  check_group(qkv, std::vector<WeightFormat>(3, WeightFormat::NVFP4), 1, seed++);     // q: the tile GEMV
  check_group(qkv, std::vector<WeightFormat>(3, WeightFormat::Dense), 3, seed++);     // T > 1
  check_group(ragged, {WeightFormat::Dense, WeightFormat::FP8, WeightFormat::Dense, WeightFormat::NVFP4}, 1, seed++);
  check_group({{"one", 24, 64}}, {WeightFormat::Dense}, 1, seed++);
  EXPECT_THROW(kernels::linear_group_cuda(nullptr, 2, nullptr), Error);
}

TEST(LinearCuda, RejectsBadArguments) {
  kernels::LinearCudaArgs a;
  a.w.out = 16;
  a.w.in = 48;  // not a multiple of 32
  a.T = 1;
  EXPECT_THROW(kernels::linear_cuda(a, nullptr), Error);
  a.w.in = 64;
  EXPECT_THROW(kernels::linear_cuda(a, nullptr), Error);  // null pointers
  a.T = 0;
  EXPECT_THROW(kernels::linear_cuda(a, nullptr), Error);
  a.T = 9;
  a.path = LinearPath::Gemv;
  a.w.data = a.x = reinterpret_cast<const uint16_t*>(uintptr_t{256});
  a.y = reinterpret_cast<void*>(uintptr_t{256});
  EXPECT_THROW(kernels::linear_cuda(a, nullptr), Error);  // GEMV takes at most 8 rows
  a.T = 1;
  a.w.format = WeightFormat::Dense;
  a.w.dense_type = kernels::ElementType::F32;
  EXPECT_THROW(kernels::linear_cuda(a, nullptr), Error);
  a.w.dense_type = kernels::ElementType::BF16;
  for (int tpb : {-1, 5}) {
    a.tiles_per_block = tpb;
    EXPECT_THROW(kernels::linear_cuda(a, nullptr), Error) << "tiles_per_block " << tpb;
  }
}

}  // namespace
}  // namespace nemotron::testing
