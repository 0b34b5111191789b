// linear_cuda with the relu² epilogue (LinearCudaArgs::relu2) against the CPU computation on the
// same BF16 inputs: relu(x W^T)^2 with the dot product in double (tolerance: 1e-5 of the
// absolute dot sum d (3e-5 on the GEMM paths), propagated through the square as 2|a|d + d², plus
// one BF16 rounding of the output (2^-8 relative; every path squares in fp32).
// Every weight format, the tensor-core and warp-per-row GEMV paths (T = 1..8), the GEMM and
// the split-K GEMM (with a workspace).
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/linear_cuda.h"
#include "linear_test_util.h"
#include "split_workspace.h"

namespace nemotron::testing {
namespace {

void check_relu2(kernels::WeightFormat f, int64_t out, int64_t in, int64_t T, kernels::LinearPath path, uint64_t seed,
                 bool split = false) {
  const HostWeight hw = make_weight(f, out, in, seed);
  DeviceBuffer<uint8_t> dw(hw.data);
  std::unique_ptr<DeviceBuffer<uint8_t>> ds;
  kernels::LinearWeight w = hw.w;
  w.data = dw.get();
  if (!hw.scales.empty()) {
    ds = std::make_unique<DeviceBuffer<uint8_t>>(hw.scales);
    w.block_scale = ds->get();
  }
  Rng rng(seed + 1);
  std::vector<float> xf;
  const auto xb = rng.bf16(static_cast<std::size_t>(T * in), 1.0f, &xf);
  DeviceBuffer<uint16_t> dx(xb), dy(static_cast<std::size_t>(T * out));
  dy.poison();
  kernels::LinearCudaArgs a;
  a.w = w;
  a.x = dx.get();
  a.T = T;
  a.y = dy.get();
  a.path = path;
  a.relu2 = true;
  SplitWorkspace ws;
  if (split) ws.attach(a);
  ASSERT_NO_THROW(kernels::linear_cuda(a, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  if (split) {
    EXPECT_TRUE(ws.counters_zero());
  }
  const auto got = bf16_to_f32(dy.download());
  const bool gemm = path == kernels::LinearPath::Gemm || (path == kernels::LinearPath::Auto && T > kernels::kLinearGemvMaxRows);
  std::vector<float> ref(got.size()), tol(got.size()), row(static_cast<std::size_t>(in));
  for (int64_t r = 0; r < out; ++r) {
    kernels::dequantize_row(hw.w, r, row.data());
    for (int64_t t = 0; t < T; ++t) {
      double s = 0, sa = 0;
      for (int64_t c = 0; c < in; ++c) {
        s += static_cast<double>(row[c]) * xf[t * in + c];
        sa += std::fabs(static_cast<double>(row[c]) * xf[t * in + c]);
      }
      const float av = static_cast<float>(s), v = av > 0 ? av * av : 0.0f;
      const float d = (gemm ? 3e-5f : 1e-5f) * static_cast<float>(sa);
      ref[t * out + r] = v;
      tol[t * out + r] = 2.0f * std::fabs(av) * d + d * d + std::ldexp(std::fabs(v), -8) + 1e-30f;
    }
  }
  EXPECT_EQ(report(std::string("relu2 ") + kernels::weight_format_name(f) + " [" + std::to_string(out) + "," +
                       std::to_string(in) + "] T=" + std::to_string(T) + " path " + std::to_string(static_cast<int>(path)) +
                       (split ? " split-K" : ""),
                   got, ref, tol),
            0u);
}

TEST(LinearRelu2Cuda, EpilogueMatchesCpuOnEveryPath) {
  ASSERT_TRUE(have_device());
  using kernels::LinearPath;
  uint64_t seed = 3;
  for (auto f : {kernels::WeightFormat::Dense, kernels::WeightFormat::FP8, kernels::WeightFormat::NVFP4}) {
    for (int64_t T : {1, 3, 8}) {
      check_relu2(f, 3712, 2688, T, LinearPath::Auto, seed++);  // Nano shared expert up
      check_relu2(f, 100, 96, T, LinearPath::Gemv, seed++);
      check_relu2(f, 37, 224, T, LinearPath::GemvWarpRow, seed++);
    }
    check_relu2(f, 130, 256, 20, LinearPath::Auto, seed++);  // GEMM
    check_relu2(f, 130, 256, 20, LinearPath::Auto, seed++, true);  // split-K GEMM, 2 K ranges
    check_relu2(f, 3712, 2688, 64, LinearPath::Auto, seed++, true);  // Nano shared expert up, 64 rows
  }
}

TEST(LinearRelu2Cuda, Fp32OutputNeedsTheGemvPath) {
  ASSERT_TRUE(have_device());
  const HostWeight hw = make_weight(kernels::WeightFormat::Dense, 32, 64, 1);
  DeviceBuffer<uint8_t> dw(hw.data);
  DeviceBuffer<uint16_t> dx(std::vector<uint16_t>(20 * 64, 0));
  DeviceBuffer<float> dy(std::vector<float>(20 * 32, 0.0f));
  kernels::LinearCudaArgs a;
  a.w = hw.w;
  a.w.data = dw.get();
  a.x = dx.get();
  a.T = 20;
  a.y = dy.get();
  a.y_type = kernels::OutType::F32;
  a.relu2 = true;
  EXPECT_THROW(kernels::linear_cuda(a, nullptr), Error);
}

}  // namespace
}  // namespace nemotron::testing
