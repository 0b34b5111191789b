#pragma once
// Mamba-2 decode on the GPU (one new token per sequence), for a batch of sequences each with
// its own state slot (CPU references: mamba.h, run with T = 1).
#include <cstdint>
#include <limits>

#include "kernels/cuda_stream.h"

namespace nemotron::kernels {

// Causal depthwise conv1d state update + SiLU, for B sequences.
//   xbc     BF16 rows of stride xbc_stride: row b holds sequence b's C pre-conv channels
//           (the xBC slice of its in_proj output)
//   state   fp32 [slots, K-1, C]: the last K-1 pre-conv rows of each slot, oldest first;
//           slot slots_idx[b] is read and shifted by one row in place
//   slot    device int32 [B]; distinct slots within one call
//   w       BF16 [C, K] (conv1d.weight [C, 1, K]); bias BF16 [C] or nullptr
//   out     fp32 [B, C] = silu(bias + sum_k w[c, k] * window[k][c]) (window = state ++ x)
struct ConvUpdateArgs {
  const uint16_t* xbc = nullptr;
  int64_t xbc_stride = 0;
  float* state = nullptr;
  const int32_t* slot = nullptr;
  const uint16_t* w = nullptr;
  const uint16_t* bias = nullptr;
  int64_t B = 0, C = 0, K = 4;
  float* out = nullptr;
};
void conv1d_update_silu_cuda(const ConvUpdateArgs& a, cudaStream_t stream);

// Selective state update (one step), per sequence b and head h (group g = h / (Hm / G)):
//   dt = clamp(softplus(dt_raw[b, h] + dt_bias[h]), dt_min, dt_max)   (no clamp: 0, +inf)
//   S = exp(dt * A[h]) * S + dt * x[b, h, :] (outer) B[b, g, :];   y = S C[b, g, :] + D[h] x
//   x, B, C fp32 rows of stride xbc_stride (the conv output: x at column 0, B at Hm*P,
//   C at Hm*P + G*N); dt_raw BF16 rows of stride dt_stride; dt_bias, A (= -exp(A_log)), D fp32 [Hm]
//   state fp32 [slots, Hm, P, N], slot slot[b] updated in place; y fp32 [B, Hm*P].
struct SsmUpdateArgs {
  const float* xbc = nullptr;
  int64_t xbc_stride = 0;
  const uint16_t* dt_raw = nullptr;
  int64_t dt_stride = 0;
  const float* dt_bias = nullptr;
  const float* A = nullptr;
  const float* D = nullptr;
  float* state = nullptr;
  const int32_t* slot = nullptr;
  int64_t B = 0, heads = 0, head_dim = 0, state_dim = 0, groups = 1;
  float dt_min = 0.0f, dt_max = std::numeric_limits<float>::infinity();
  float* y = nullptr;
};
void ssm_state_update_cuda(const SsmUpdateArgs& a, cudaStream_t stream);

}  // namespace nemotron::kernels
