// The float -> E4M3 / E2M1 encoders of kernels/numeric.h against an independent reference:
// a brute-force search for the nearest representable value over every code (ties to the
// even code, saturation at the largest finite magnitude).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/numeric.h"

using namespace nemotron::kernels;

namespace {

// Nearest finite code by exhaustive search; on an exact tie the code with the even low bit
// wins; magnitudes beyond the largest value saturate. `decode` maps code -> float.
template <typename Decode>
uint8_t nearest_code(float x, int ncodes, uint8_t sign_bit, Decode decode) {
  const bool neg = std::signbit(x);
  const double a = std::fabs(static_cast<double>(x));
  int best = -1;
  double best_err = 0;
  for (int c = 0; c < ncodes; ++c) {
    if (c & sign_bit) continue;  // positive codes only; sign applied at the end
    const float v = decode(static_cast<uint8_t>(c));
    if (std::isnan(v)) continue;
    const double err = std::fabs(static_cast<double>(v) - a);
    if (best < 0 || err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1)) {
      best = c;
      best_err = err;
    }
  }
  return static_cast<uint8_t>(best | (neg ? sign_bit : 0));
}

uint8_t ref_e4m3(float x) { return nearest_code(x, 256, 0x80, e4m3_to_float); }
uint8_t ref_e2m1(float x) { return nearest_code(x, 16, 0x8, e2m1_to_float); }

float next_up(float x) { return std::nextafter(x, std::numeric_limits<float>::infinity()); }
float next_down(float x) { return std::nextafter(x, -std::numeric_limits<float>::infinity()); }

}  // namespace

TEST(NumericEncode, E4M3RoundTripsEveryCode) {
  for (int c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    if ((code & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(e4m3_to_float(code)));
      continue;
    }
    EXPECT_EQ(float_to_e4m3(e4m3_to_float(code)), code) << "code " << c;
  }
}

TEST(NumericEncode, E4M3TiesGoToEvenAndNeighboursRoundToNearest) {
  // Every pair of adjacent positive finite codes (including subnormal -> normal and 0 -> 1).
  for (int c = 0; c < 0x7E; ++c) {
    const float lo = e4m3_to_float(static_cast<uint8_t>(c));
    const float hi = e4m3_to_float(static_cast<uint8_t>(c + 1));
    const float mid = (lo + hi) / 2;  // exact: both have few mantissa bits
    const uint8_t even = (c & 1) == 0 ? static_cast<uint8_t>(c) : static_cast<uint8_t>(c + 1);
    EXPECT_EQ(float_to_e4m3(mid), even) << "midpoint of codes " << c << ", " << c + 1;
    EXPECT_EQ(float_to_e4m3(-mid), even | 0x80) << "negative midpoint " << c;
    EXPECT_EQ(float_to_e4m3(next_down(mid)), c) << c;
    EXPECT_EQ(float_to_e4m3(next_up(mid)), c + 1) << c;
  }
}

TEST(NumericEncode, E4M3SaturatesAndHandlesSpecials) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(float_to_e4m3(448.0f), 0x7E);
  EXPECT_EQ(float_to_e4m3(464.0f), 0x7E);  // would be the midpoint to 480, still 448
  EXPECT_EQ(float_to_e4m3(1e30f), 0x7E);
  EXPECT_EQ(float_to_e4m3(inf), 0x7E);
  EXPECT_EQ(float_to_e4m3(-inf), 0xFE);
  EXPECT_EQ(float_to_e4m3(-1000.0f), 0xFE);
  EXPECT_EQ(float_to_e4m3(std::nanf("")), 0x7F);
  EXPECT_EQ(float_to_e4m3(0.0f), 0x00);
  EXPECT_EQ(float_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(float_to_e4m3(std::ldexp(1.0f, -10)), 0x00);         // half the smallest subnormal: tie to 0
  EXPECT_EQ(float_to_e4m3(next_up(std::ldexp(1.0f, -10))), 0x01);
  EXPECT_EQ(float_to_e4m3(1e-30f), 0x00);
  EXPECT_EQ(float_to_e4m3(std::ldexp(1.0f, -6)), 0x08);          // smallest normal
}

TEST(NumericEncode, E4M3MatchesBruteForceOnRandomFloats) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exp_dist(-14.0f, 10.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int i = 0; i < 200000; ++i) {
    float x = std::exp2(exp_dist(rng)) * (u(rng) < 0.5f ? -1.0f : 1.0f);
    ASSERT_EQ(float_to_e4m3(x), ref_e4m3(x)) << x;
  }
}

TEST(NumericEncode, E2M1RoundTripsEveryCode) {
  for (int c = 0; c < 16; ++c) EXPECT_EQ(float_to_e2m1(e2m1_to_float(static_cast<uint8_t>(c))), c) << c;
}

TEST(NumericEncode, E2M1MidpointsGoToEvenCode) {
  // (value, expected magnitude code): ties at the midpoints of the grid.
  const std::vector<std::pair<float, int>> ties = {{0.25f, 0}, {0.75f, 2}, {1.25f, 2}, {1.75f, 4},
                                                   {2.5f, 4},  {3.5f, 6},  {5.0f, 6}};
  for (auto [x, code] : ties) {
    EXPECT_EQ(float_to_e2m1(x), code) << x;
    EXPECT_EQ(float_to_e2m1(-x), code | 8) << -x;
    EXPECT_EQ(float_to_e2m1(x), ref_e2m1(x)) << x;
  }
  for (int c = 0; c < 7; ++c) {
    const float mid = (e2m1_to_float(static_cast<uint8_t>(c)) + e2m1_to_float(static_cast<uint8_t>(c + 1))) / 2;
    EXPECT_EQ(float_to_e2m1(next_down(mid)), c) << mid;
    EXPECT_EQ(float_to_e2m1(next_up(mid)), c + 1) << mid;
  }
}

TEST(NumericEncode, E2M1SaturatesAndMatchesBruteForce) {
  EXPECT_EQ(float_to_e2m1(6.0f), 7);
  EXPECT_EQ(float_to_e2m1(100.0f), 7);
  EXPECT_EQ(float_to_e2m1(-std::numeric_limits<float>::infinity()), 15);
  EXPECT_EQ(float_to_e2m1(std::nanf("")), 7);
  EXPECT_EQ(float_to_e2m1(-0.0f), 8);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-8.0f, 8.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = u(rng);
    ASSERT_EQ(float_to_e2m1(x), ref_e2m1(x)) << x;
  }
}

// --- FP8 KV cache (kernels/numeric.h kv_fp8_encode / kv_fp8_decode) ---
// The ModelOpt / vLLM definition, from first principles (no decoder of ours): stored =
// e4m3(x / s) with the quotient rounded in fp32, to the nearest E4M3 value (ties to the even
// mantissa), saturating at +-448; read back = value * s in fp32. E4M3 values are built here
// from the format: normal (1 + m/8) * 2^(e-7) for e in 1..15 (e = 15, m = 7 is NaN), subnormal
// m/8 * 2^-6.
namespace {

struct E4m3Ref {
  std::vector<double> mag;  // mag[code] for codes 0..126
  E4m3Ref() {
    for (int code = 0; code < 127; ++code) {
      const int e = code >> 3, m = code & 7;
      mag.push_back(e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7));
    }
  }
  uint8_t encode(float y) const {
    const double a = std::fabs(static_cast<double>(y));
    int best = 0;
    for (int c = 1; c < 127; ++c) {
      const double d = std::fabs(mag[c] - a), db = std::fabs(mag[best] - a);
      if (d < db || (d == db && (c & 1) == 0)) best = c;
    }
    if (a >= 448.0) best = 126;  // saturate
    return static_cast<uint8_t>(best | (std::signbit(y) ? 0x80 : 0));
  }
  float value(uint8_t code) const {
    const double v = mag[code & 0x7F];
    return static_cast<float>((code & 0x80) ? -v : v);
  }
};

}  // namespace

TEST(KvFp8, EncodeDecodeMatchTheDefinition) {
  const E4m3Ref ref;
  std::mt19937 rng(17);
  std::vector<float> xs = {0.0f, -0.0f, 1.0f, -1.0f, 448.0f, 449.0f, 464.0f, 465.0f, 1e6f, -1e6f,
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::ldexp(1.0f, -10), std::ldexp(1.0f, -9), std::ldexp(3.0f, -11)};
  // Every midpoint between neighbouring E4M3 values (a tie) and just either side of it.
  for (int c = 0; c < 126; ++c) {
    const float mid = static_cast<float>((ref.mag[c] + ref.mag[c + 1]) / 2);
    for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      xs.push_back(v);
      xs.push_back(-v);
    }
  }
  std::uniform_real_distribution<float> u(-600.0f, 600.0f);
  std::normal_distribution<float> n(0.0f, 3.0f);
  for (int i = 0; i < 4000; ++i) xs.push_back(i % 2 ? u(rng) : n(rng));
  int checked = 0;
  for (float s : {1.0f, 8.0f / 448.0f, 0.0123f, 2.5f, 1.0f / 64.0f}) {
    for (float x : xs) {
      const float y = x * s;  // an element whose quotient by s lands near x
      const volatile float q = y / s;  // the fp32 quotient the definition rounds
      const uint8_t want = ref.encode(q);
      const uint8_t got = kv_fp8_encode(y, s);
      ASSERT_EQ(got, want) << "x " << y << " scale " << s;
      const float back = kv_fp8_decode(got, s);
      ASSERT_EQ(back, ref.value(want) * s) << "x " << y << " scale " << s;
      ASSERT_EQ(kv_fp8_round(y, s), back);
      ASSERT_LE(std::fabs(back), 448.0f * s);  // saturation: never beyond 448 * s
      ++checked;
    }
  }
  EXPECT_GT(checked, 20000);
}

TEST(KvFp8, SaturationAndRounding) {
  const float s = 0.5f;
  EXPECT_EQ(kv_fp8_round(224.0f, s), 224.0f);      // 448 * 0.5: the largest value
  EXPECT_EQ(kv_fp8_round(1000.0f, s), 224.0f);     // saturates at 448 * s, not inf/NaN
  EXPECT_EQ(kv_fp8_round(-1000.0f, s), -224.0f);
  EXPECT_EQ(kv_fp8_encode(std::numeric_limits<float>::infinity(), s), 0x7E);
  // 1.0625 / 1 lies halfway between 1 (mantissa 0, even) and 1.125: ties to even -> 1.
  EXPECT_EQ(kv_fp8_round(1.0625f, 1.0f), 1.0f);
  // 1.1875 lies halfway between 1.125 (odd) and 1.25 (even) -> 1.25.
  EXPECT_EQ(kv_fp8_round(1.1875f, 1.0f), 1.25f);
  // The scale moves the grid: with s = 1/64, 1.0625/64 is the same tie -> 1/64.
  EXPECT_EQ(kv_fp8_round(1.0625f / 64, 1.0f / 64), 1.0f / 64);
  // Smallest subnormal 2^-9 * s; half of it rounds to zero (tie to even code 0), keeping the sign.
  EXPECT_EQ(kv_fp8_round(std::ldexp(1.0f, -9) * 3.0f, 3.0f), std::ldexp(1.0f, -9) * 3.0f);
  EXPECT_EQ(kv_fp8_encode(-std::ldexp(1.0f, -10), 1.0f), 0x80);
}
