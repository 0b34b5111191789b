#pragma once
// The Mamba SSM state kept in 16 bits (--mamba-ssm-cache-dtype bfloat16 | float16).
// The scan computes in fp32; each time a sequence's state is written back to its slot (after a
// decode token, at the end of a prefill or verify chunk) every element is rounded to the
// storage type: to nearest (ties to even), or stochastically, rounding up to the next value
// of the grid with probability (x - lo) / (hi - lo), so that the error has mean zero and does
// not build up a bias over thousands of decays.
// The random bits of element i depend only on (layer, position after the write, i), never on
// the batch or the slot: a batch rounds like each sequence alone, a replay like the original,
// and the CPU reference and the GPU alike (ssm_round_bits).
//   bfloat16: the top 16 bits of a float (8-bit exponent: the fp32 range, 8 significant bits).
//   float16:  IEEE half (11 significant bits); finite values beyond +-65504 saturate to
//             +-65504 (an infinite state would never decay back); subnormals kept.
// Non-finite values pass unchanged (bfloat16 and float16 both hold +-inf and NaN).
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/host_device.h"
#include "kernels/numeric.h"
#include "kernels/philox.h"

namespace nemotron::kernels {

enum class StateDType : uint8_t { F32 = 0, BF16 = 1, F16 = 2 };

// How the SSM state is stored: its type and, for the 16-bit types, the rounding.
struct SsmStateFormat {
  StateDType dtype = StateDType::F32;
  bool stochastic = true;
};

// Bytes of one stored state element.
constexpr int64_t state_dtype_bytes(StateDType d) { return d == StateDType::F32 ? 4 : 2; }

// "float32", "bfloat16", "float16" (the spellings of config.json's mamba_ssm_cache_dtype and of
// the flag); anything else returns false.
bool parse_state_dtype(const std::string& s, StateDType& out);
const char* state_dtype_name(StateDType d);

// The key of the rounding noise: fixed, so that runs are reproducible.
constexpr uint32_t kSsmRoundKey0 = 0x5353D00Du, kSsmRoundKey1 = 0x0001A7E5u;

// The noise of one state write: one Philox4x32-10 draw per (layer, position) gives its 32-bit
// seed (`pos`: the sequence's length after the write), and each pair of elements (2j, 2j+1)
// takes 32 bits from an integer hash of (seed, j): the low half for element 2j, the high half
// for 2j+1. Element index i = ((head * P) + p) * N + n over the model's heads (a
// tensor-parallel rank adds its first head's offset). The hash (two multiply-xorshift rounds,
// a bijection of the 32-bit words with full avalanche) costs ~2.5 integer ops per element
// where a Philox draw per element cost ~20: the rounding ran at a fraction of the state's
// memory rate in the decode kernel. Stochastic rounding needs unbiased, uncorrelated 16-bit
// fractions, not a cryptographic stream.
NEMOTRON_HD uint32_t ssm_round_seed(uint32_t layer, int64_t pos) {
  const uint64_t p = static_cast<uint64_t>(pos);
  return philox4x32_10(0u, static_cast<uint32_t>(p), static_cast<uint32_t>(p >> 32), layer, kSsmRoundKey0,
                       kSsmRoundKey1)
      .v[0];
}
NEMOTRON_HD uint32_t ssm_round_pair(uint32_t seed, uint32_t j) {
  uint32_t x = seed ^ (j * 0x9E3779B9u);
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}
// The 16 random bits of element i (in the low half of the result).
NEMOTRON_HD uint32_t ssm_round_bits_seeded(uint32_t seed, uint64_t i) {
  const uint32_t h = ssm_round_pair(seed, static_cast<uint32_t>(i >> 1));
  return (i & 1u) ? h >> 16 : h & 0xFFFFu;
}
NEMOTRON_HD uint32_t ssm_round_bits(uint32_t layer, int64_t pos, uint64_t i) {
  return ssm_round_bits_seeded(ssm_round_seed(layer, pos), i);
}

// x rounded to the grid of `d` (returned as the float it stores exactly). `bits`: the random
// bits of this element (stochastic only); the low 16 are used.
NEMOTRON_HD float round_state(float x, StateDType d, bool stochastic, uint32_t bits) {
  if (d == StateDType::F32) return x;
  uint32_t b = float_to_bits(x);
  if ((b & 0x7F800000u) == 0x7F800000u) return x;  // inf, NaN
  const uint32_t u16 = bits & 0xFFFFu;
  if (d == StateDType::BF16) {
    if (!stochastic) return bf16_to_float(float_to_bf16(x));
    // The low 16 bits are the fraction of an ulp: adding 16 uniform bits carries into the kept
    // bits with exactly that probability (magnitude rounding, so symmetric in the sign).
    b += u16;
    return bits_to_float(b & 0xFFFF0000u);
  }
  const uint32_t sign = b & 0x80000000u;
  const float ax = bits_to_float(b & 0x7FFFFFFFu);
  if (ax >= 65504.0f) return bits_to_float(sign | float_to_bits(65504.0f));
  if (ax >= 6.103515625e-05f) {  // a normal half (>= 2^-14): drop 13 of the 23 fraction bits
    uint32_t m = b & 0x7FFFFFFFu;
    m += stochastic ? (u16 >> 3) : 0xFFFu + ((m >> 13) & 1u);
    return bits_to_float(sign | (m & ~0x1FFFu));
  }
  // Subnormal half: multiples of 2^-24 (q < 2^10 exactly).
  const float q = ax * 16777216.0f;
  const float lo = floorf(q);
  float r;
  if (stochastic) {
    r = lo + (static_cast<float>(u16) * 1.52587890625e-5f < q - lo ? 1.0f : 0.0f);  // u16 / 2^16
  } else {
    r = rintf(q);  // ties to even
  }
  return bits_to_float(sign | float_to_bits(r * 5.9604644775390625e-8f));
}

// Storage codes (the GPU's 16-bit slots). encode expects a value already on the grid
// (round_state's result); decode gives it back exactly.
NEMOTRON_HD uint16_t encode_state16(float v, StateDType d) {
  const uint32_t b = float_to_bits(v);
  if (d == StateDType::BF16) return static_cast<uint16_t>(b >> 16);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t e = (b >> 23) & 0xFFu;
  if (e == 0xFFu) return static_cast<uint16_t>(sign | 0x7C00u | ((b & 0x7FFFFFu) ? 0x200u : 0u));
  if (e >= 113u) return static_cast<uint16_t>(sign | ((e - 112u) << 10) | ((b >> 13) & 0x3FFu));
  const float q = bits_to_float(b & 0x7FFFFFFFu) * 16777216.0f;  // subnormal: an integer < 1024
  return static_cast<uint16_t>(sign | static_cast<uint32_t>(q));
}
NEMOTRON_HD float decode_state16(uint16_t v, StateDType d) {
  return d == StateDType::BF16 ? bf16_to_float(v) : f16_to_float(v);
}

}  // namespace nemotron::kernels
