#include "kernels/norm.h"

#include <cmath>

namespace nemotron::kernels {

void rmsnorm_cpu(const float* x, const float* w, int64_t T, int64_t H, float eps, float* y) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * H;
    float* yr = y + t * H;
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(H)) + eps);
    for (int64_t i = 0; i < H; ++i) yr[i] = (xr[i] * inv) * w[i];
  }
}

void gated_rmsnorm_cpu(const float* y, const float* z, const float* w, int64_t T, int64_t D,
                       int64_t group, float eps, float* out) {
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t g0 = 0; g0 < D; g0 += group) {
      const int64_t base = t * D + g0;
      double ss = 0;
      for (int64_t i = 0; i < group; ++i) {
        const float zi = z[base + i];
        const float v = y[base + i] * (zi / (1.0f + std::exp(-zi)));
        out[base + i] = v;
        ss += static_cast<double>(v) * v;
      }
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(group)) + eps);
      for (int64_t i = 0; i < group; ++i) out[base + i] = (out[base + i] * inv) * w[g0 + i];
    }
  }
}

}  // namespace nemotron::kernels
