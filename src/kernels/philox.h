#pragma once
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator, 4 x 32-bit outputs per (128-bit counter, 64-bit key), the same bits
// on the host and on the device. The sampler draws token i's noise from
//   philox4x32_10(key = {lo32(seed), hi32(seed)}, counter = {i / 4, lo32(draw), hi32(draw), 0})[i % 4]
// so the noise depends only on (seed, draw, i) (see sampling.h).
// Also here: the maps from 32 random bits to a uniform in (0, 1) and to a standard Gumbel
// variate, shared by the CPU reference and the CUDA kernel (the same float operations).
#include <cmath>
#include <cstdint>

#include "kernels/host_device.h"

namespace nemotron::kernels {

struct Philox4 {
  uint32_t v[4];
};

NEMOTRON_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
#endif
}

// 10 rounds; the key is bumped by the Weyl constants between rounds.
NEMOTRON_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key increments
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c0, hi0, lo0);
    philox_mulhilo(kM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The sampler's noise block for tokens 4j .. 4j+3 of one (seed, draw).
NEMOTRON_HD Philox4 sample_noise_block(uint64_t seed, uint64_t draw, uint32_t j) {
  return philox4x32_10(j, static_cast<uint32_t>(draw), static_cast<uint32_t>(draw >> 32), 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// ((x >> 8) + 0.5f) * 2^-24 in float: 2^24 values strictly inside (0, 1) in exact arithmetic.
// In float the top one, (2^24 - 0.5) * 2^-24, rounds to 1.0 (which would make the Gumbel noise
// +inf); it is clamped to the largest float below 1 (0x1.fffffep-1). Every other value is as
// the formula gives.
NEMOTRON_HD float uniform_open01(uint32_t x) {
  const float u = (static_cast<float>(x >> 8) + 0.5f) * 5.9604644775390625e-8f;  // 2^-24
  return u < 0.99999994039535522f ? u : 0.99999994039535522f;                     // 1 - 2^-24
}

// Standard Gumbel variate -log(-log(u)) of uniform_open01(x), in float. Its largest value
// (x = 0xFFFFFFFF) is about 16.64, below kGumbelBound.
NEMOTRON_HD float gumbel(uint32_t x) {
  const float u = uniform_open01(x);
  return -logf(-logf(u));
}

// An upper bound of gumbel(x) for every x (checked by the CPU tests): lets the kernel skip tokens
// whose logit + bound is below a value already reached.
constexpr float kGumbelBound = 17.0f;

}  // namespace nemotron::kernels
