#include "kernels/fp8_quantize.h"

#include <cmath>

#include "kernels/numeric.h"

namespace nemotron::kernels {

float bf16_abs_max(const uint16_t* w, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(bf16_to_float(w[i]));
    if (std::isfinite(a) && a > m) m = a;
  }
  return m;
}

float fp8_tensor_scale(float amax) { return amax > 0.0f && std::isfinite(amax) ? amax / 448.0f : 1.0f; }

void quantize_fp8(const uint16_t* w, int64_t n, float scale, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_e4m3(bf16_to_float(w[i]) / scale);
}

}  // namespace nemotron::kernels
