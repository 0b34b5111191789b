// Prefill GEMM: Y [T, out] = X [T, in] W^T on the BF16 tensor cores, fp32 accumulation.
// The kernel is the shared block of gemm_core.cuh (mma.sync + ldmatrix, cp.async pipeline,
// weights decoded to BF16 in shared memory; exact for BF16, FP8 values and NVFP4 e2m1 x block
// scale products; the per-tensor scale is applied to the fp32 result), on 128 x 128 tiles (64 x
// 128 when that leaves too few blocks for the device). Blocks are rasterized in groups of 8
// row tiles per weight column tile, so that a column tile of W is read from DRAM about once
// per 8 row tiles and the A rows of the group stay in L2. The 64-row tile needs 72-80 KB of
// shared memory, within every sm_80+ target (sm_121: 99 KB per block). Calls of <= 32 rows
// run 32-row tiles.
//
// Split K (steps of a few rows: decode batches of 9+ sequences, verify steps, the router):
// when the 64-row tiles of a call fill less than half of the device's block slots (out_proj of
// Nano at <= 64 rows: 21 tiles on 132 SMs), each tile's K range is split over `splits` blocks
// (grid y), so that ~2 blocks per SM stream weights instead of < 1. Each block stores its fp32
// partial tile (per-tensor scale applied) in the caller's workspace, then takes a ticket from
// the tile's counter; the block that takes the last ticket adds the partials in split order
// (0, 1, ...: the same bits whichever block finishes last), applies relu² and writes y, and
// resets the counter to 0 for the next call (graph replays included).
// Workspace layout (linear_cuda.h): an int32 counter per tile (zero between calls), then the
// partials [splits][T][out] fp32.
#include <cuda_bf16.h>

#include <algorithm>
#include <string>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/gemm_core.cuh"
#include "kernels/cuda/linear_internal.cuh"

namespace nemotron::kernels::cuda {
namespace {

constexpr int kGroupRows = 8;  // row tiles per rasterization group

// Split tiles have 32 or 64 rows: partials of splits x tiles <= block slots fit the bound.
static_assert(gemm::BN == kLinearSplitTileCols && kLinearSplitTileRows == 64, "linear_cuda.h's split-K bound");

// Split-K: add the `splits` partial tiles of this block's tile (in split order) into acc.
template <int BM>
__device__ __forceinline__ void sum_partials(float (&acc)[BM / 32][4][4], const float* part, int splits, int T,
                                             const int32_t* yrow, int out, int n0) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp >> 2) * (BM / 2), wn = (warp & 3) * 32;
  const int64_t plane = static_cast<int64_t>(T) * out;
#pragma unroll
  for (int mt = 0; mt < BM / 32; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int yr = yrow[wm + 16 * mt + (lane >> 2) + 8 * h];
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int c = n0 + wn + 8 * nt + 2 * (lane & 3);
        float v0 = 0.0f, v1 = 0.0f;
        if (yr >= 0 && c < out) {
          const float* p = part + static_cast<int64_t>(yr) * out + c;
          for (int s = 0; s < splits; ++s, p += plane) {
            v0 += __ldcg(p);
            if (c + 1 < out) v1 += __ldcg(p + 1);
          }
        }
        acc[mt][nt][2 * h] = v0;
        acc[mt][nt][2 * h + 1] = v1;
      }
    }
}

template <WeightFormat F, int BM, bool AW>
__global__ void __launch_bounds__(gemm::kThreads, 2)
    gemm_mma_kernel(const uint8_t* __restrict__ w, const uint8_t* __restrict__ wscale, float post,
                    const uint16_t* __restrict__ x, int T, int in, int out, void* __restrict__ y, bool y_f32,
                    bool pairs, bool relu2, int mtn, int ntn, int ksl, int32_t* __restrict__ counters,
                    float* __restrict__ part) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ const uint16_t* arow[BM];
  __shared__ int32_t yrow[BM];
  __shared__ int last;
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
  const int splits = gridDim.y;
  if (splits == 1) {
    gemm::gemm_mainloop<F, BM, AW>(arow, op, smem, acc);
    gemm::gemm_store<BM>(acc, yrow, y, y_f32, pairs, out, n0, post, relu2);
    return;
  }
  const int KT = (in + gemm::BK - 1) / gemm::BK, kt0 = blockIdx.y * ksl;
  gemm::gemm_mainloop<F, BM, AW>(arow, op, smem, acc, kt0, min(ksl, KT - kt0));
  int32_t* counter = counters + id;
  gemm::gemm_store<BM>(acc, yrow, part + static_cast<int64_t>(blockIdx.y) * T * out, true, out % 2 == 0, out, n0,
                       post, false);
  __threadfence();  // this block's partial visible device-wide before its ticket
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1) == splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();  // the other blocks' partials (published before their tickets) are read after ours
  sum_partials<BM>(acc, part, splits, T, yrow, out, n0);
  gemm::gemm_store<BM>(acc, yrow, y, y_f32, pairs, out, n0, 1.0f, relu2);
  if (threadIdx.x == 0) *counter = 0;
}

// Blocks per K range for a call of `tiles` tiles of KT slices: enough to give the device
// ~kLinearSplitBlocksPerSm blocks per SM, each range at least kMinSlices slices, at most
// kMaxSplits ranges (one block adds them all); 1 = no split. BF16 weights stream well through
// the cp.async ring already: split only at <= 16 rows and <= 64 tiles, where it measured faster
// (H100, bench_gemv_cuda --few-rows: 1.2-1.7x at 16 rows, 0.73-0.93x at 64 rows).
struct Split {
  int splits = 1, ksl = 0;
};
Split choose_split(int64_t tiles, int KT, int sms, bool dense, int64_t T) {
  constexpr int kMinSlices = 2, kMaxSplits = 8;
  const int64_t slots = static_cast<int64_t>(kLinearSplitBlocksPerSm) * sms;
  if (tiles <= 0 || 2 * tiles > slots || KT < 2 * kMinSlices) return {};
  if (dense && (T > 16 || tiles > 64)) return {};
  int s = static_cast<int>(std::min<int64_t>({slots / tiles, KT / kMinSlices, kMaxSplits}));
  const int ksl = (KT + s - 1) / s;
  s = (KT + ksl - 1) / ksl;  // every range non-empty
  return s > 1 ? Split{s, ksl} : Split{};
}

template <WeightFormat F, int BM, bool AW>
void launch_mma(const LinearCudaArgs& a, cudaStream_t stream, int sms) {
  constexpr int smem = gemm::Cfg<F, BM, AW>::kSmem;
  const cudaError_t e =
      cudaFuncSetAttribute(gemm_mma_kernel<F, BM, AW>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  require(e == cudaSuccess, std::string("linear_gemm: shared memory opt-in failed: ") + cudaGetErrorString(e));
  const int64_t mtn = (a.T + BM - 1) / BM, ntn = (a.w.out + gemm::BN - 1) / gemm::BN;
  require(mtn * ntn < (int64_t{1} << 31), "linear_gemm: too many tiles");
  const bool f32 = a.y_type == OutType::F32;
  const bool pairs = a.w.out % 2 == 0 && reinterpret_cast<uintptr_t>(a.y) % (f32 ? 8 : 4) == 0;
  const float post = gemm::Cfg<F, BM>::kPost * post_scale(F, a.w.scale);
  Split sp;
  if (BM <= 64 && a.workspace && a.workspace_bytes >= linear_split_workspace_bytes(sms)) {
    sp = choose_split(mtn * ntn, static_cast<int>((a.w.in + gemm::BK - 1) / gemm::BK), sms, F == WeightFormat::Dense,
                      a.T);
    // The bound linear_split_workspace_bytes promises: counters for every tile, partials of
    // splits x (64 mtn) x (128 ntn) <= kLinearSplitBlocksPerSm sms tiles.
    require(sp.splits * mtn * ntn <= int64_t{kLinearSplitBlocksPerSm} * sms || sp.splits == 1,
            "linear_gemm: split-K workspace bound broken");
  }
  auto* ws = static_cast<unsigned char*>(a.workspace);
  const dim3 grid(static_cast<unsigned>(mtn * ntn), static_cast<unsigned>(sp.splits));
  gemm_mma_kernel<F, BM, AW><<<grid, gemm::kThreads, smem, stream>>>(
      static_cast<const uint8_t*>(a.w.data), a.w.block_scale, post, a.x, static_cast<int>(a.T),
      static_cast<int>(a.w.in), static_cast<int>(a.w.out), a.y, f32, pairs, a.relu2, static_cast<int>(mtn),
      static_cast<int>(ntn), sp.ksl, reinterpret_cast<int32_t*>(ws),
      sp.splits > 1 ? reinterpret_cast<float*>(ws + linear_split_counter_bytes(sms)) : nullptr);
}

// The asynchronous-weight form where it applies and fits (gemm_core.cuh's AW).
template <WeightFormat F, int BM>
void launch_bm(const LinearCudaArgs& a, cudaStream_t stream, const DeviceLimits& lim) {
  if constexpr (F != WeightFormat::Dense) {
    if (gemm::use_async_weights<F, BM>(a.w.in, lim.smem_optin)) return launch_mma<F, BM, true>(a, stream, lim.sms);
  }
  launch_mma<F, BM, false>(a, stream, lim.sms);
}

template <WeightFormat F>
void launch_fmt_mma(const LinearCudaArgs& a, cudaStream_t stream) {
  const DeviceLimits lim = device_limits();
  const int64_t ntn = (a.w.out + gemm::BN - 1) / gemm::BN, big = (a.T + 127) / 128 * ntn;
  require(gemm::smem_fits<F, 64>(lim.smem_optin),
          "linear_gemm: the device allows " + std::to_string(lim.smem_optin) +
              " bytes of shared memory per block, the GEMM tile needs " +
              std::to_string(gemm::Cfg<F, 64>::kSmem) + " and more");
  if (big >= 2 * lim.sms && gemm::smem_fits<F, 128>(lim.smem_optin)) launch_bm<F, 128>(a, stream, lim);
  else if (a.T <= 32) launch_bm<F, 32>(a, stream, lim);
  else launch_bm<F, 64>(a, stream, lim);
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
