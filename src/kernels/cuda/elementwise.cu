#include <algorithm>
#include "kernels/cuda/common.cuh"
#include "kernels/elementwise_cuda.h"

namespace nemotron::kernels {
namespace {

__global__ void add_bf16_kernel(const uint16_t* __restrict__ a, const uint16_t* __restrict__ b, int64_t n,
                                uint16_t* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = cuda::f2bf(cuda::bf16f(a[i]) + cuda::bf16f(b[i]));
}

__global__ void gather_rows_kernel(const uint16_t* __restrict__ in, const int32_t* __restrict__ rows, int64_t width,
                                   uint16_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const uint16_t* src = in + static_cast<int64_t>(rows[r]) * width;
  uint16_t* dst = out + r * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void add_bf16_cuda(const uint16_t* a, const uint16_t* b, int64_t n, uint16_t* out, cudaStream_t stream) {
  if (n <= 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 4096);
  add_bf16_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(a, b, n, out);
  cuda::check_launch("add_bf16_cuda");
}

void gather_rows_bf16_cuda(const uint16_t* in, const int32_t* rows, int64_t R, int64_t width, uint16_t* out,
                           cudaStream_t stream) {
  if (R <= 0) return;
  gather_rows_kernel<<<static_cast<unsigned>(R), 256, 0, stream>>>(in, rows, width, out);
  cuda::check_launch("gather_rows_bf16_cuda");
}

}  // namespace nemotron::kernels
