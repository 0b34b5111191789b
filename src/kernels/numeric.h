#pragma once
// Scalar number formats of the checkpoints, decoded to float exactly.
//   BF16: top 16 bits of an IEEE float.  F16: IEEE half.
//   F8_E4M3 ("fn"): 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities; 0x7F/0xFF = NaN; max 448.
//   E2M1 (NVFP4 element, 4 bits): bit 3 sign; magnitudes of code&7 = {0, .5, 1, 1.5, 2, 3, 4, 6}.
// Usable from host and device code.
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define NEMOTRON_HD __host__ __device__ __forceinline__
#else
#define NEMOTRON_HD inline
#endif

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

}  // namespace nemotron::kernels
