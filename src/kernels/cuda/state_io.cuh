#pragma once
// SSM state slots in their storage type (kernels/state_round.h), four elements at a time:
// fp32 as one float4, 16-bit as four codes in 8 bytes (decoded exactly; rounded on store,
// to nearest or stochastically with the noise of (layer, position after the write, element)).
// The storage type is a kernel argument, the same for the whole grid (a uniform branch).
#include <cstdint>

#include "kernels/state_round.h"

namespace nemotron::kernels::cuda {

// Where a kernel writes a layer's states back: the type, rounding and noise key.
struct StateStore {
  StateDType dtype = StateDType::F32;
  bool stochastic = true;
  uint32_t layer = 0;
};

// Elements e .. e+3 (e a multiple of 4) of a state array of type d.
__device__ __forceinline__ float4 load_state4(const void* base, StateDType d, int64_t e) {
  if (d == StateDType::F32) return *reinterpret_cast<const float4*>(static_cast<const float*>(base) + e);
  const uint2 u = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(base) + e);
  return make_float4(decode_state16(static_cast<uint16_t>(u.x), d), decode_state16(static_cast<uint16_t>(u.x >> 16), d),
                     decode_state16(static_cast<uint16_t>(u.y), d), decode_state16(static_cast<uint16_t>(u.y >> 16), d));
}

// Stores v at elements e .. e+3; q (a multiple of 4): the first element's index in the
// sequence's state of this layer (the noise index: ((head * P) + p) * N + n); pos: the
// sequence's length after this write.
__device__ __forceinline__ void store_state4(void* base, const StateStore& st, int64_t pos, int64_t e, int64_t q,
                                             float4 v) {
  if (st.dtype == StateDType::F32) {
    *reinterpret_cast<float4*>(static_cast<float*>(base) + e) = v;
    return;
  }
  Philox4 r{{0u, 0u, 0u, 0u}};
  if (st.stochastic) r = ssm_round_block(st.layer, pos, static_cast<uint32_t>(q >> 2));
  const uint32_t c0 = encode_state16(round_state(v.x, st.dtype, st.stochastic, r.v[0]), st.dtype);
  const uint32_t c1 = encode_state16(round_state(v.y, st.dtype, st.stochastic, r.v[1]), st.dtype);
  const uint32_t c2 = encode_state16(round_state(v.z, st.dtype, st.stochastic, r.v[2]), st.dtype);
  const uint32_t c3 = encode_state16(round_state(v.w, st.dtype, st.stochastic, r.v[3]), st.dtype);
  *reinterpret_cast<uint2*>(static_cast<uint16_t*>(base) + e) = make_uint2(c0 | (c1 << 16), c2 | (c3 << 16));
}

// One element (layouts that do not group elements by four).
__device__ __forceinline__ float load_state1(const void* base, StateDType d, int64_t e) {
  if (d == StateDType::F32) return static_cast<const float*>(base)[e];
  return decode_state16(static_cast<const uint16_t*>(base)[e], d);
}
__device__ __forceinline__ void store_state1(void* base, const StateStore& st, int64_t pos, int64_t e, int64_t q,
                                             float v) {
  if (st.dtype == StateDType::F32) {
    static_cast<float*>(base)[e] = v;
    return;
  }
  const uint32_t bits = st.stochastic ? ssm_round_bits(st.layer, pos, static_cast<uint64_t>(q)) : 0u;
  static_cast<uint16_t*>(base)[e] = encode_state16(round_state(v, st.dtype, st.stochastic, bits), st.dtype);
}

}  // namespace nemotron::kernels::cuda
