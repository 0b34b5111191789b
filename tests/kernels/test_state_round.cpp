// The 16-bit SSM state formats (kernels/state_round.h): grids, nearest and stochastic rounding,
// storage codes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/numeric.h"
#include "kernels/state_round.h"

namespace nemotron::kernels {
namespace {

// The neighbours lo <= x <= hi of x on d's grid, found by walking the storage codes.
void grid_neighbours(float x, StateDType d, float& lo, float& hi) {
  // Every finite 16-bit code decodes to a grid value; scan codes of the same sign.
  lo = -std::numeric_limits<float>::infinity();
  hi = std::numeric_limits<float>::infinity();
  for (uint32_t c = 0; c < 0x10000u; ++c) {
    const float v = decode_state16(static_cast<uint16_t>(c), d);
    if (!std::isfinite(v)) continue;
    if (v <= x && v > lo) lo = v;
    if (v >= x && v < hi) hi = v;
  }
}

TEST(StateRound, Float32IsUnchanged) {
  for (float x : {0.0f, -1.5f, 3.1234567f, 1e-30f, 6.0e4f})
    EXPECT_EQ(float_to_bits(round_state(x, StateDType::F32, true, 0xFFFFFFFFu)), float_to_bits(x));
}

TEST(StateRound, NearestMatchesRoundToNearestEven) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mag(-30.0f, 20.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = (i % 2 ? -1.0f : 1.0f) * std::exp2(mag(rng));
    EXPECT_EQ(round_state(x, StateDType::BF16, false, 0), bf16_to_float(float_to_bf16(x))) << x;
    const float h = round_state(x, StateDType::F16, false, 0);
    float lo, hi;
    if (i % 50 == 0) {  // the full grid walk is slow: a sample
      grid_neighbours(x, StateDType::F16, lo, hi);
      if (std::fabs(x) <= 65504.0f) {
        ASSERT_TRUE(h == lo || h == hi) << x;
        const float dl = x - lo, dh = hi - x;
        if (dl != dh) {
          EXPECT_EQ(h, dl < dh ? lo : hi) << x;
        }
      }
    }
    EXPECT_EQ(decode_state16(encode_state16(h, StateDType::F16), StateDType::F16), h) << x;
  }
  // Ties to even, in the normal and the subnormal range of half.
  EXPECT_EQ(round_state(1.0f + 1.0f / 2048.0f, StateDType::F16, false, 0), 1.0f);
  EXPECT_EQ(round_state(1.0f + 3.0f / 2048.0f, StateDType::F16, false, 0), 1.0f + 2.0f / 1024.0f);
  EXPECT_EQ(round_state(2.5f * 5.9604644775390625e-8f, StateDType::F16, false, 0), 2.0f * 5.9604644775390625e-8f);
  EXPECT_EQ(round_state(3.5f * 5.9604644775390625e-8f, StateDType::F16, false, 0), 4.0f * 5.9604644775390625e-8f);
}

TEST(StateRound, StochasticGivesANeighbourWithTheRightOdds) {
  // x = lo + 0.3 ulp: over many draws the mean is x (unbiased), every result is lo or hi.
  for (StateDType d : {StateDType::BF16, StateDType::F16}) {
    for (float base : {1.0f, -3.0f, 1e-6f, -7.0e-8f, 300.0f}) {
      float lo, hi;
      grid_neighbours(base * 1.0001f, d, lo, hi);
      if (lo == hi) continue;
      const float x = lo + 0.3f * (hi - lo);
      double sum = 0;
      int ups = 0;
      const int n = 20000;
      for (int i = 0; i < n; ++i) {
        const float r = round_state(x, d, true, ssm_round_bits(3, 1000 + i, static_cast<uint64_t>(i) * 7));
        ASSERT_TRUE(r == lo || r == hi) << state_dtype_name(d) << " x " << x << " got " << r;
        ups += r == hi;
        sum += r;
      }
      EXPECT_NEAR(static_cast<double>(ups) / n, 0.3, 0.02) << state_dtype_name(d) << " " << x;
      EXPECT_NEAR(sum / n, x, 0.02 * (hi - lo)) << state_dtype_name(d) << " " << x;
    }
  }
}

TEST(StateRound, ValuesOnTheGridStayPut) {
  std::mt19937 rng(3);
  for (StateDType d : {StateDType::BF16, StateDType::F16}) {
    for (int i = 0; i < 5000; ++i) {
      const uint16_t c = static_cast<uint16_t>(rng());
      const float v = decode_state16(c, d);
      if (!std::isfinite(v)) continue;
      EXPECT_EQ(round_state(v, d, true, static_cast<uint32_t>(rng())), v) << state_dtype_name(d) << " " << c;
      EXPECT_EQ(round_state(v, d, false, 0), v);
      if (v != 0.0f) {
        EXPECT_EQ(encode_state16(v, d), c);
      }
    }
  }
}

TEST(StateRound, HalfSaturatesAndNonFinitePasses) {
  EXPECT_EQ(round_state(1e6f, StateDType::F16, true, 0xFFFFFFFFu), 65504.0f);
  EXPECT_EQ(round_state(-70000.0f, StateDType::F16, false, 0), -65504.0f);
  EXPECT_EQ(round_state(65503.0f, StateDType::F16, true, 0xFFFFFFFFu), 65504.0f);
  EXPECT_TRUE(std::isinf(round_state(std::numeric_limits<float>::infinity(), StateDType::F16, true, 5)));
  EXPECT_TRUE(std::isnan(round_state(std::nanf(""), StateDType::BF16, true, 5)));
  EXPECT_EQ(round_state(1e30f, StateDType::BF16, false, 0), bf16_to_float(float_to_bf16(1e30f)));
  // The smallest half subnormal rounds up from below with odds x / 2^-24.
  const float tiny = 0.25f * 5.9604644775390625e-8f;
  int ups = 0;
  for (int i = 0; i < 4000; ++i) ups += round_state(tiny, StateDType::F16, true, ssm_round_bits(0, i, 0)) > 0;
  EXPECT_NEAR(ups / 4000.0, 0.25, 0.03);
}

TEST(StateRound, NoiseDependsOnLayerPositionAndElementOnly) {
  EXPECT_EQ(ssm_round_bits(2, 77, 13), ssm_round_bits(2, 77, 13));
  EXPECT_NE(ssm_round_bits(2, 77, 13), ssm_round_bits(3, 77, 13));
  EXPECT_NE(ssm_round_bits(2, 77, 13), ssm_round_bits(2, 78, 13));
  EXPECT_NE(ssm_round_bits(2, 77, 13), ssm_round_bits(2, 77, 14));
  // Element 2j takes the low half of pair j's hash, 2j + 1 the high half.
  EXPECT_EQ(ssm_round_bits(2, 77, 13), ssm_round_pair(ssm_round_seed(2, 77), 6) >> 16);
  EXPECT_EQ(ssm_round_bits(2, 77, 12), ssm_round_pair(ssm_round_seed(2, 77), 6) & 0xFFFFu);
  EXPECT_LE(ssm_round_bits(5, 1, 99999), 0xFFFFu);
}

// The 16-bit fractions: uniform over the elements of one write (16-bin chi-square) and over
// the positions of one element, and uncorrelated between the two halves of a hash, adjacent
// pairs, and one element at consecutive positions.
TEST(StateRound, NoiseIsUniformAndUncorrelated) {
  const int n = 200000;
  auto frac = [](uint32_t b) { return (static_cast<double>(b) + 0.5) / 65536.0 - 0.5; };
  auto chi_square = [](const std::vector<int>& bins, int total) {
    const double e = static_cast<double>(total) / static_cast<double>(bins.size());
    double c = 0;
    for (int b : bins) c += (b - e) * (b - e) / e;
    return c;
  };
  auto corr = [&](auto&& a, auto&& b) {
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; ++i) {
      const double x = frac(a(i)), y = frac(b(i));
      sab += x * y;
      saa += x * x;
      sbb += y * y;
    }
    return sab / std::sqrt(saa * sbb);
  };
  const uint32_t seed = ssm_round_seed(7, 4096);
  std::vector<int> over_elements(16, 0), over_positions(16, 0);
  for (int i = 0; i < n; ++i) {
    ++over_elements[ssm_round_bits_seeded(seed, static_cast<uint64_t>(i)) >> 12];
    ++over_positions[ssm_round_bits(7, i, 1234) >> 12];
  }
  EXPECT_LT(chi_square(over_elements, n), 37.7);  // 15 degrees of freedom, p = 0.001
  EXPECT_LT(chi_square(over_positions, n), 37.7);
  const auto bits = [&](int i) { return ssm_round_bits_seeded(seed, static_cast<uint64_t>(i)); };
  EXPECT_LT(std::abs(corr([&](int i) { return bits(2 * i); }, [&](int i) { return bits(2 * i + 1); })), 0.015);
  EXPECT_LT(std::abs(corr([&](int i) { return bits(2 * i); }, [&](int i) { return bits(2 * i + 2); })), 0.015);
  EXPECT_LT(std::abs(corr([&](int i) { return ssm_round_bits(7, i, 99); },
                          [&](int i) { return ssm_round_bits(7, i + 1, 99); })),
            0.015);
}

TEST(StateRound, DTypeNames) {
  StateDType d;
  for (StateDType e : {StateDType::F32, StateDType::BF16, StateDType::F16}) {
    ASSERT_TRUE(parse_state_dtype(state_dtype_name(e), d));
    EXPECT_EQ(d, e);
  }
  EXPECT_FALSE(parse_state_dtype("fp16", d));
  EXPECT_FALSE(parse_state_dtype("", d));
  EXPECT_EQ(state_dtype_bytes(StateDType::BF16), 2);
  EXPECT_EQ(state_dtype_bytes(StateDType::F32), 4);
}

}  // namespace
}  // namespace nemotron::kernels
