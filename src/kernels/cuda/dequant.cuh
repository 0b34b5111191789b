#pragma once
// Weight decoding in registers, 16 bytes of stored weight at a time.
//   BF16:  16 B = 8 elements.   FP8 E4M3: 16 B = 16 elements (value = fp8, scale later).
//   NVFP4: 16 B = 32 elements = 2 blocks of 16 (element 2j in the low nibble of byte j);
//          value = e2m1 * block_scale (exact in fp32 and in BF16), global scale later.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/linear.h"
#include "kernels/numeric.h"

namespace nemotron::kernels::cuda {

template <WeightFormat F>
struct Fmt;

template <>
struct Fmt<WeightFormat::Dense> {
  static constexpr int kElems = 8;
  __device__ __forceinline__ static void decode(const uint4& v, uint16_t, float (&o)[kElems]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      o[2 * i] = bf16lo(w[i]);
      o[2 * i + 1] = bf16hi(w[i]);
    }
  }
};

template <>
struct Fmt<WeightFormat::FP8> {
  static constexpr int kElems = 16;
  __device__ __forceinline__ static void decode(const uint4& v, uint16_t, float (&o)[kElems]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2(
            static_cast<__nv_fp8x2_storage_t>((w[i] >> (16 * h)) & 0xFFFFu), __NV_E4M3);
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&r));
        o[4 * i + 2 * h] = f.x;
        o[4 * i + 2 * h + 1] = f.y;
      }
    }
  }
};

// E2M1 pair (one byte) -> two floats times `s`. The 4-bit code (sign s, exponent e, mantissa m)
// placed at half bits 15 and 11..9 is a half of value e2m1 * 2^-14 (e = 0 lands on the
// subnormals, e2m1 = m/2 -> m * 2^-15), so s must carry the 2^14.
__device__ __forceinline__ float2 e2m1x2(uint32_t byte, float s) {
  const uint32_t v = (byte & 0xFu) | ((byte & 0xF0u) << 12);
  const uint32_t h = ((v & 0x00080008u) << 12) | ((v & 0x00070007u) << 9);
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
  return make_float2(f.x * s, f.y * s);
}

template <>
struct Fmt<WeightFormat::NVFP4> {
  static constexpr int kElems = 32;
  // e2m1 * 2^-14 (exact), no scales: the GEMV applies 2^14 * block scale per 16-element block.
  __device__ __forceinline__ static void decode_raw(const uint4& v, float (&o)[kElems]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t b = (w[i] >> (8 * j)) & 0xFFu;
        const uint32_t q = (b & 0xFu) | ((b & 0xF0u) << 12);
        const uint32_t h = ((q & 0x00080008u) << 12) | ((q & 0x00070007u) << 9);
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
        o[8 * i + 2 * j] = f.x;
        o[8 * i + 2 * j + 1] = f.y;
      }
    }
  }
  // `scales`: the two E4M3 block scales, block 0 in the low byte.
  __device__ __forceinline__ static void decode(const uint4& v, uint16_t scales, float (&o)[kElems]) {
    const float s0 = e4m3_to_float(static_cast<uint8_t>(scales & 0xFF)) * 16384.0f;
    const float s1 = e4m3_to_float(static_cast<uint8_t>(scales >> 8)) * 16384.0f;
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float s = i < 2 ? s0 : s1;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = e2m1x2((w[i] >> (8 * j)) & 0xFFu, s);
        o[8 * i + 2 * j] = f.x;
        o[8 * i + 2 * j + 1] = f.y;
      }
    }
  }
};

// Stored bytes of one weight row and the scale applied after accumulation.
__host__ __device__ inline int64_t row_bytes(WeightFormat f, int64_t in) {
  return f == WeightFormat::Dense ? in * 2 : f == WeightFormat::FP8 ? in : in / 2;
}

__host__ __device__ inline float post_scale(WeightFormat f, float scale) {
  return f == WeightFormat::Dense ? 1.0f : scale;
}

}  // namespace nemotron::kernels::cuda
