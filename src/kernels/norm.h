#pragma once
// RMSNorm variants (CPU reference, fp32).
#include <cstdint>

namespace nemotron::kernels {

// y[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w, for T rows of width H. y may alias x.
void rmsnorm_cpu(const float* x, const float* w, int64_t T, int64_t H, float eps, float* y);

// Mamba-2 gated norm (norm_before_gate = False), group-wise:
//   v = y * silu(z); each group of `group` consecutive channels is RMS-normalized;
//   out = v_normed * w.  y, z, out: [T, D]; w: [D]; D a multiple of group. out may alias y.
void gated_rmsnorm_cpu(const float* y, const float* z, const float* w, int64_t T, int64_t D,
                       int64_t group, float eps, float* out);

}  // namespace nemotron::kernels
