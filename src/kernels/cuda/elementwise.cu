#include <algorithm>
#include <cmath>

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
  cuda::pdl_wait();
  cuda::pdl_trigger();
  const int64_t r = blockIdx.x;
  const uint16_t* src = in + static_cast<int64_t>(rows[r]) * width;
  uint16_t* dst = out + r * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
}

__global__ void wait_kernel(uint64_t ns) {
  uint64_t t0 = 0, t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// One block per row: each thread keeps its best (value, index) over a strided range, then a
// warp and a block reduction keep the larger value, the lower index on equal values.
constexpr int kArgmaxThreads = 1024;

__device__ __forceinline__ void better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// kVec: the row is read as float4 (V % 4 == 0, 16-byte aligned rows), kArgmaxUnroll loads in
// flight per thread; element order per thread still only grows, so strict > keeps the first.
constexpr int kArgmaxUnroll = 8;

template <bool kVec>
__global__ void __launch_bounds__(kArgmaxThreads) argmax_rows_kernel(const float* __restrict__ logits, int64_t V,
                                                                      int32_t* __restrict__ out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  cuda::pdl_wait();
  cuda::pdl_trigger();
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * V;
  float bv = -INFINITY;
  int bi = 0x7FFFFFFF;
  auto take = [&](float x, int64_t j) {
    if (x > bv) {  // NaN never compares greater; j only grows per thread, so ties keep the first
      bv = x;
      bi = static_cast<int>(j);
    }
  };
  if constexpr (kVec) {
    const float4* r4 = reinterpret_cast<const float4*>(row);
    const int64_t n4 = V / 4, step = static_cast<int64_t>(blockDim.x) * kArgmaxUnroll;
    for (int64_t base = threadIdx.x; base < n4; base += step) {
      float4 v[kArgmaxUnroll];
#pragma unroll
      for (int u = 0; u < kArgmaxUnroll; ++u) {
        const int64_t q = base + static_cast<int64_t>(u) * blockDim.x;
        v[u] = q < n4 ? __ldg(r4 + q) : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
      }
#pragma unroll
      for (int u = 0; u < kArgmaxUnroll; ++u) {
        const int64_t j = 4 * (base + static_cast<int64_t>(u) * blockDim.x);
        take(v[u].x, j);
        take(v[u].y, j + 1);
        take(v[u].z, j + 2);
        take(v[u].w, j + 3);
      }
    }
  } else {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) take(row[j], j);
  }
  for (int o = 16; o > 0; o >>= 1) better(bv, bi, __shfl_xor_sync(0xFFFFFFFFu, bv, o), __shfl_xor_sync(0xFFFFFFFFu, bi, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp != 0) return;
  const int nw = blockDim.x >> 5;
  bv = lane < nw ? sv[lane] : -INFINITY;
  bi = lane < nw ? si[lane] : 0x7FFFFFFF;
  for (int o = 16; o > 0; o >>= 1) better(bv, bi, __shfl_xor_sync(0xFFFFFFFFu, bv, o), __shfl_xor_sync(0xFFFFFFFFu, bi, o));
  // All values NaN or -inf: index 0 (the host's start); a NaN first value: index 0 too.
  if (lane == 0) out[blockIdx.x] = (bi == 0x7FFFFFFF || isnan(row[0])) ? 0 : bi;
}

}  // namespace

void argmax_rows_f32_cuda(const float* logits, int64_t R, int64_t V, int32_t* out, cudaStream_t stream) {
  cuda::require(R >= 0 && R < (int64_t{1} << 31) && V >= 1 && V < (int64_t{1} << 31),
                "argmax_rows_f32_cuda: bad shape");
  if (R == 0) return;
  cuda::require(logits && out, "argmax_rows_f32_cuda: null pointer");
  const bool vec = V % 4 == 0 && cuda::aligned16(logits);
  if (vec) cuda::launch_pdl(argmax_rows_kernel<true>, dim3(static_cast<unsigned>(R)), dim3(kArgmaxThreads), 0, stream,
                           logits, V, out);
  else cuda::launch_pdl(argmax_rows_kernel<false>, dim3(static_cast<unsigned>(R)), dim3(kArgmaxThreads), 0, stream,
                        logits, V, out);
  cuda::check_launch("argmax_rows_f32_cuda");
}

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
  cuda::launch_pdl(gather_rows_kernel, dim3(static_cast<unsigned>(R)), dim3(256), 0, stream, in, rows, width, out);
  cuda::check_launch("gather_rows_bf16_cuda");
}

void device_wait_cuda(uint64_t ns, cudaStream_t stream) {
  wait_kernel<<<1, 1, 0, stream>>>(ns);
  cuda::check_launch("device_wait_cuda");
}

}  // namespace nemotron::kernels
