#pragma once
// Random checkpoint-format weights for the linear tests and bench (host copies).
//   Dense: BF16 with random sign, exponent in [2^-9, 2^-3) and mantissa (never zero).
//   FP8:   E4M3 codes of random normal values (sd 32, so subnormals through 448 occur), per-
//          tensor scale 1/512.  NVFP4: uniformly random nibbles (all 16 codes), E4M3 block
//          scales of uniform [0.25, 4), global scale 1/64.
#include <cstdint>
#include <vector>

#include "kernels/linear.h"
#include "kernels/numeric.h"

namespace nemotron::testing {

struct HostWeight {
  std::vector<uint8_t> data, scales;
  kernels::LinearWeight w;  // points into data / scales
};

inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline HostWeight make_weight(kernels::WeightFormat f, int64_t out, int64_t in, uint64_t seed) {
  using kernels::WeightFormat;
  HostWeight h;
  uint64_t s = seed;
  h.w.format = f;
  h.w.out = out;
  h.w.in = in;
  if (f == WeightFormat::Dense) {
    h.data.resize(static_cast<std::size_t>(out * in * 2));
    auto* p = reinterpret_cast<uint16_t*>(h.data.data());
    for (int64_t i = 0; i < out * in; ++i) {
      const uint64_t r = splitmix(s);
      const uint32_t exp = 118 + static_cast<uint32_t>(r % 6);  // 2^-9 .. 2^-4 leading
      p[i] = static_cast<uint16_t>(((r >> 8) & 0x8000u) | (exp << 7) | ((r >> 20) & 0x7Fu));
    }
  } else if (f == WeightFormat::FP8) {
    h.data.resize(static_cast<std::size_t>(out * in));
    for (auto& b : h.data) {
      // Sum of uniforms ~ normal, sd 32.
      const uint64_t r = splitmix(s);
      float v = 0;
      for (int k = 0; k < 4; ++k) v += static_cast<float>((r >> (16 * k)) & 0xFFFF) / 65535.0f - 0.5f;
      b = kernels::float_to_e4m3(v * 55.4f);
    }
    h.w.scale = 1.0f / 512.0f;
  } else {
    h.data.resize(static_cast<std::size_t>(out * in / 2));
    for (std::size_t i = 0; i < h.data.size(); i += 8) {
      const uint64_t r = splitmix(s);
      for (std::size_t k = 0; k < 8 && i + k < h.data.size(); ++k) h.data[i + k] = static_cast<uint8_t>(r >> (8 * k));
    }
    h.scales.resize(static_cast<std::size_t>(out * in / 16));
    for (auto& b : h.scales) b = kernels::float_to_e4m3(0.25f + 3.75f * static_cast<float>(splitmix(s) % 4096) / 4096.0f);
    h.w.scale = 1.0f / 64.0f;
    h.w.block_scale = h.scales.data();
  }
  h.w.data = h.data.data();
  return h;
}

}  // namespace nemotron::testing
