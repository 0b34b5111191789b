// Prefill GEMM: Y [T, out] = X [T, in] W^T on the BF16 tensor cores, fp32 accumulation.
// The kernel is the shared block of gemm_core.cuh (mma.sync + ldmatrix, cp.async pipeline,
// weights decoded to BF16 in shared memory; exact for BF16, FP8 values and NVFP4 e2m1 x block
// scale products; the per-tensor scale is applied to the fp32 result), on 128 x 128 tiles (64 x
// 128 when that leaves too few blocks for the device). Blocks are rasterized in groups of 8
// row tiles per weight column tile, so that a column tile of W is read from DRAM about once
// per 8 row tiles and the A rows of the group stay in L2. The 64-row tile needs 72-80 KB of
// shared memory, within every sm_80+ target (sm_121: 99 KB per block).
#include <cuda_bf16.h>

#include <string>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/gemm_core.cuh"
#include "kernels/cuda/linear_internal.cuh"

namespace nemotron::kernels::cuda {
namespace {

constexpr int kGroupRows = 8;  // row tiles per rasterization group

template <WeightFormat F, int BM>
__global__ void __launch_bounds__(gemm::kThreads, 2)
    gemm_mma_kernel(const uint8_t* __restrict__ w, const uint8_t* __restrict__ wscale, float post,
                    const uint16_t* __restrict__ x, int T, int in, int out, void* __restrict__ y, bool y_f32,
                    bool pairs, int mtn, int ntn) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ const uint16_t* arow[BM];
  __shared__ int32_t yrow[BM];
  const int id = blockIdx.x, group = kGroupRows * ntn, first = id / group * kGroupRows;
  const int gm = min(mtn - first, kGroupRows), r = id % group;
  const int m0 = (first + r % gm) * BM, n0 = (r / gm) * gemm::BN;
  for (int i = threadIdx.x; i < BM; i += blockDim.x) {
    const bool ok = m0 + i < T;
    arow[i] = ok ? x + static_cast<int64_t>(m0 + i) * in : nullptr;
    yrow[i] = ok ? m0 + i : -1;
  }
  __syncthreads();
  const gemm::WOperand op{w, wscale, row_bytes(F, in), in, out, n0};
  float acc[BM / 32][4][4];
  gemm::gemm_mainloop<F, BM>(arow, op, smem, acc);
  gemm::gemm_store<BM>(acc, yrow, y, y_f32, pairs, out, n0, post, false);
}

template <WeightFormat F, int BM>
void launch_mma(const LinearCudaArgs& a, cudaStream_t stream) {
  constexpr int smem = gemm::Cfg<F, BM>::kSmem;
  const cudaError_t e = cudaFuncSetAttribute(gemm_mma_kernel<F, BM>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  require(e == cudaSuccess, std::string("linear_gemm: shared memory opt-in failed: ") + cudaGetErrorString(e));
  const int64_t mtn = (a.T + BM - 1) / BM, ntn = (a.w.out + gemm::BN - 1) / gemm::BN;
  require(mtn * ntn < (int64_t{1} << 31), "linear_gemm: too many tiles");
  const bool f32 = a.y_type == OutType::F32;
  const bool pairs = a.w.out % 2 == 0 && reinterpret_cast<uintptr_t>(a.y) % (f32 ? 8 : 4) == 0;
  const float post = gemm::Cfg<F, BM>::kPost * post_scale(F, a.w.scale);
  gemm_mma_kernel<F, BM><<<static_cast<unsigned>(mtn * ntn), gemm::kThreads, smem, stream>>>(
      static_cast<const uint8_t*>(a.w.data), a.w.block_scale, post, a.x, static_cast<int>(a.T),
      static_cast<int>(a.w.in), static_cast<int>(a.w.out), a.y, f32, pairs, static_cast<int>(mtn),
      static_cast<int>(ntn));
}

template <WeightFormat F>
void launch_fmt_mma(const LinearCudaArgs& a, cudaStream_t stream) {
  const DeviceLimits lim = device_limits();
  const int64_t ntn = (a.w.out + gemm::BN - 1) / gemm::BN, big = (a.T + 127) / 128 * ntn;
  require(gemm::smem_fits<F, 64>(lim.smem_optin),
          "linear_gemm: the device allows " + std::to_string(lim.smem_optin) +
              " bytes of shared memory per block, the GEMM tile needs " +
              std::to_string(gemm::Cfg<F, 64>::kSmem) + " and more");
  if (big >= 2 * lim.sms && gemm::smem_fits<F, 128>(lim.smem_optin)) launch_mma<F, 128>(a, stream);
  else launch_mma<F, 64>(a, stream);
}

}  // namespace

void launch_linear_gemm(const LinearCudaArgs& a, cudaStream_t stream) {
  switch (a.w.format) {
    case WeightFormat::Dense: launch_fmt_mma<WeightFormat::Dense>(a, stream); break;
    case WeightFormat::FP8: launch_fmt_mma<WeightFormat::FP8>(a, stream); break;
    case WeightFormat::NVFP4: launch_fmt_mma<WeightFormat::NVFP4>(a, stream); break;
  }
  check_launch("linear_gemm");
}

}  // namespace nemotron::kernels::cuda
