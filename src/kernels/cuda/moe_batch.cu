// Batched routed-expert GEMV: the decode-batch path of expert_gemv_cuda (moe_cuda.h). Every
// expert selected by at least one (token, slot) pair of the call is read once for all of its
// pairs, instead of once per pair (the per-pair GEMV of moe.cu).
//
// 1. launch_expert_buckets (moe_grouped.cu's bucketing kernel, one block): the pair indices
//    grouped by expert, the selected experts in ascending order and their number nexp; the NaN
//    output rows of pairs with an id outside [0, E).
// 2. batch_warp_kernel (the default; below): grid (groups of 4 or 8 16-row tiles, min(E, T*k)
//    expert slots); each warp owns one tile of the j-th selected expert over the whole K, so a
//    pair's row is computed in one fixed order whatever the batch (the same bits at any T).
//    Measured 7-24% faster than the split-K layout from 2 rows on (bench/RESULTS.md). By
//    default each warp's weights travel through a cp.async ring in shared memory (the ring
//    form, 8 warps a block); NEMOTRON_EXPERT_BATCH=registers keeps them in registers (4 warps).
//    The split-K layout (NEMOTRON_EXPERT_BATCH=split):
//    batch_kernel, grid (groups of tpb 16-row tiles of W, min(E, T*k) expert slots), tiles
//    fastest: block (i, j) computes output rows [16 tpb i, 16 tpb (i + 1)) of every pair of the
//    j-th selected expert, tile by tile (tiles_per_block: 1, 2 or 4).
//    Blocks of slots j >= nexp exit after reading nexp, so the launch shape depends only on T,
//    k, E and the weight shape (graph capture), never on the routing. For each group of up to
//    8 of the expert's pairs the block gathers their x rows into shared memory (the token's row
//    for up, the pair's row for down: stage_x_rows) and runs its tile through mma_tile
//    (gemv_core.cuh: 16-byte weight loads, the first issued before the staging; NVFP4 / FP8
//    decoded to BF16 in registers; m16n8k16 mmas with the gathered rows as N = 8; the block's
//    warps split K and their partial sums are added in warp order), then scatters the results
//    (relu² in fp32 when asked) to the pairs' y rows. An expert with more than 8 pairs in the
//    call streams its tiles again per further 8 pairs; that re-read is served by L2 (the block
//    has just read the same 16-64 rows), so DRAM still sees each selected expert about once.
//
// Deterministic: a pair's output is computed by one mma column whose K order is fixed by the
// tile and the block's warp count (a function of T, k, E and the shape), and the mma columns
// are independent, so neither the order of a bucket (atomics) nor the other pairs' routing
// changes a bit of it.
//
// Cost model on paper (H100, Nano up [1856, 2688] NVFP4, 2.8 MB per expert with scales): B = 32
// rows select ~97 of 128 experts for 192 pairs, so this path reads ~272 MB per call against the
// per-pair GEMV's 538 MB; at the tile GEMV's steady NVFP4 rate (~1.9-2.1 TB/s, bench/RESULTS.md)
// that is ~140 us instead of ~385 us. Fixed cost: the bucketing kernel (one block, ~2-3 us on
// the critical path) plus one L2 round trip for the bucket tables per block; per block, x
// staging of r rows x in x 2 bytes from L2 (r ~ 2-3 at B = 32-64 with random routing). Measured
// at ~1.4 TB/s (bench/RESULTS.md, twelfth session), so a block now takes 2-4 tiles and pays
// that prologue once for them; a persistent grid walking a work list, with the next tile's
// loads issued before the current tile's reduction, is the step after.
#include <algorithm>
#include <string>

#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/moe_cuda.h"
#include "util/env.h"

namespace nemotron::kernels::cuda {
namespace {

constexpr int kGroup = 8;  // pairs per pass: the mma's N
constexpr int kStaticSmem = 2 * 2 * kGroup * 4;  // batch_kernel's xrow, yrow

// All threads of the block: group g0 of the expert's bucket (its pairs [start + g0, start + g0 +
// nr)): their x rows (the token's for up, the pair's for down) into shared memory, their x and y
// row indices into xrow, yrow; a barrier before and after the staging.
template <WeightFormat F>
__device__ __forceinline__ void stage_group(const uint16_t* x, bool per_slot, int k, int in, const ExpertBuckets& b,
                                            int first, int nr, int32_t (&xrow)[kGroup], int32_t (&yrow)[kGroup],
                                            uint4* smem) {
  if (threadIdx.x < static_cast<unsigned>(nr)) {
    const int p = b.pairs[first + static_cast<int>(threadIdx.x)];
    xrow[threadIdx.x] = per_slot ? p : p / k;
    yrow[threadIdx.x] = p;
  }
  __syncthreads();
  stage_x_rows<F>([&](int n) { return x + static_cast<int64_t>(xrow[n]) * in; }, nr, in, smem);
  __syncthreads();
}

// Dynamic shared memory: `cap` (= min(8, T*k)) staged x rows of xs_stride(in) 16-byte units,
// then the warps' partial sums (mma_smem_bytes). The explicit 1 block per SM bound lets ptxas
// take the registers it needs (without it the BF16 instance spilled 4 bytes at 64 registers;
// with it: NVFP4 106, FP8 88, BF16 88 registers on sm_90a with the tile loop, no spills).
template <WeightFormat F>
__global__ void __launch_bounds__(kMmaMaxWarps * 32, 1) batch_kernel(ExpertGemvArgs a, ExpertBuckets b, int cap,
                                                                      int tpb) {
  extern __shared__ uint4 smem[];
  // x row and y row (pair index) of mma column n, per group parity: group g writes [g & 1]
  // while the stores of group g - 1 may still read [(g - 1) & 1]; group g - 2's readers are
  // all past group g - 1's staging barriers.
  __shared__ int32_t xrow[2][kGroup], yrow[2][kGroup];
  pdl_wait();  // the buckets come from the bucketing kernel (and x from the kernel before it)
  pdl_trigger();  // after the wait, as every expert kernel (moe.cu)
  // One round of independent loads (the tables hold at least E + 1 >= slots + 1 entries, so
  // reading entry j + 1 stays inside them even where it is unused): expert j's pairs end where
  // expert j + 1's start, the last expert's at the number of bucketed pairs, offsets[E].
  const int j = static_cast<int>(blockIdx.y);
  const int nexp = *b.count, e = b.expert[j], start = b.start[j], next = b.start[j + 1];
  const int bucketed = b.offsets[a.w.experts];
  if (j >= nexp) return;  // block-uniform: no selected expert for this slot
  const int r = (j + 1 < nexp ? next : bucketed) - start;
  const int in = static_cast<int>(a.w.in), out = static_cast<int>(a.w.out), k = static_cast<int>(a.k);
  const int tile0 = static_cast<int>(blockIdx.x) * tpb;
  const int ntiles = min(tpb, (out + kTileRows - 1) / kTileRows - tile0);  // block-uniform, >= 1
  const auto* wdata = static_cast<const uint8_t*>(a.w.data[e]);
  const uint8_t* wscale = F == WeightFormat::NVFP4 ? a.w.block_scale[e] : nullptr;
  const float post = MmaFmt<F>::kPost * post_scale(F, a.w.scale ? a.w.scale[e] : 1.0f);
  float* red = reinterpret_cast<float*>(smem + cap * xs_stride(in));
  const uint16_t* x = a.x;
  uint16_t* y = a.y;
  const bool per_slot = a.x_per_slot;
  int par = 0;
  for (int g0 = 0; g0 < r; g0 += kGroup, par ^= 1) {  // r is block-uniform: every thread runs every group
    const int nr = min(kGroup, r - g0);
    // The group's x rows are staged once (in the first tile, after its first weight loads) and
    // serve the block's tpb tiles; a later tile's barrier (after its first loads) keeps its
    // partial sums from overwriting `red` while the previous tile's stores still read it.
    for (int ti = 0; ti < ntiles; ++ti) {
      const int row0 = (tile0 + ti) * kTileRows;
      float acc[4];
      mma_tile<F>(wdata, wscale, in, out, row0, smem, nr, static_cast<int>(threadIdx.x >> 5),
                  static_cast<int>(blockDim.x >> 5), [&] {
                    if (ti > 0) __syncthreads();
                    else stage_group<F>(x, per_slot, k, in, b, start + g0, nr, xrow[par], yrow[par], smem);
                  }, acc);
      mma_tile_reduce(acc, red, row0, out, nr, post, a.relu2, [&](int n, int row, float s) {
        y[static_cast<int64_t>(yrow[par][n]) * out + row] = f2bf(s);
      });
    }
  }
}

// The warp-per-tile layout: warp w of block (i, j) owns tile kWarps i + w of the j-th
// selected expert and runs the whole K range itself (mma_tile with one warp), so a tile needs no
// cross-warp reduction and no barrier, and each warp keeps its look-ahead loads in flight over
// the whole row instead of a quarter of it. The block's warps share the staged x rows of each
// group of 8 pairs. A warp past the last tile computes the last tile again (its reads hit L2)
// and stores nothing: every warp must reach the staging barriers.
constexpr int kWarpTileWarps = 4;
// The ring form (ExpertGemvArgs::BatchLayout::WarpTileRing): the same warps and tiles, each
// warp's weights through a cp.async ring of kRingDepth super-steps in shared memory
// (mma_tile_ring), 8 warps per block sharing the staged x rows (the x rows, up to 8 x in x 2
// bytes, and the rings together fit 2 blocks per SM at Nano's shapes: 16 warps with 5
// super-steps, ~5.6 KiB, in flight each).
constexpr int kRingWarps = 8;
constexpr int kRingDepth = 6;
template <bool kRing>
__host__ __device__ constexpr int warp_tile_warps() {
  return kRing ? kRingWarps : kWarpTileWarps;
}
// Reused buckets (ExpertGemvArgs::reuse_buckets; `early`): the tables and the first weight
// loads are read before the PDL wait (for x, the up projection's output); the NaN rows of the
// pairs with a bad id, which the bucketing wrote into the previous call's output, are written
// by block (0, 0) after its wait.
__device__ __forceinline__ void bad_id_rows(const ExpertGemvArgs& a) {
  const int64_t N = a.T * a.k;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const int32_t e = __ldcg(a.ids + i);
    if (e < 0 || e >= a.w.experts)
      for (int64_t c = 0; c < a.w.out; ++c) a.y[i * a.w.out + c] = 0x7FC0;  // NaN: a bad id must show
  }
}

// Dynamic shared memory: the staged x rows (cap x xs_stride(in) 16-byte units), then, in the
// ring form, each warp's ring (kRingDepth slots of mma_ring_slot_bytes).
template <WeightFormat F, bool kRing>
__global__ void __launch_bounds__(warp_tile_warps<kRing>() * 32)
    batch_warp_kernel(ExpertGemvArgs a, ExpertBuckets b, int cap) {
  constexpr int kWarps = warp_tile_warps<kRing>();
  extern __shared__ uint4 smem[];
  __shared__ int32_t xrow[2][kGroup], yrow[2][kGroup];  // as in batch_kernel
  const bool early = a.reuse_buckets;
  auto wait = [] {
    pdl_wait();
    pdl_trigger();  // after the wait, as every expert kernel (moe.cu)
  };
  if (!early) wait();
  const bool fixer = early && blockIdx.x == 0 && blockIdx.y == 0;  // writes the bad ids' NaN rows
  const int j = static_cast<int>(blockIdx.y);
  const int nexp = __ldcg(b.count), e = __ldcg(b.expert + j), start = __ldcg(b.start + j),
            next = __ldcg(b.start + j + 1);
  const int bucketed = __ldcg(b.offsets + a.w.experts);
  if (j >= nexp) {
    if (early) wait();
    if (fixer) bad_id_rows(a);
    return;
  }
  const int r = (j + 1 < nexp ? next : bucketed) - start;
  const int in = static_cast<int>(a.w.in), out = static_cast<int>(a.w.out), k = static_cast<int>(a.k);
  const int tiles = (out + kTileRows - 1) / kTileRows;
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  const int tile = static_cast<int>(blockIdx.x) * kWarps + warp;
  const bool owns = tile < tiles;
  const int row0 = min(tile, tiles - 1) * kTileRows;
  const auto* wdata = static_cast<const uint8_t*>(a.w.data[e]);
  const uint8_t* wscale = F == WeightFormat::NVFP4 ? a.w.block_scale[e] : nullptr;
  const float post = MmaFmt<F>::kPost * post_scale(F, a.w.scale ? a.w.scale[e] : 1.0f);
  const uint16_t* x = a.x;
  uint16_t* y = a.y;
  const bool per_slot = a.x_per_slot;
  int par = 0;
  for (int g0 = 0; g0 < r; g0 += kGroup, par ^= 1) {  // block-uniform
    const int nr = min(kGroup, r - g0);
    float acc[4];
    auto stage = [&] {
      if (early && g0 == 0) wait();
      stage_group<F>(x, per_slot, k, in, b, start + g0, nr, xrow[par], yrow[par], smem);
    };
    if constexpr (kRing) {
      uint8_t* ring = reinterpret_cast<uint8_t*>(smem + cap * xs_stride(in)) +
                      warp * kRingDepth * mma_ring_slot_bytes<F>();
      mma_tile_ring<F, kRingDepth>(wdata, wscale, in, out, row0, smem, nr, 0, 1, stage, acc, ring);
    } else {
      mma_tile<F>(wdata, wscale, in, out, row0, smem, nr, 0, 1, stage, acc);
    }
    if (!owns) continue;
    // acc[jj] of lane 4g+t: row g (jj < 2) or g + 8, token 2t + (jj & 1) (mma_tile's layout).
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int row = row0 + (lane >> 2) + (jj >= 2 ? 8 : 0), n = 2 * (lane & 3) + (jj & 1);
      if (row >= out || n >= nr) continue;
      float s = acc[jj] * post;
      if (a.relu2) s = s > 0.0f ? s * s : 0.0f;
      y[static_cast<int64_t>(yrow[par][n]) * out + row] = f2bf(s);
    }
  }
  if (fixer) bad_id_rows(a);
}

// The layout a call runs: ExpertGemvArgs::batch_layout, else NEMOTRON_EXPERT_BATCH=split or
// =registers (A/B runs), else warp per tile through the ring (where it fits; launch_batch).
// Warp per tile measured faster than split K at every row count from 2 (bench/RESULTS.md,
// fourteenth session; a register look-ahead of 4 super-steps instead of 2 was slower). The ring
// form measured 2-3% faster whole-model decode steps than the register form at 8, 32 and 64
// rows (synth Nano NVFP4, H100, alternating runs; through `serve` +1-2% at 8 and 64 clients),
// although alone, call after call, it is ~11% slower at 8 rows and ~3% at 64
// (bench_gemv_cuda --experts; bench/RESULTS.md, twenty-seventh session).
using Layout = ExpertGemvArgs::BatchLayout;
Layout batch_layout(Layout asked) {
  if (asked != Layout::Auto) return asked;
  static const Layout env = env_equals("NEMOTRON_EXPERT_BATCH", "split")       ? Layout::SplitK
                            : env_equals("NEMOTRON_EXPERT_BATCH", "registers") ? Layout::WarpTile
                                                                               : Layout::WarpTileRing;
  return env;
}

// batch_warp_kernel's dynamic shared memory: x rows of min(8, T*k) pairs, then the rings.
template <WeightFormat F, bool kRing>
int64_t batch_warp_smem(const ExpertGemvArgs& a) {
  const int64_t cap = std::min<int64_t>(kGroup, a.T * a.k);
  return cap * xs_stride(static_cast<int>(a.w.in)) * 16 +
         (kRing ? int64_t{warp_tile_warps<kRing>()} * kRingDepth * mma_ring_slot_bytes<F>() : 0);
}

// Whether the ring form runs for this call: its scale copies aligned (mma_ring_fits) and its x
// rows plus rings within the device's shared memory.
template <WeightFormat F>
bool ring_fits(const ExpertGemvArgs& a) {
  return mma_ring_fits<F>(a.w.in) && batch_warp_smem<F, true>(a) + kStaticSmem <= device_limits().smem_optin;
}

template <WeightFormat F, bool kRing>
bool launch_batch_warp(const ExpertGemvArgs& a, cudaStream_t stream) {
  constexpr int kWarps = warp_tile_warps<kRing>();
  const DeviceLimits lim = device_limits();
  const int64_t N = a.T * a.k, tiles = (a.w.out + kTileRows - 1) / kTileRows, slots = std::min(a.w.experts, N);
  const int64_t cap = std::min<int64_t>(kGroup, N);
  const int64_t smem = batch_warp_smem<F, kRing>(a);
  if (smem + kStaticSmem > lim.smem_optin) return false;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(batch_warp_kernel<F, kRing>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    require(e == cudaSuccess, std::string("expert_gemv_cuda: shared memory opt-in failed: ") + cudaGetErrorString(e));
  }
  const ExpertBuckets b = a.reuse_buckets ? expert_buckets_in_workspace(a) : launch_expert_buckets(a, stream);
  const dim3 grid(static_cast<unsigned>((tiles + kWarps - 1) / kWarps), static_cast<unsigned>(slots));
  launch_pdl(batch_warp_kernel<F, kRing>, grid, dim3(kWarps * 32), static_cast<size_t>(smem), stream, a, b,
             static_cast<int>(cap));
  check_launch(kRing ? "expert_gemv_cuda (batch, warp per tile, ring)" : "expert_gemv_cuda (batch, warp per tile)");
  return true;
}

// 16-row tiles per block: 1, 2 or 4, the most that leave at least kMinBlocksPerSm blocks per SM
// (the per-block prologue (bucket tables, pairs, x staging: dependent L2 round trips) is then
// paid once per 2-4 tiles). ExpertGemvArgs::tiles_per_block, else NEMOTRON_EXPERT_TILES_PER_BLOCK
// (1, 2 or 4; A/B runs), overrides it.
constexpr int kMinBlocksPerSm = 4;
int tiles_per_block(int64_t tiles, int64_t slots, int sms, int asked) {
  if (asked == 1 || asked == 2 || asked == 4) return asked;
  static const int forced = [] {
    const int64_t v = env_int("NEMOTRON_EXPERT_TILES_PER_BLOCK", 0);
    return v == 1 || v == 2 || v == 4 ? static_cast<int>(v) : 0;
  }();
  if (forced) return forced;
  int tpb = 1;
  while (tpb < 4 && (tiles + 2 * tpb - 1) / (2 * tpb) * slots >= int64_t{kMinBlocksPerSm} * sms) tpb *= 2;
  return tpb;
}

template <WeightFormat F>
bool launch_batch(const ExpertGemvArgs& a, cudaStream_t stream) {
  const Layout layout = batch_layout(a.batch_layout);
  // The ring form where it fits (ring_fits), else the register form: the same bits either way.
  if (layout == Layout::WarpTileRing && ring_fits<F>(a)) return launch_batch_warp<F, true>(a, stream);
  if (layout == Layout::WarpTile || layout == Layout::WarpTileRing) return launch_batch_warp<F, false>(a, stream);
  const DeviceLimits lim = device_limits();
  const int64_t N = a.T * a.k, tiles = (a.w.out + kTileRows - 1) / kTileRows, slots = std::min(a.w.experts, N);
  const int cap = static_cast<int>(std::min<int64_t>(kGroup, N));
  const int nsteps = static_cast<int>((a.w.in / MmaFmt<F>::kE + 3) / 4);
  const int tpb = tiles_per_block(tiles, slots, lim.sms, a.tiles_per_block);
  const int64_t tile_blocks = (tiles + tpb - 1) / tpb;
  const int warps = mma_warps(tile_blocks * slots, nsteps, lim.sms, [&](int w) {
    return resident_blocks(reinterpret_cast<const void*>(batch_kernel<F>), w * 32, mma_smem_bytes<F>(cap, a.w.in, w));
  });
  const int64_t smem = mma_smem_bytes<F>(cap, a.w.in, warps);
  if (smem + kStaticSmem > lim.smem_optin) return false;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(batch_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
    require(e == cudaSuccess, std::string("expert_gemv_cuda: shared memory opt-in failed: ") + cudaGetErrorString(e));
  }
  const ExpertBuckets b = launch_expert_buckets(a, stream);  // buckets again even when reuse_buckets is set
  const dim3 grid(static_cast<unsigned>(tile_blocks), static_cast<unsigned>(slots));
  launch_pdl(batch_kernel<F>, grid, dim3(warps * 32), static_cast<size_t>(smem), stream, a, b, cap, tpb);
  check_launch("expert_gemv_cuda (batch)");
  return true;
}

}  // namespace

bool expert_batch_ring_fits(const ExpertGemvArgs& a) {
  switch (a.w.format) {
    case WeightFormat::Dense: return ring_fits<WeightFormat::Dense>(a);
    case WeightFormat::FP8: return ring_fits<WeightFormat::FP8>(a);
    case WeightFormat::NVFP4: break;
  }
  return ring_fits<WeightFormat::NVFP4>(a);
}

bool launch_expert_batch(const ExpertGemvArgs& a, cudaStream_t stream) {
  // Checked before anything else (also by the bucketing): the grid's expert dimension, min(E,
  // T*k), stays within 65535, and a declined call leaves T*k < 12 E (or < 256) < 65536 pairs to
  // the per-pair GEMV.
  require(a.w.experts <= kExpertBucketMaxExperts, "expert_gemv_cuda: the batch path takes at most " +
                                                      std::to_string(kExpertBucketMaxExperts) + " experts");
  switch (a.w.format) {
    case WeightFormat::Dense: return launch_batch<WeightFormat::Dense>(a, stream);
    case WeightFormat::FP8: return launch_batch<WeightFormat::FP8>(a, stream);
    case WeightFormat::NVFP4: break;
  }
  return launch_batch<WeightFormat::NVFP4>(a, stream);
}

}  // namespace nemotron::kernels::cuda
