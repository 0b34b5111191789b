#pragma once
// MoE on the GPU without host synchronization: the router writes expert ids and weights to
// device memory, and the routed-expert GEMV reads them there (CPU references: moe_router.h,
// moe_mixer in model/cpu_forward.cpp).
#include <cstdint>

#include "kernels/cuda_stream.h"
#include "kernels/linear.h"
#include "kernels/moe_router.h"

namespace nemotron::kernels {

// Sigmoid router with correction bias and grouped top-k, exactly route_topk_cpu per token:
//   logits fp32 [T, E] (device; e.g. linear_cuda with fp32 output), bias fp32 [E] or nullptr,
//   ids int32 [T, k], weights fp32 [T, k] (device). One warp per token; E <= 1024.
void route_topk_cuda(const float* logits, const float* bias, const RouterParams& p, int64_t T, int32_t* ids,
                     float* weights, cudaStream_t stream);

// Router logits from unrounded rows: logits[t, e] = sum_i x[t, i] * w[e, i], fp32 accumulation.
//   x fp32 [T, H] (device, 16-byte aligned), w BF16 [E, H] (the gate), logits fp32 [T, E].
// H even. (CudaModelOptions::router_fp32: the router reads the fp32 normed rows.)
void router_logits_f32_cuda(const float* x, const uint16_t* w, int64_t T, int64_t E, int64_t H, float* logits,
                            cudaStream_t stream);

// Router logits of up to 8 BF16 rows (decode): logits[t, e] = sum_i x[t, i] * w[e, i], fp32
// accumulation in a fixed order (K split in four quarters, summed in order). x [T, H], w BF16
// [E, H] (both 16-byte aligned), logits fp32 [T, E]. H % 8 == 0.
void gate_logits_bf16_cuda(const uint16_t* x, const uint16_t* w, int64_t T, int64_t E, int64_t H, float* logits,
                           cudaStream_t stream);

// The routed experts of one projection, all of one format and shape [out, in]: device arrays
// of E entries (per expert: weight bytes, NVFP4 block scales (nullptr otherwise), scale).
struct ExpertTable {
  WeightFormat format = WeightFormat::NVFP4;
  int64_t experts = 0, out = 0, in = 0;
  const void* const* data = nullptr;
  const uint8_t* const* block_scale = nullptr;
  const float* scale = nullptr;
};

// Routed experts: for each (token t, slot s) pair i = t*k + s,
//   y[i, :] = act(x[x_row(i), :] W[ids[i]]^T)   with x_row(i) = t when x_per_slot is false
// (the up-projection reads the token's row) and i when true (the down-projection reads the
// pair's row). act = relu² when `relu2` (applied in fp32, one rounding). x BF16, y BF16
// [T*k, out], fp32 accumulation. An expert id outside [0, E) is not read; that pair's output
// row becomes NaN. An expert whose data pointer is null (expert parallel: another rank holds
// it) is not read either, and its pairs' output rows are left as they were
// (moe_combine_owned_cuda skips them).
// Paths (expert_gemv_path):
// - PerPair: the GEMV (moe.cu; one pass over the pair's expert weights per pair; T*k < 65536):
//   without a workspace, with warp_rows, and for single-row steps (T < kExpertBatchMinRows).
// - Batch (decode batches; moe_batch.cu): the pairs are bucketed by expert on the device (no
//   host sync), then each selected expert's weights are read once for all its pairs: 16-row
//   tiles decoded in registers and multiplied with up to 8 gathered x rows per pass on the
//   tensor cores (an expert with more than 8 pairs streams its tile once more per further 8,
//   from L2). E <= kExpertBucketMaxExperts there.
// - Grouped (prefill; moe_grouped.cu): the same bucketing, then each expert's weights are read
//   once per 64 or 128 of its pairs by a tensor-core GEMM (mma.sync BF16; FP8 / NVFP4 decoded
//   exactly to BF16). E <= kExpertBucketMaxExperts and T*k < 2^31 there.
// Each output row depends only on its own inputs (fixed K order): results do not depend on the
// routing of the other pairs; the paths agree within one BF16 rounding.
// Measured on an H100 at Nano's up projection (NVFP4, 128 experts, bench_gemm_cuda): the GEMV
// takes 232 us at 192 pairs and 470 us at 384, the grouped GEMM 317 and 399 us.
//
// Rows from which a call with a workspace takes the batch path. At T = 1 a router's k experts
// are distinct, so the per-pair GEMV reads the same bytes without the bucketing launch; at T = 2
// (Nano: ~0.3 of 12 pairs share an expert) the bucketing (~2-3 us) outweighs the ~1 MB saved;
// from T = 4 (Nano: ~1.6 of 24 pairs shared; Super: ~5.5 of 88) the saving pays for it. A
// guess from that estimate, to be measured (bench_gemv_cuda's routed-expert table, T = 2, 4).
inline constexpr int64_t kExpertBatchMinRows = 4;
// The grouped GEMM from T*k >= kExpertGroupedMinPairs pairs and kExpertGroupedMinPairsPerExpert
// pairs per expert on average: the batch path re-streams an expert's tile per 8 of its pairs
// and runs its mmas at N = 8, the grouped GEMM reads it once per 64-128 pairs at a fixed cost
// of ~300-400 us per call at decode sizes; they cross near 12-20 pairs per expert on paper
// (Nano: T ~ 256 rows, Super: T ~ 280). A guess, to be measured (bench_gemm_cuda's crossover).
inline constexpr int64_t kExpertGroupedMinPairs = 256;
inline constexpr int64_t kExpertGroupedMinPairsPerExpert = 12;

// The most experts the batch and grouped paths take (their bucketing counts in shared memory).
inline constexpr int64_t kExpertBucketMaxExperts = 4096;
// The grouped GEMM's smallest row tile, for which expert_gemv_workspace_bytes sizes the tiles.
inline constexpr int64_t kExpertGroupedMinTile = 32;

enum class ExpertGemvPath { PerPair, Batch, Grouped };

// The path expert_gemv_cuda takes for T rows of k slots over E experts, given a workspace or
// not (ExpertGemvArgs::warp_rows forces PerPair).
inline ExpertGemvPath expert_gemv_path(int64_t T, int64_t k, int64_t E, bool workspace) {
  if (!workspace) return ExpertGemvPath::PerPair;
  const int64_t N = T * k;
  if (N >= kExpertGroupedMinPairs && N >= kExpertGroupedMinPairsPerExpert * E) return ExpertGemvPath::Grouped;
  return T >= kExpertBatchMinRows ? ExpertGemvPath::Batch : ExpertGemvPath::PerPair;
}

// Whether steps of up to T rows can use a workspace (the batch or grouped path can run for
// some T' <= T): callers allocate expert_gemv_workspace_bytes(T, k, E) then, which covers every
// T' <= T.
inline bool expert_gemv_uses_workspace(int64_t T, int64_t k, int64_t E) {
  return expert_gemv_path(T, k, E, true) != ExpertGemvPath::PerPair;
}

// Device scratch for the batch and grouped paths of expert_gemv_cuda (bucketing of T*k pairs
// by expert). Non-decreasing in T.
int64_t expert_gemv_workspace_bytes(int64_t T, int64_t k, int64_t experts);

struct ExpertGemvArgs {
  ExpertTable w;
  const int32_t* ids = nullptr;  // [T, k], device
  int64_t T = 0, k = 0;
  const uint16_t* x = nullptr;
  bool x_per_slot = false;
  bool relu2 = false;
  uint16_t* y = nullptr;
  // false: the tensor-core GEMV (16-row tiles, x in shared memory); true: one warp per output
  // row on the CUDA cores (the former per-pair kernel, kept for tests and benches; no workspace
  // path then).
  bool warp_rows = false;
  // Device scratch of expert_gemv_workspace_bytes(T, k, w.experts) bytes, 16-byte aligned
  // (nullptr: always the per-pair GEMV). Overwritten by every batch or grouped call
  // (stream-ordered).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  // The SplitK layout's 16-row tiles per block: 0 = by size (1, 2 or 4; the environment's
  // NEMOTRON_EXPERT_TILES_PER_BLOCK when set), else 1, 2 or 4 (tests).
  int tiles_per_block = 0;
  // The batch path's tile layout: Auto = WarpTileRing, or SplitK / WarpTile with
  // NEMOTRON_EXPERT_BATCH=split / registers (A/B runs); SplitK = a block per 1, 2 or 4 16-row tiles
  // whose warps split K; WarpTile = every warp owns one 16-row tile over the whole K;
  // WarpTileRing = the same tiles, the weights through a cp.async ring in shared memory (more
  // bytes in flight per warp; the same bits as WarpTile; NVFP4 with in % 64 != 0, or x rows
  // that leave no room for the rings, take WarpTile) (moe_batch.cu).
  enum class BatchLayout { Auto, SplitK, WarpTile, WarpTileRing };
  BatchLayout batch_layout = BatchLayout::Auto;
  // true: `ids` were complete before the previous kernel on the stream started (the down
  // projection after the up projection's expert_gemv_cuda call on the same ids: every expert
  // kernel triggers its dependents only after its own wait), so the per-pair tensor-core path
  // reads them and issues its first weight loads before waiting (PDL) for x; the loads
  // overlap the up projection's tail. Other paths wait first either way.
  bool ids_settled = false;
  // true: the previous expert_gemv_cuda call on this stream and workspace had the same ids, T,
  // k and expert table null pattern, took the batch path (its return value) and no call
  // touched the workspace since (the down projection after the up projection): its bucket
  // tables are still in the workspace, so the batch path skips the bucketing launch and reads
  // them, and its first weight loads, before waiting for x (warp-per-tile layout; SplitK
  // buckets again). Implies ids_settled.
  bool reuse_buckets = false;
};
// Returns the path that ran (PerPair where the batch path declined: x rows too long for
// shared memory).
ExpertGemvPath expert_gemv_cuda(const ExpertGemvArgs& a, cudaStream_t stream);

// out[t, :] = sum_s weights[t, s] * y[t*k + s, :] (fp32 sum in slot order), y BF16, out BF16.
void moe_combine_cuda(const uint16_t* y, const float* weights, int64_t T, int64_t k, int64_t D, uint16_t* out,
                      cudaStream_t stream);

// Expert parallel (a rank holding experts [lo, hi) of the table; the others' data pointers are
// null, and expert_gemv_cuda writes no output row for their pairs): out[t, :] = the sum over
// the slots whose id (ids [T, k], device) is in [lo, hi) only, in slot order.
void moe_combine_owned_cuda(const uint16_t* y, const float* weights, const int32_t* ids, int64_t lo, int64_t hi,
                            int64_t T, int64_t k, int64_t D, uint16_t* out, cudaStream_t stream);

}  // namespace nemotron::kernels
