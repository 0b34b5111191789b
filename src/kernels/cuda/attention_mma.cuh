#pragma once
// Tensor-core helpers of the paged attention kernels (attention_prefill.cu: prefill runs;
// attention_decode.cu: decode rows): V fragments by ldmatrix.trans, BF16 packing of the
// probabilities, and E4M3 K/V rows converted exactly to BF16.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dequant.cuh"

namespace nemotron::kernels::cuda {

inline constexpr uint32_t kAttnBf16NaN2 = 0x7FC07FC0u;  // two BF16 NaNs
inline constexpr uint32_t kTwoPow112x2 = 0x77807780u;   // BF16x2 splat of 2^112

// Four 8x8 BF16 matrices from shared memory, transposed (the B operands of P V from row-major
// V rows); lane l addresses row (l & 7) of matrix l >> 3.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<uint32_t>(f2bf(lo)) | (static_cast<uint32_t>(f2bf(hi)) << 16);
}

// 8 E4M3 bytes -> 8 BF16 (the values exactly).
__device__ __forceinline__ uint4 e4m3x8_to_bf16x8(const char* p) {
  const uint2 w = *reinterpret_cast<const uint2*>(p);
  uint4 o;
  o.x = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(w.x)), kTwoPow112x2);
  o.y = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(w.x >> 16)), kTwoPow112x2);
  o.z = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(w.y)), kTwoPow112x2);
  o.w = bf16x2_mul(f16x2_to_bf16x2_shifted(e4m3x2_to_f16x2(w.y >> 16)), kTwoPow112x2);
  return o;
}

}  // namespace nemotron::kernels::cuda
