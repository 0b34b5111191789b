// Routed-expert GEMV (expert ids read on the device) and the weighted combine of the slots.
#include <string>

#include "kernels/cuda/gemv_core.cuh"
#include "kernels/moe_cuda.h"

namespace nemotron::kernels {
namespace {

using namespace cuda;

// grid (ceil(out / kWarps), T*k): block y is one (token, slot) pair.
template <WeightFormat F>
__global__ void __launch_bounds__(kWarps * 32) expert_gemv_kernel(ExpertGemvArgs a) {
  const int64_t i = blockIdx.y;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int out = static_cast<int>(a.w.out), in = static_cast<int>(a.w.in);
  if (row >= out) return;
  const int32_t e = a.ids[i];
  uint16_t* y = a.y + i * out;
  if (e < 0 || e >= a.w.experts) {
    if ((threadIdx.x & 31) == 0) y[row] = 0x7FC0;  // NaN: a bad id must show
    return;
  }
  const uint16_t* x = a.x + (a.x_per_slot ? i : i / a.k) * in;
  gemv_row<F, 1>(static_cast<const uint8_t*>(a.w.data[e]), a.w.block_scale ? a.w.block_scale[e] : nullptr,
                 a.w.scale ? a.w.scale[e] : 1.0f, x, 1, in, out, y, false, row, a.relu2);
}

__global__ void combine_kernel(const uint16_t* __restrict__ y, const float* __restrict__ w, int k, int D,
                               uint16_t* __restrict__ out) {
  const int64_t t = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= D) return;
  float acc = 0.0f;
  for (int s = 0; s < k; ++s) acc += w[t * k + s] * bf16f(y[(t * k + s) * D + c]);
  out[t * D + c] = f2bf(acc);
}

}  // namespace

void expert_gemv_cuda(const ExpertGemvArgs& a, cudaStream_t stream) {
  const ExpertTable& w = a.w;
  require(w.experts >= 1 && w.out >= 1 && w.in >= 1 && w.in % 32 == 0 && w.out < (1 << 30) && w.in < (1 << 30),
          "expert_gemv_cuda: bad expert shape (in % 32 == 0)");
  require(a.T >= 0 && a.k >= 1 && a.T * a.k < 65536, "expert_gemv_cuda: T*k must be < 65536");
  require(w.data && a.ids && a.x && a.y && (w.format != WeightFormat::NVFP4 || w.block_scale),
          "expert_gemv_cuda: null pointer");
  require(cuda::aligned16(a.x), "expert_gemv_cuda: x must be 16-byte aligned");
  if (a.T == 0) return;
  const dim3 grid(static_cast<unsigned>((w.out + kWarps - 1) / kWarps), static_cast<unsigned>(a.T * a.k));
  switch (w.format) {
    case WeightFormat::Dense: expert_gemv_kernel<WeightFormat::Dense><<<grid, kWarps * 32, 0, stream>>>(a); break;
    case WeightFormat::FP8: expert_gemv_kernel<WeightFormat::FP8><<<grid, kWarps * 32, 0, stream>>>(a); break;
    case WeightFormat::NVFP4: expert_gemv_kernel<WeightFormat::NVFP4><<<grid, kWarps * 32, 0, stream>>>(a); break;
  }
  check_launch("expert_gemv_cuda");
}

void moe_combine_cuda(const uint16_t* y, const float* weights, int64_t T, int64_t k, int64_t D, uint16_t* out,
                      cudaStream_t stream) {
  require(T >= 0 && T < 65536 && k >= 1 && D >= 1 && D < (1 << 30), "moe_combine_cuda: bad shape");
  require(T == 0 || (y && weights && out), "moe_combine_cuda: null pointer");
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>((D + 255) / 256), static_cast<unsigned>(T));
  combine_kernel<<<grid, 256, 0, stream>>>(y, weights, static_cast<int>(k), static_cast<int>(D), out);
  check_launch("moe_combine_cuda");
}

}  // namespace nemotron::kernels
