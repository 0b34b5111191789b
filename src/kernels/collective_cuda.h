#pragma once
// Device kernels of the sharded CUDA forward (model/cuda/cuda_communicator.h, docs/parallel.md):
// the same-device group's rank-order sum, and the placing of vocab-sharded logits.
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nemotron::kernels {

inline constexpr int kMaxCommRanks = 16;

// out[i] = (((in[0][i] + in[1][i]) + in[2][i]) + ...) over n_in <= kMaxCommRanks buffers of n
// elements, BF16 (bf16 = true; summed in fp32, rounded once) or fp32. `out` may be one of the
// inputs only when n_in == 1.
void sum_buffers_cuda(const void* const* in, int n_in, void* out, int64_t n, bool bf16, cudaStream_t stream);

// Vocab-sharded logits: `blocks` holds the ranks' [L, stride] fp32 blocks one after another
// (an all-gather of each rank's lm_head output, its rows padded to `stride` columns); rank q's
// columns are vocab ids [v0[q], v0[q] + width[q]). out [L, V] gets them at their ids.
void place_vocab_blocks_cuda(const float* blocks, int ranks, const int64_t* v0, const int64_t* width, int64_t stride,
                             int64_t L, int64_t V, float* out, cudaStream_t stream);

}  // namespace nemotron::kernels
