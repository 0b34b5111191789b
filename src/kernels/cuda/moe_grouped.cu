// Grouped routed-expert GEMM: the path of expert_gemv_cuda for many (token, slot) pairs
// (moe_cuda.h), with no host synchronization.
//
// 1. bucket_kernel (one block of 1024 threads): histogram of the pairs' expert ids, one block-
//    wide exclusive scan into per-expert pair offsets and row-tile offsets, the tile table
//    (expert, first pair slot) of every BM-pair row tile, then the pair indices scattered into
//    their expert's bucket (order within a bucket is arbitrary). A pair whose id is outside
//    [0, E) gets its NaN output row here and is not bucketed; nor is a pair of an expert this
//    table holds no weights for (a null data pointer: another rank's, expert parallel), whose
//    output row is left unwritten (the sharded combine skips it). The batch path (moe_batch.cu)
//    runs it with BM = T*k (launch_expert_buckets): one tile per selected expert, so the tile
//    table is the list of selected experts.
// 2. grouped_kernel: 1-D grid of (row tile bound) x (out / 128) blocks, column tile fastest (the
//    row tile's gathered A rows stay in L2 across its column tiles, and consecutive row tiles
//    of one expert share its weights in L2); the bound is ceil(N / BM) + E >= the real tile
//    count, surplus blocks exit. Each block gathers its pairs' x rows through the pair list,
//    runs the shared GEMM block (gemm_core.cuh) on the expert's weights and scatters the rows
//    to their pair index. Each output row depends only on its own x row and expert (the mma
//    rows are independent, K in a fixed order), so the bucket order does not matter.
//
// Workspace (int32, expert_gemv_workspace_bytes; sized for the smallest row tile, 64):
//   offsets [E + 1] | tile_off [E + 1] | tile_expert [tiles] | tile_start [tiles] | total [1] | pairs [N]
#include <string>

#include "kernels/cuda/gemm_core.cuh"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/moe_cuda.h"

namespace nemotron::kernels {
namespace {

using namespace cuda;

constexpr int kBucketThreads = 1024, kMaxExperts = static_cast<int>(kExpertBucketMaxExperts), kMinBM = 32;
static_assert(kMinBM == kExpertGroupedMinTile, "moe_workspace.cpp sizes the workspace with the smallest row tile");

struct Workspace {
  int32_t *offsets, *tile_off, *tile_expert, *tile_start, *total, *pairs;
};

int64_t tile_bound(int64_t N, int64_t E, int64_t bm) { return (N + bm - 1) / bm + E; }

Workspace carve(void* base, int64_t N, int64_t E) {
  int32_t* p = static_cast<int32_t*>(base);
  const int64_t tiles = tile_bound(N, E, kMinBM);
  Workspace w;
  w.offsets = p;
  w.tile_off = w.offsets + E + 1;
  w.tile_expert = w.tile_off + E + 1;
  w.tile_start = w.tile_expert + tiles;
  w.total = w.tile_start + tiles;
  w.pairs = w.total + 1;
  return w;
}

// Inclusive warp scan of two values per lane.
__device__ __forceinline__ void warp_scan2(int& a, int& b, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int ta = __shfl_up_sync(0xFFFFFFFFu, a, o), tb = __shfl_up_sync(0xFFFFFFFFu, b, o);
    if (lane >= o) {
      a += ta;
      b += tb;
    }
  }
}

// Block-wide exclusive scan of two values per thread (blockDim.x == kBucketThreads); `sh`
// holds 66 ints of shared memory. Returns the block totals in *tot_a, *tot_b.
__device__ void block_scan2(int& a, int& b, int* tot_a, int* tot_b, int* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int ia = a, ib = b;
  warp_scan2(ia, ib, lane);
  if (lane == 31) {
    sh[warp] = ia;
    sh[32 + warp] = ib;
  }
  __syncthreads();
  if (warp == 0) {
    int wa = sh[lane], wb = sh[32 + lane];
    const int xa = wa, xb = wb;
    warp_scan2(wa, wb, lane);
    __syncwarp();
    sh[lane] = wa - xa;  // exclusive warp offsets
    sh[32 + lane] = wb - xb;
    if (lane == 31) {
      sh[64] = wa;
      sh[65] = wb;
    }
  }
  __syncthreads();
  a = sh[warp] + ia - a;
  b = sh[32 + warp] + ib - b;
  *tot_a = sh[64];
  *tot_b = sh[65];
}

__global__ void __launch_bounds__(kBucketThreads) bucket_kernel(const int32_t* __restrict__ ids,
                                                                const void* const* __restrict__ data, int N, int E,
                                                                int bm, int out, uint16_t* __restrict__ y, Workspace ws) {
  __shared__ int32_t cnt[kMaxExperts], cursor[kMaxExperts];
  __shared__ int sh[66];
  pdl_wait();  // the ids come from the router; the workspace may still be read by the last GEMM
  pdl_trigger();  // after the wait, as every expert kernel (moe.cu)
  for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < N; i += blockDim.x) {
    const int32_t e = ids[i];
    if (e >= 0 && e < E && data[e]) atomicAdd(&cnt[e], 1);
  }
  __syncthreads();
  // Thread t owns experts [lo, hi): a contiguous segment, so one scan serves all of them.
  const int per = (E + kBucketThreads - 1) / kBucketThreads;
  const int lo = min(E, static_cast<int>(threadIdx.x) * per), hi = min(E, lo + per);
  int pa = 0, pt = 0;
  for (int e = lo; e < hi; ++e) {
    pa += cnt[e];
    pt += (cnt[e] + bm - 1) / bm;
  }
  int tot_pairs = 0, tot_tiles = 0;
  block_scan2(pa, pt, &tot_pairs, &tot_tiles, sh);
  for (int e = lo; e < hi; ++e) {
    const int n = cnt[e], nt = (n + bm - 1) / bm;
    ws.offsets[e] = pa;
    ws.tile_off[e] = pt;
    cursor[e] = pa;
    for (int t = 0; t < nt; ++t) {
      ws.tile_expert[pt + t] = e;
      ws.tile_start[pt + t] = pa + t * bm;
    }
    pa += n;
    pt += nt;
  }
  if (threadIdx.x == 0) {
    ws.offsets[E] = tot_pairs;
    ws.tile_off[E] = tot_tiles;
    *ws.total = tot_tiles;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < N; i += blockDim.x) {
    const int32_t e = ids[i];
    if (e >= 0 && e < E) {
      if (data[e]) ws.pairs[atomicAdd(&cursor[e], 1)] = i;  // else another rank's expert: no row
    } else {
      for (int c = 0; c < out; ++c) y[static_cast<int64_t>(i) * out + c] = 0x7FC0;  // NaN: a bad id must show
    }
  }
}

template <WeightFormat F, int BM, bool AW>
__global__ void __launch_bounds__(gemm::kThreads, 2) grouped_kernel(ExpertGemvArgs a, Workspace ws, int ntn,
                                                                    bool pairs) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ const uint16_t* arow[BM];
  __shared__ int32_t yrow[BM];
  pdl_wait();  // the tile table comes from bucket_kernel
  pdl_trigger();
  const int j = static_cast<int>(blockIdx.x / ntn), c = static_cast<int>(blockIdx.x % ntn);
  if (j >= *ws.total) return;
  const int e = ws.tile_expert[j], start = ws.tile_start[j], nrows = min(BM, ws.offsets[e + 1] - start);
  const int in = static_cast<int>(a.w.in), out = static_cast<int>(a.w.out);
  for (int i = threadIdx.x; i < BM; i += blockDim.x) {
    const int p = i < nrows ? ws.pairs[start + i] : -1;
    arow[i] = p >= 0 ? a.x + (a.x_per_slot ? p : p / a.k) * in : nullptr;
    yrow[i] = p;
  }
  __syncthreads();
  const gemm::WOperand op{static_cast<const uint8_t*>(a.w.data[e]),
                          F == WeightFormat::NVFP4 ? a.w.block_scale[e] : nullptr, row_bytes(F, in), in, out,
                          c * gemm::BN};
  float acc[BM / 32][4][4];
  gemm::gemm_mainloop<F, BM, AW>(arow, op, smem, acc);
  const float post = gemm::Cfg<F, BM>::kPost * post_scale(F, a.w.scale ? a.w.scale[e] : 1.0f);
  gemm::gemm_store<BM>(acc, yrow, a.y, false, pairs, out, c * gemm::BN, post, a.relu2);
}

template <WeightFormat F, int BM, bool AW>
void launch_grouped(const ExpertGemvArgs& a, const Workspace& ws, cudaStream_t stream) {
  constexpr int smem = gemm::Cfg<F, BM, AW>::kSmem;
  const cudaError_t e =
      cudaFuncSetAttribute(grouped_kernel<F, BM, AW>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  require(e == cudaSuccess, std::string("expert_gemv_cuda: shared memory opt-in failed: ") + cudaGetErrorString(e));
  const int64_t ntn = (a.w.out + gemm::BN - 1) / gemm::BN, blocks = tile_bound(a.T * a.k, a.w.experts, BM) * ntn;
  require(blocks < (int64_t{1} << 31), "expert_gemv_cuda: too many tiles for the grouped path");
  const bool pairs = a.w.out % 2 == 0 && reinterpret_cast<uintptr_t>(a.y) % 4 == 0;
  launch_pdl(grouped_kernel<F, BM, AW>, dim3(static_cast<unsigned>(blocks)), dim3(gemm::kThreads), smem, stream, a, ws,
             static_cast<int>(ntn), pairs);
}

// The asynchronous-weight form (gemm_core.cuh's AW) where it applies and fits.
template <WeightFormat F, int BM>
void launch_aw(const ExpertGemvArgs& a, const Workspace& ws, cudaStream_t stream) {
  if (gemm::use_async_weights<F, BM>(a.w.in, device_limits().smem_optin))
    launch_grouped<F, BM, true>(a, ws, stream);
  else
    launch_grouped<F, BM, false>(a, ws, stream);
}

template <int BM>
void launch_format(const ExpertGemvArgs& a, const Workspace& ws, cudaStream_t stream) {
  switch (a.w.format) {
    case WeightFormat::Dense: launch_grouped<WeightFormat::Dense, BM, false>(a, ws, stream); break;
    case WeightFormat::FP8: launch_aw<WeightFormat::FP8, BM>(a, ws, stream); break;
    case WeightFormat::NVFP4: launch_aw<WeightFormat::NVFP4, BM>(a, ws, stream); break;
  }
}

template <int BM>
bool fits_fmt(WeightFormat f, int optin) {
  switch (f) {
    case WeightFormat::Dense: return gemm::smem_fits<WeightFormat::Dense, BM>(optin);
    case WeightFormat::FP8: return gemm::smem_fits<WeightFormat::FP8, BM>(optin);
    case WeightFormat::NVFP4: break;
  }
  return gemm::smem_fits<WeightFormat::NVFP4, BM>(optin);
}

}  // namespace

// expert_gemv_workspace_bytes: moe_workspace.cpp (host arithmetic, also in CPU-only builds).

namespace cuda {
namespace {

// The checks every user of the bucketing makes (`path` names it in the messages).
void check_bucketing(const ExpertGemvArgs& a, const char* path) {
  const int64_t E = a.w.experts;
  require(E <= kMaxExperts, std::string("expert_gemv_cuda: the ") + path + " path takes at most " +
                                std::to_string(kMaxExperts) + " experts");
  require(a.workspace && aligned16(a.workspace), "expert_gemv_cuda: the workspace must be 16-byte aligned");
  const int64_t need = expert_gemv_workspace_bytes(a.T, a.k, E);
  require(a.workspace_bytes >= need, "expert_gemv_cuda: workspace of " + std::to_string(a.workspace_bytes) +
                                         " bytes given, " + std::to_string(need) + " needed");
}

// The batch path's checks and its tables in the workspace.
Workspace batch_workspace(const ExpertGemvArgs& a) {
  const int64_t N = a.T * a.k;
  require(N >= 1 && N < (int64_t{1} << 30), "expert_gemv_cuda: the batch path takes 1 <= T*k < 2^30 pairs");
  check_bucketing(a, "batch");
  return carve(a.workspace, N, a.w.experts);
}

ExpertBuckets buckets_of(const Workspace& ws) {
  return ExpertBuckets{ws.total, ws.tile_expert, ws.tile_start, ws.offsets, ws.pairs};
}

}  // namespace

// bucket_kernel with one "row tile" per expert (bm = N >= every expert's pair count): its tile
// table is then the list of experts with pairs, in ascending order (tile_expert), with their
// first slot in the pair list (tile_start), and *total is their number.
ExpertBuckets launch_expert_buckets(const ExpertGemvArgs& a, cudaStream_t stream) {
  const Workspace ws = batch_workspace(a);
  const int N = static_cast<int>(a.T * a.k);
  launch_pdl(bucket_kernel, dim3(1), dim3(kBucketThreads), 0, stream, a.ids, a.w.data, N,
             static_cast<int>(a.w.experts), N, static_cast<int>(a.w.out), a.y, ws);
  check_launch("expert_gemv_cuda (bucketing)");
  return buckets_of(ws);
}

ExpertBuckets expert_buckets_in_workspace(const ExpertGemvArgs& a) { return buckets_of(batch_workspace(a)); }

void launch_expert_grouped(const ExpertGemvArgs& a, cudaStream_t stream, int bm) {
  const int64_t N = a.T * a.k, E = a.w.experts;
  require(N < (int64_t{1} << 31), "expert_gemv_cuda: T*k must be < 2^31");
  check_bucketing(a, "grouped");
  // Cost per expert ~ tiles * (BM + D): the mma work of the tile's rows (filled or not) plus
  // the weight decoding, D ~ 50 row-equivalents. With uniform routing and n = N / E pairs per
  // expert, 128-row tiles win from n ~ 80 (n = 96: ~1.05 tiles of 128 vs ~1.9 of 64), 32-row
  // tiles below n ~ 26 (a 512-row prefill step of Nano: n = 24, Poisson-spread counts mostly
  // <= 32: ~1.2 tiles of 32 (98) vs 1 of 64 (114)). A guess from that model, not yet tuned on
  // a device (bench_gemm_cuda times them).
  if (bm == 0) bm = N >= 80 * E ? 128 : N > 26 * E ? 64 : 32;
  require(bm == 32 || bm == 64 || bm == 128, "expert_gemv_cuda: row tile must be 32, 64 or 128");
  const int optin = device_limits().smem_optin;
  auto fits = [&](int b) {
    return b == 32 ? fits_fmt<32>(a.w.format, optin) : b == 64 ? fits_fmt<64>(a.w.format, optin)
                                                                 : fits_fmt<128>(a.w.format, optin);
  };
  if (!fits(bm)) bm = fits(64) ? 64 : 32;
  require(fits(bm), "expert_gemv_cuda: the device's shared memory per block is too small for the grouped GEMM");
  const Workspace ws = carve(a.workspace, N, E);
  launch_pdl(bucket_kernel, dim3(1), dim3(kBucketThreads), 0, stream, a.ids, a.w.data, static_cast<int>(N),
             static_cast<int>(E), bm, static_cast<int>(a.w.out), a.y, ws);
  check_launch("expert_gemv_cuda (bucketing)");
  if (bm == 128) launch_format<128>(a, ws, stream);
  else if (bm == 64) launch_format<64>(a, ws, stream);
  else launch_format<32>(a, ws, stream);
}

}  // namespace cuda
}  // namespace nemotron::kernels
