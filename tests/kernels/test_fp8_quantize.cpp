// kernels/fp8_quantize.h: per-tensor E4M3 copies of BF16 matrices (the MTP head's draft lm_head).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/fp8_quantize.h"
#include "kernels/numeric.h"

namespace nemotron::kernels {
namespace {

TEST(Fp8Quantize, ScaleMapsTheLargestMagnitudeTo448AndRoundTripsWithinE4m3Precision) {
  std::vector<uint16_t> w;
  uint32_t x = 12345;
  for (int i = 0; i < 4096; ++i) {
    x = x * 1664525u + 1013904223u;
    const float v = (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) * 0.08f;  // |v| < 0.04
    w.push_back(float_to_bf16(v));
  }
  w[17] = float_to_bf16(-0.25f);  // the largest magnitude
  const float amax = bf16_abs_max(w.data(), static_cast<int64_t>(w.size()));
  EXPECT_FLOAT_EQ(amax, 0.25f);
  const float s = fp8_tensor_scale(amax);
  EXPECT_FLOAT_EQ(s, 0.25f / 448.0f);
  std::vector<uint8_t> q(w.size());
  quantize_fp8(w.data(), static_cast<int64_t>(w.size()), s, q.data());
  EXPECT_EQ(q[17], 0xFE);  // -448
  for (std::size_t i = 0; i < w.size(); ++i) {
    const float v = bf16_to_float(w[i]), back = e4m3_to_float(q[i]) * s;
    // E4M3: 3 mantissa bits (relative step 2^-3, half of it when rounding) down to the
    // subnormal grid of 2^-9 (in units of the scale).
    EXPECT_LE(std::fabs(back - v), std::max(std::fabs(v) * 0.0625f, s * std::ldexp(1.0f, -10)) * 1.0001f) << i;
    EXPECT_EQ(q[i], float_to_e4m3(v / s)) << i;
  }
  // Split into ranges (threads): the same bytes.
  std::vector<uint8_t> q2(w.size());
  quantize_fp8(w.data(), 1000, s, q2.data());
  quantize_fp8(w.data() + 1000, static_cast<int64_t>(w.size()) - 1000, s, q2.data() + 1000);
  EXPECT_EQ(q, q2);
}

TEST(Fp8Quantize, ZeroAndNonFiniteTensors) {
  std::vector<uint16_t> zeros(64, 0);
  EXPECT_EQ(bf16_abs_max(zeros.data(), 64), 0.0f);
  EXPECT_EQ(fp8_tensor_scale(0.0f), 1.0f);
  std::vector<uint8_t> q(64, 0xAA);
  quantize_fp8(zeros.data(), 64, 1.0f, q.data());
  for (uint8_t b : q) EXPECT_EQ(b, 0);
  // Non-finite elements do not set the scale.
  std::vector<uint16_t> w{float_to_bf16(1.5f), float_to_bf16(std::numeric_limits<float>::infinity()),
                          float_to_bf16(std::nanf("")), float_to_bf16(-3.0f)};
  EXPECT_FLOAT_EQ(bf16_abs_max(w.data(), 4), 3.0f);
  EXPECT_EQ(fp8_tensor_scale(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(bf16_abs_max(w.data(), 0), 0.0f);
}

}  // namespace
}  // namespace nemotron::kernels
