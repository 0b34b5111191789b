#include "kernels/mamba.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/parallel.h"

namespace nemotron::kernels {

void causal_conv1d_silu_cpu(const float* x, float* state, const float* w, const float* bias,
                            int64_t T, int64_t C, int64_t K, float* out) {
  const int64_t W = K - 1;
  // Window = state rows followed by the new rows: row r < W is state[r], else x[r - W].
  auto row = [&](int64_t r) -> const float* { return r < W ? state + r * C : x + (r - W) * C; };
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < C; ++c) {
      float acc = bias ? bias[c] : 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += w[c * K + k] * row(t + k)[c];
      out[t * C + c] = acc / (1.0f + std::exp(-acc));
    }
  }
  // New state = last W rows of the window.
  std::vector<float> next(static_cast<std::size_t>(W * C));
  for (int64_t r = 0; r < W; ++r) std::copy(row(T + r), row(T + r) + C, next.begin() + r * C);
  std::copy(next.begin(), next.end(), state);
}

static float softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

void ssm_scan_cpu(const float* x, const float* dt_raw, const float* B, const float* C,
                  const float* dt_bias, const float* A, const float* D, const SsmDims& d,
                  float dt_min, float dt_max, int64_t T, float* state, float* y) {
  const int64_t P = d.head_dim, N = d.state, heads_per_group = d.heads / d.groups;
  const int64_t xw = d.heads * P, bw = d.groups * N;
  parallel_for(static_cast<std::size_t>(d.heads), [&](std::size_t h0, std::size_t h1) {
    for (int64_t h = static_cast<int64_t>(h0); h < static_cast<int64_t>(h1); ++h) {
      const int64_t g = h / heads_per_group;
      float* S = state + h * P * N;
      for (int64_t t = 0; t < T; ++t) {
        float dt = softplus(dt_raw[t * d.heads + h] + dt_bias[h]);
        dt = std::min(std::max(dt, dt_min), dt_max);
        const float decay = std::exp(dt * A[h]);
        const float* Bt = B + t * bw + g * N;
        const float* Ct = C + t * bw + g * N;
        const float* xt = x + t * xw + h * P;
        float* yt = y + t * xw + h * P;
        for (int64_t p = 0; p < P; ++p) {
          float* Sp = S + p * N;
          const float dx = dt * xt[p];
          float acc = 0.0f;
          for (int64_t n = 0; n < N; ++n) {
            Sp[n] = decay * Sp[n] + dx * Bt[n];
            acc += Sp[n] * Ct[n];
          }
          yt[p] = acc + D[h] * xt[p];
        }
      }
    }
  });
}

}  // namespace nemotron::kernels
