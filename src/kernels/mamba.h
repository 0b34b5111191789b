#pragma once
// Mamba-2 mixer pieces (CPU reference, fp32, sequential over time: exact, not chunked).
#include <cstdint>

namespace nemotron::kernels {

// Causal depthwise conv1d over T new rows, continuing from a carried window, then SiLU.
//   x      [T, C]      pre-conv input rows (xBC)
//   state  [K-1, C]    the last K-1 pre-conv rows before x (oldest first); updated in place
//                      to the last K-1 rows of (state ++ x)
//   w      [C, K]      conv1d.weight ([C, 1, K] on disk); w[c, K-1] multiplies the current row
//   bias   [C] or nullptr
//   out    [T, C]      silu(bias + sum_k w[c,k] * row[t-K+1+k][c])
void causal_conv1d_silu_cpu(const float* x, float* state, const float* w, const float* bias,
                            int64_t T, int64_t C, int64_t K, float* out);

struct SsmDims {
  int64_t heads = 0;     // Hm
  int64_t head_dim = 0;  // P
  int64_t state = 0;     // N
  int64_t groups = 0;    // G; head h reads group h / (Hm / G)
};

// Selective scan with the SSM state carried across calls.
//   x   [T, Hm*P]  (channel h*P + p)      dt_raw [T, Hm]  (before bias and softplus)
//   B,C [T, G*N]   (channel g*N + n)      dt_bias, A, D: [Hm]; A = -exp(A_log)
//   state [Hm, P, N] fp32, updated in place.   y [T, Hm*P] (includes the D skip)
// dt = clamp(softplus(dt_raw + dt_bias), dt_min, dt_max) (softplus threshold 20, as torch).
void ssm_scan_cpu(const float* x, const float* dt_raw, const float* B, const float* C,
                  const float* dt_bias, const float* A, const float* D, const SsmDims& dims,
                  float dt_min, float dt_max, int64_t T, float* state, float* y);

}  // namespace nemotron::kernels
