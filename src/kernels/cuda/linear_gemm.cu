// Prefill GEMM: Y [T, out] = X [T, in] W^T on the BF16 tensor cores (wmma 16x16x16, fp32
// accumulators; portable to every sm_80+ target, sm_90a and sm_121a included).
// Block tile: 64 rows of X x 64 rows of W, K step 32; 4 warps, each 32x32 (2x2 fragments).
// W tiles are decoded into shared memory as BF16: exact for BF16, for FP8 values and for
// NVFP4 e2m1 * block_scale products; the per-tensor scale is applied to the fp32 result.
#include <cuda_bf16.h>
#include <mma.h>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/linear_internal.cuh"

namespace nemotron::kernels::cuda {
namespace {

constexpr int BM = 64, BN = 64, BK = 32, LDS = BK + 8, LDC = BN + 4, kThreads = 128;

template <WeightFormat F>
__global__ void __launch_bounds__(kThreads) gemm_kernel(const uint8_t* __restrict__ wdata,
                                                        const uint8_t* __restrict__ wscale, float scale,
                                                        const uint16_t* __restrict__ x, int T, int in, int out,
                                                        void* __restrict__ y, bool y_f32) {
  using namespace nvcuda;
  __shared__ __align__(32) uint16_t As[BM * LDS];
  __shared__ __align__(32) uint16_t Bs[BN * LDS];
  __shared__ __align__(32) float Cs[BM * LDC];
  const int tid = threadIdx.x, warp = tid >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  const int64_t rb = row_bytes(F, in);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < in; k0 += BK) {
    // X tile: 64 rows x 4 chunks of 8 BF16.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int idx = tid + kThreads * r, row = idx >> 2, c = idx & 3;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (m0 + row < T) v = __ldg(reinterpret_cast<const uint4*>(x + static_cast<int64_t>(m0 + row) * in + k0) + c);
      *reinterpret_cast<uint4*>(As + row * LDS + c * 8) = v;
    }
    // W tile: 64 rows x 32 elements, decoded to BF16.
    if constexpr (F == WeightFormat::Dense) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int idx = tid + kThreads * r, row = idx >> 2, c = idx & 3;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (n0 + row < out) v = __ldg(reinterpret_cast<const uint4*>(wdata + (n0 + row) * rb + k0 * 2) + c);
        *reinterpret_cast<uint4*>(Bs + row * LDS + c * 8) = v;
      }
    } else if constexpr (F == WeightFormat::FP8) {
      const int row = tid >> 1, c = tid & 1;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (n0 + row < out) v = __ldg(reinterpret_cast<const uint4*>(wdata + (n0 + row) * rb + k0) + c);
      float f[16];
      Fmt<F>::decode(v, 0, f);
      store_bf16(Bs + row * LDS + c * 16, f);
    } else {
      if (tid < BN) {
        const int row = tid;
        uint4 v = make_uint4(0, 0, 0, 0);
        uint16_t s = 0;
        if (n0 + row < out) {
          v = __ldg(reinterpret_cast<const uint4*>(wdata + (n0 + row) * rb + k0 / 2));
          s = __ldg(reinterpret_cast<const uint16_t*>(wscale + static_cast<int64_t>(n0 + row) * (in / 16) + k0 / 16));
        }
        float f[32];
        Fmt<F>::decode(v, s, f);
        store_bf16(Bs + row * LDS, f);
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(fa[i], reinterpret_cast<const __nv_bfloat16*>(As + (wm + 16 * i) * LDS + kk), LDS);
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::load_matrix_sync(fb[j], reinterpret_cast<const __nv_bfloat16*>(Bs + (wn + 16 * j) * LDS + kk), LDS);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * LDC + wn + 16 * j, acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();
  const float post = post_scale(F, scale);
  for (int idx = tid; idx < BM * BN; idx += kThreads) {
    const int r = idx / BN, c = idx % BN;
    if (m0 + r >= T || n0 + c >= out) continue;
    const float v = Cs[r * LDC + c] * post;
    const int64_t o = static_cast<int64_t>(m0 + r) * out + n0 + c;
    if (y_f32) static_cast<float*>(y)[o] = v;
    else static_cast<uint16_t*>(y)[o] = f2bf(v);
  }
}

template <WeightFormat F>
void launch_fmt(const LinearCudaArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.w.out + BN - 1) / BN), static_cast<unsigned>((a.T + BM - 1) / BM));
  gemm_kernel<F><<<grid, kThreads, 0, stream>>>(static_cast<const uint8_t*>(a.w.data), a.w.block_scale, a.w.scale,
                                                a.x, static_cast<int>(a.T), static_cast<int>(a.w.in),
                                                static_cast<int>(a.w.out), a.y, a.y_type == OutType::F32);
}

}  // namespace

void launch_linear_gemm(const LinearCudaArgs& a, cudaStream_t stream) {
  switch (a.w.format) {
    case WeightFormat::Dense: launch_fmt<WeightFormat::Dense>(a, stream); break;
    case WeightFormat::FP8: launch_fmt<WeightFormat::FP8>(a, stream); break;
    case WeightFormat::NVFP4: launch_fmt<WeightFormat::NVFP4>(a, stream); break;
  }
  check_launch("linear_gemm");
}

}  // namespace nemotron::kernels::cuda
