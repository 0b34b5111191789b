#pragma once
// Routed experts for many rows (prefill, mixed steps): a grouped GEMM. The (token, slot) pairs
// are bucketed by expert on the device (no host synchronization), then every expert's weight
// tiles are read once per 64 pairs instead of once per pair as in expert_gemv_cuda.
// Same contract as expert_gemv_cuda (moe_cuda.h): y[i, :] = act(x[x_row(i), :] W[ids[i]]^T)
// for pair i = t*k + s, x_row(i) = t (or i with x_per_slot), act = relu² with `relu2`, BF16
// in and out, fp32 accumulation; a pair whose id is outside [0, E) reads nothing and its
// output row becomes NaN. Each output row depends only on its own x row and expert, with a
// fixed K order, so results do not depend on how pairs land in the buckets.
#include <cstdint>

#include "kernels/moe_cuda.h"

namespace nemotron::kernels {

// Pairs per row tile of the grouped GEMM.
inline constexpr int64_t kExpertGemmTileRows = 64;

// Device scratch (16-byte aligned) for T*k pairs over `experts` experts (int32: counts [E],
// offsets [E+1], tile offsets [E+1], pairs [N], tile table 2 x [N/64 + E], total [1]).
inline int64_t expert_gemm_workspace_bytes(int64_t T, int64_t k, int64_t experts) {
  const int64_t N = T * k, tiles = (N + kExpertGemmTileRows - 1) / kExpertGemmTileRows + experts;
  return ((experts + 2 * (experts + 1) + N + 2 * tiles + 1) * 4 + 15) / 16 * 16;
}

// a.warp_rows is ignored. workspace: expert_gemm_workspace_bytes(a.T, a.k, a.w.experts) bytes.
void expert_gemm_cuda(const ExpertGemvArgs& a, void* workspace, int64_t workspace_bytes, cudaStream_t stream);

}  // namespace nemotron::kernels
