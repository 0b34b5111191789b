#pragma once
// Launchers shared between linear.cu (dispatch) and the GEMV / GEMM / routed-expert files.
#include <cuda_runtime.h>

#include "kernels/cuda/device_limits.cuh"
#include "kernels/linear_cuda.h"
#include "kernels/moe_cuda.h"

namespace nemotron::kernels::cuda {

void launch_linear_gemv(const LinearCudaArgs& a, cudaStream_t stream);
// linear_group_cuda's one-launch path (checked arguments); false when it does not apply.
bool launch_linear_gemv_group(const LinearCudaArgs* parts, int n, cudaStream_t stream);
void launch_linear_gemm(const LinearCudaArgs& a, cudaStream_t stream);

// The grouped path of expert_gemv_cuda (moe_grouped.cu; arguments checked by the caller,
// workspace checked here). bm: pairs per row tile, 32, 64 or 128; 0 picks by pairs per expert.
void launch_expert_grouped(const ExpertGemvArgs& a, cudaStream_t stream, int bm = 0);

// The pairs of expert_gemv_cuda bucketed by expert (moe_grouped.cu's bucketing kernel, one
// bucket per expert; launched by launch_expert_buckets on `stream`, read by the next kernel
// after its pdl_wait()). Device pointers into a.workspace:
//   count [1]          number of experts with at least one pair, nexp <= min(E, T*k)
//   expert [>= E + 1]  entries j < nexp: those experts, ascending (later entries: stale)
//   start [>= E + 1]   entries j < nexp: first slot of expert[j]'s pairs in `pairs`, ascending
//   offsets [E + 1]    expert e's pairs are pairs[offsets[e] .. offsets[e + 1]); offsets[E]
//                      is the number of pairs with a good id
//   pairs [T*k]        entries < offsets[E]: pair indices i = t*k + s, grouped by expert
//                      (arbitrary order inside one)
// A pair whose id is outside [0, E) is in no bucket; its output row is written NaN there.
struct ExpertBuckets {
  const int32_t* count;
  const int32_t* expert;
  const int32_t* start;
  const int32_t* offsets;
  const int32_t* pairs;
};
// Checks the workspace (as the grouped path) and 1 <= T*k < 2^30.
ExpertBuckets launch_expert_buckets(const ExpertGemvArgs& a, cudaStream_t stream);
// The same tables without a launch: what the previous bucketing of the same pairs left in the
// workspace (ExpertGemvArgs::reuse_buckets). Same checks.
ExpertBuckets expert_buckets_in_workspace(const ExpertGemvArgs& a);

// The batched decode path of expert_gemv_cuda (moe_batch.cu): the bucketing, then every
// selected expert's weights read once for all its pairs. Arguments checked by the caller,
// workspace checked here. Returns false (nothing launched) when 8 rows of x do not fit in
// shared memory (in > ~14000), where the per-pair kernels must run instead.
bool launch_expert_batch(const ExpertGemvArgs& a, cudaStream_t stream);
// Whether a batch-path call with the WarpTileRing layout runs the ring form (its format and
// `in` allow the ring's copies and its x rows plus rings fit in shared memory), not the
// register form it falls back to.
bool expert_batch_ring_fits(const ExpertGemvArgs& a);


// Blocks of `kernel` (threads per block, dynamic shared memory bytes) resident per SM (>= 1);
// raises the kernel's dynamic shared-memory limit to `smem` when needed.
int resident_blocks(const void* kernel, int threads, int64_t smem);

}  // namespace nemotron::kernels::cuda
