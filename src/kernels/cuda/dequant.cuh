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

// ---- BF16 tensor-core operands (the mma GEMV, gemv_core.cuh) ----
// A 16-byte chunk of one stored row holds kE elements = kE/8 "units" of 8 consecutive k. Each
// unit becomes 4 BF16x2 registers r[0..3] (the A operands of two m16n8k16 mmas: r[0], r[1] for
// the first, r[2], r[3] for the second); the element pair in r[i] is listed in kPairs, and the
// activations are staged in shared memory in that same order (stage_unit), so that one 16-byte
// shared load per unit gives the matching B operands. Products are exact in BF16 (FP8 values,
// e2m1 x E4M3 block scale), so only fp32 accumulation rounds; kPost scales the sum.

// D += A B on the tensor cores: one m16n8k16 BF16 mma with fp32 accumulators (both GEMV and
// GEMM cores; register layouts as in the PTX ISA).
__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  uint32_t d;  // a * b + (-0): fma.rn.bf16x2 keeps subnormal inputs (sm_80+)
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
  return d;
}

// Two E4M3 codes (low byte first) -> FP16x2 (exact: every E4M3 value is a normal FP16 or 0).
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t v16) {
  const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v16 & 0xFFFFu), __NV_E4M3);
  return static_cast<uint32_t>(r.x) | (static_cast<uint32_t>(r.y) << 16);
}

// FP16x2 of normal numbers or zeros -> BF16x2 of the same values times 2^-112 (the exponent
// field is kept, the mantissa loses its 3 low bits, which are zero for E4M3-derived values).
__device__ __forceinline__ uint32_t f16x2_to_bf16x2_shifted(uint32_t h) {
  return ((h >> 3) & 0x0FFF0FFFu) | (h & 0x80008000u);
}

template <WeightFormat F>
struct MmaFmt;

template <>
struct MmaFmt<WeightFormat::Dense> {
  static constexpr int kE = 8;
  static constexpr float kPost = 1.0f;
  __device__ __forceinline__ static void prep_scale(uint16_t, uint32_t (&)[2]) {}
  __device__ __forceinline__ static void unit(const uint4& c, const uint32_t (&)[2], int, uint32_t (&r)[4]) {
    r[0] = c.x;  // pairs (0,1) (2,3) (4,5) (6,7): natural order
    r[1] = c.y;
    r[2] = c.z;
    r[3] = c.w;
  }
  __device__ __forceinline__ static uint4 stage_unit(uint4 v) { return v; }
};

template <>
struct MmaFmt<WeightFormat::FP8> {
  static constexpr int kE = 16;
  static constexpr float kPost = 1.0f;
  __device__ __forceinline__ static void prep_scale(uint16_t, uint32_t (&)[2]) {}
  // Unit w = bytes 8w..8w+7 of the chunk, pairs in natural order; value = e4m3 exactly.
  __device__ __forceinline__ static void unit(const uint4& c, const uint32_t (&)[2], int w, uint32_t (&r)[4]) {
    const uint32_t lo = w == 0 ? c.x : c.z, hi = w == 0 ? c.y : c.w;
    constexpr uint32_t k2p112 = 0x77807780u;  // BF16x2 (2^112, 2^112)
    r[0] = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(lo)), k2p112);
    r[1] = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(lo >> 16)), k2p112);
    r[2] = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(hi)), k2p112);
    r[3] = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(hi >> 16)), k2p112);
  }
  __device__ __forceinline__ static uint4 stage_unit(uint4 v) { return v; }
};

template <>
struct MmaFmt<WeightFormat::NVFP4> {
  static constexpr int kE = 32;
  static constexpr float kPost = 256.0f;  // A = e2m1 * block scale * 2^-8
  // The chunk's two E4M3 block scales (block 0 in the low byte) -> s[b] = BF16x2 splat of
  // scale_b * 2^118 (<= 448 * 2^118 < 2^127, exact).
  __device__ __forceinline__ static void prep_scale(uint16_t sv, uint32_t (&s)[2]) {
    constexpr uint32_t k2p115 = 0x79007900u;  // BF16x2 (2^115, 2^115)
    const uint32_t v = bf16x2_mul(bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(sv)), k2p115), k2p115);
    s[0] = __byte_perm(v, 0, 0x1010);
    s[1] = __byte_perm(v, 0, 0x3232);
  }
  // Unit w = 32-bit word w (element 2j in the low nibble of byte j). An E2M1 code (sign s,
  // exponent e, mantissa m) placed at BF16 bits 15 and 8..6 is the BF16 of e2m1 * 2^-126 (e = 0
  // lands on the subnormals: m/2 * 2^-126), so one shift and mask per pair of codes 4 apart
  // (the same shift serves both halves): r[i] = (code i, code i+4); times the block scale.
  __device__ __forceinline__ static void unit(const uint4& c, const uint32_t (&s)[2], int w, uint32_t (&r)[4]) {
    const uint32_t q = w == 0 ? c.x : w == 1 ? c.y : w == 2 ? c.z : c.w;
    const uint32_t sc = w < 2 ? s[0] : s[1];
    constexpr uint32_t M = 0x01C001C0u, S = 0x80008000u;
    r[0] = bf16x2_mul(((q << 6) & M) | ((q << 12) & S), sc);
    r[1] = bf16x2_mul(((q << 2) & M) | ((q << 8) & S), sc);
    r[2] = bf16x2_mul(((q >> 2) & M) | ((q << 4) & S), sc);
    r[3] = bf16x2_mul(((q >> 6) & M) | (q & S), sc);
  }
  // Natural x pairs (0,1) (2,3) (4,5) (6,7) -> (0,4) (1,5) (2,6) (3,7).
  __device__ __forceinline__ static uint4 stage_unit(uint4 v) {
    return make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632), __byte_perm(v.y, v.w, 0x5410),
                      __byte_perm(v.y, v.w, 0x7632));
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
