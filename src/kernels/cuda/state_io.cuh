#pragma once
// SSM state slots in their storage type (kernels/state_round.h), four elements at a time:
// fp32 as one float4, 16-bit as four codes in 8 bytes (decoded exactly; rounded on store,
// to nearest or stochastically with the noise of (layer, position after the write, element):
// the write's seed is drawn once per thread (state_store), each element pair hashes it).
// The storage type is a kernel argument, the same for the whole grid (a uniform branch).
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/state_round.h"

namespace nemotron::kernels::cuda {

// Where a kernel writes one sequence's state of a layer back: the type, rounding and, for a
// stochastic 16-bit store, the seed of that write's noise (kernels/state_round.h).
struct StateStore {
  StateDType dtype = StateDType::F32;
  bool stochastic = true;
  uint32_t seed = 0;
};

// pos: the sequence's length after this write (unused for fp32 or rounding to nearest: the
// seed's Philox draw is skipped).
__device__ __forceinline__ StateStore state_store(StateDType d, bool stochastic, uint32_t layer, int64_t pos) {
  StateStore st{d, stochastic, 0u};
  if (d != StateDType::F32 && stochastic) st.seed = ssm_round_seed(layer, pos);
  return st;
}

// 16-bit storage codes on the device: the hardware conversions, exact for every value on the
// grid (kernels/state_round.h's decode_state16 / encode_state16 are the host's, software).
__device__ __forceinline__ float decode16(uint32_t code, StateDType d) {
  return d == StateDType::BF16 ? __uint_as_float((code & 0xFFFFu) << 16)
                               : __half2float(__ushort_as_half(static_cast<unsigned short>(code)));
}
__device__ __forceinline__ uint32_t encode16(float v, StateDType d) {  // v on d's grid
  return d == StateDType::BF16 ? __float_as_uint(v) >> 16 : __half_as_ushort(__float2half_rn(v));
}

// Four 16-bit codes (elements e .. e+3 as loaded in one 8-byte word) decoded.
__device__ __forceinline__ float4 decode_state4(uint2 u, StateDType d) {
  return make_float4(decode16(u.x, d), decode16(u.x >> 16, d), decode16(u.y, d), decode16(u.y >> 16, d));
}
// The raw 8-byte word of elements e .. e+3 (e a multiple of 4) of a 16-bit state array.
__device__ __forceinline__ uint2 load_state16_raw(const void* base, int64_t e) {
  return *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(base) + e);
}

// Elements e .. e+3 (e a multiple of 4) of a state array of type d.
__device__ __forceinline__ float4 load_state4(const void* base, StateDType d, int64_t e) {
  if (d == StateDType::F32) return *reinterpret_cast<const float4*>(static_cast<const float*>(base) + e);
  return decode_state4(load_state16_raw(base, e), d);
}

// Stores v at elements e .. e+3; q (a multiple of 4): the first element's index in the
// sequence's state of this layer (the noise index: ((head * P) + p) * N + n).
__device__ __forceinline__ void store_state4(void* base, const StateStore& st, int64_t e, int64_t q, float4 v) {
  if (st.dtype == StateDType::F32) {
    *reinterpret_cast<float4*>(static_cast<float*>(base) + e) = v;
    return;
  }
  uint32_t h01 = 0u, h23 = 0u;
  if (st.stochastic) {
    h01 = ssm_round_pair(st.seed, static_cast<uint32_t>(q >> 1));
    h23 = ssm_round_pair(st.seed, static_cast<uint32_t>(q >> 1) + 1u);
  }
  const uint32_t c0 = encode16(round_state(v.x, st.dtype, st.stochastic, h01), st.dtype);
  const uint32_t c1 = encode16(round_state(v.y, st.dtype, st.stochastic, h01 >> 16), st.dtype);
  const uint32_t c2 = encode16(round_state(v.z, st.dtype, st.stochastic, h23), st.dtype);
  const uint32_t c3 = encode16(round_state(v.w, st.dtype, st.stochastic, h23 >> 16), st.dtype);
  *reinterpret_cast<uint2*>(static_cast<uint16_t*>(base) + e) = make_uint2(c0 | (c1 << 16), c2 | (c3 << 16));
}

// One element (layouts that do not group elements by four).
__device__ __forceinline__ float load_state1(const void* base, StateDType d, int64_t e) {
  if (d == StateDType::F32) return static_cast<const float*>(base)[e];
  return decode16(static_cast<const uint16_t*>(base)[e], d);
}
__device__ __forceinline__ void store_state1(void* base, const StateStore& st, int64_t e, int64_t q, float v) {
  if (st.dtype == StateDType::F32) {
    static_cast<float*>(base)[e] = v;
    return;
  }
  const uint32_t bits = st.stochastic ? ssm_round_bits_seeded(st.seed, static_cast<uint64_t>(q)) : 0u;
  static_cast<uint16_t*>(base)[e] = static_cast<uint16_t>(encode16(round_state(v, st.dtype, st.stochastic, bits), st.dtype));
}

}  // namespace nemotron::kernels::cuda
