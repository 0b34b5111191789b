// Decode GEMV: y[t, r] = sum_k x[t, k] W[r, k] for T <= 8 rows of x; one warp per output row
// (gemv_core.cuh), kWarps rows per block.
#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/linear_internal.cuh"

namespace nemotron::kernels::cuda {
namespace {

template <WeightFormat F, int NT>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const uint8_t* __restrict__ wdata,
                                                           const uint8_t* __restrict__ wscale, float scale,
                                                           const uint16_t* __restrict__ x, int T, int in, int out,
                                                           void* __restrict__ y, bool y_f32) {
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row < out) gemv_row<F, NT>(wdata, wscale, scale, x, T, in, out, y, y_f32, row);
}

template <WeightFormat F>
void launch_fmt(const LinearCudaArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.w.out + kWarps - 1) / kWarps)), block(kWarps * 32);
  const auto* wd = static_cast<const uint8_t*>(a.w.data);
  const int T = static_cast<int>(a.T), in = static_cast<int>(a.w.in), out = static_cast<int>(a.w.out);
  const bool f32 = a.y_type == OutType::F32;
  if (T == 1) gemv_kernel<F, 1><<<grid, block, 0, stream>>>(wd, a.w.block_scale, a.w.scale, a.x, T, in, out, a.y, f32);
  else if (T == 2) gemv_kernel<F, 2><<<grid, block, 0, stream>>>(wd, a.w.block_scale, a.w.scale, a.x, T, in, out, a.y, f32);
  else if (T <= 4) gemv_kernel<F, 4><<<grid, block, 0, stream>>>(wd, a.w.block_scale, a.w.scale, a.x, T, in, out, a.y, f32);
  else gemv_kernel<F, 8><<<grid, block, 0, stream>>>(wd, a.w.block_scale, a.w.scale, a.x, T, in, out, a.y, f32);
}

}  // namespace

void launch_linear_gemv(const LinearCudaArgs& a, cudaStream_t stream) {
  switch (a.w.format) {
    case WeightFormat::Dense: launch_fmt<WeightFormat::Dense>(a, stream); break;
    case WeightFormat::FP8: launch_fmt<WeightFormat::FP8>(a, stream); break;
    case WeightFormat::NVFP4: launch_fmt<WeightFormat::NVFP4>(a, stream); break;
  }
  check_launch("linear_gemv");
}

}  // namespace nemotron::kernels::cuda
