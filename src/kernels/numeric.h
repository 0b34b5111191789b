#pragma once
// Scalar number formats of the checkpoints, decoded to float exactly.
//   BF16: top 16 bits of an IEEE float.  F16: IEEE half.
//   F8_E4M3 ("fn"): 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities; 0x7F/0xFF = NaN; max 448.
//   E2M1 (NVFP4 element, 4 bits): bit 3 sign; magnitudes of code&7 = {0, .5, 1, 1.5, 2, 3, 4, 6}.
// Encoders (float -> E4M3, float -> E2M1) round to nearest, ties to the even code, and
// saturate to the largest finite magnitude, like the hardware's cvt.rn.satfinite.
// Usable from host and device code.
#include <cstdint>
#include <cstring>

#include "kernels/host_device.h"

namespace nemotron::kernels {

NEMOTRON_HD float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

NEMOTRON_HD uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

NEMOTRON_HD float bf16_to_float(uint16_t v) { return bits_to_float(static_cast<uint32_t>(v) << 16); }

// Round-to-nearest-even, NaN preserved (what torch does when casting to bfloat16).
NEMOTRON_HD uint16_t float_to_bf16(float f) {
  uint32_t b = float_to_bits(f);
  if ((b & 0x7F800000u) == 0x7F800000u && (b & 0x7FFFFFu)) return static_cast<uint16_t>((b >> 16) | 0x40);
  b += 0x7FFFu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

NEMOTRON_HD float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  if (exp == 0x1F) return bits_to_float(sign | 0x7F800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bits_to_float(sign);
    // Subnormal: value = man * 2^-24.
    float v = static_cast<float>(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
}

NEMOTRON_HD float e4m3_to_float(uint8_t v) {
  const bool neg = v & 0x80;
  const uint32_t exp = (v >> 3) & 0xF;
  const uint32_t man = v & 0x7;
  float out;
  if (exp == 0xF && man == 0x7) {
    out = bits_to_float(0x7FC00000u);
  } else if (exp == 0) {
    out = static_cast<float>(man) * (1.0f / 512.0f);  // man/8 * 2^-6
  } else {
    out = bits_to_float(((exp + 120u) << 23) | (man << 20));  // bias 7 -> 127
  }
  return neg ? -out : out;
}

NEMOTRON_HD float e2m1_to_float(uint8_t code) {
  constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float m = kMag[code & 7];
  return (code & 8) ? -m : m;
}

// Round-to-nearest-even of a non-negative float to an integer (exact for q < 2^22).
NEMOTRON_HD uint32_t round_half_even(float q) {
  uint32_t m = static_cast<uint32_t>(q);
  const float frac = q - static_cast<float>(m);
  if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
  return m;
}

// float -> F8_E4M3 ("fn"). |f| >= 448 and +-inf saturate to +-448 (0x7E/0xFE); NaN -> 0x7F.
// Below the smallest normal (2^-6) the result is a subnormal man*2^-9 (or zero, keeping the sign).
NEMOTRON_HD uint8_t float_to_e4m3(float f) {
  const uint32_t bits = float_to_bits(f);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) return 0x7F;      // NaN
  if (abs_bits >= 0x43E00000u) return sign | 0x7E;  // >= 448 (incl. inf): saturate
  const float a = bits_to_float(abs_bits);
  if (abs_bits < 0x3C800000u) {                  // < 2^-6: subnormal grid of 2^-9
    // m == 8 is the smallest normal, whose code (exp 1, man 0) is also 8.
    return sign | static_cast<uint8_t>(round_half_even(a * 512.0f));
  }
  // Normal: rebias the exponent (127 -> 7) and round the 23-bit mantissa to 3 bits; a carry
  // out of the mantissa correctly increments the exponent field.
  const uint32_t exp = (abs_bits >> 23) - 120u;
  const uint32_t man = abs_bits & 0x7FFFFFu;
  uint32_t v = (exp << 3) | (man >> 20);
  const uint32_t rest = man & 0xFFFFFu;
  if (rest > 0x80000u || (rest == 0x80000u && (v & 1u))) ++v;
  if (v > 0x7Eu) v = 0x7Eu;  // cannot happen below 448; keeps 0x7F (NaN) unreachable
  return sign | static_cast<uint8_t>(v);
}

// FP8 KV cache (ModelOpt kv_cache_quant_algo FP8, vLLM's convention): a K or V element x of an
// attention layer with per-tensor scale s (the checkpoint's k_scale / v_scale, 1 when absent) is
// stored as e4m3(x / s) -- fp32 division, round to nearest even, saturating at +-448 -- and read
// back as e4m3 * s. The CUDA cache writer and attention kernels and the CPU reference use these.
NEMOTRON_HD uint8_t kv_fp8_encode(float x, float scale) { return float_to_e4m3(x / scale); }
NEMOTRON_HD float kv_fp8_decode(uint8_t v, float scale) { return e4m3_to_float(v) * scale; }
// What a value becomes after a round trip through the FP8 KV cache.
NEMOTRON_HD float kv_fp8_round(float x, float scale) { return kv_fp8_decode(kv_fp8_encode(x, scale), scale); }

// float -> E2M1 code. Decision points are the midpoints of {0,.5,1,1.5,2,3,4,6}; a value
// exactly on a midpoint goes to the even code (0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2,
// 3.5->4, 5->4). |f| > 6 and inf saturate to 6; NaN -> +6 (code 7). Negative values,
// including those rounding to zero, keep the sign bit (code 8 = -0).
NEMOTRON_HD uint8_t float_to_e2m1(float f) {
  // Branch-free (vectorizes): the magnitude code is the number of decision points below |f|,
  // with > on ties that go down to an even code and >= on ties that go up.
  const uint32_t bits = float_to_bits(f);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  const float a = bits_to_float(abs_bits);
  const uint32_t c = static_cast<uint32_t>(a > 0.25f) + static_cast<uint32_t>(a >= 0.75f) +
                     static_cast<uint32_t>(a > 1.25f) + static_cast<uint32_t>(a >= 1.75f) +
                     static_cast<uint32_t>(a > 2.5f) + static_cast<uint32_t>(a >= 3.5f) + static_cast<uint32_t>(a > 5.0f);
  const uint32_t code = ((bits >> 28) & 0x8u) | c;
  const uint32_t nan = static_cast<uint32_t>(abs_bits > 0x7F800000u);  // NaN -> 7
  return static_cast<uint8_t>(code + nan * (7u - code));
}

}  // namespace nemotron::kernels
