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

// The A fragments of a 16-row BF16 tile in shared memory over K = 16 KS (m16n8k16 layout: rows
// g and g + 8, k columns 2c.. and 2c + 8.. of each k-step); q0 points at row g's element 2c,
// rows S elements apart.
template <int KS>
__device__ __forceinline__ void load_a_fragments(uint32_t (&qa)[KS][4], const uint16_t* q0, int S) {
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    qa[ks][0] = *reinterpret_cast<const uint32_t*>(q0 + ks * 16);
    qa[ks][1] = *reinterpret_cast<const uint32_t*>(q0 + 8 * S + ks * 16);
    qa[ks][2] = *reinterpret_cast<const uint32_t*>(q0 + ks * 16 + 8);
    qa[ks][3] = *reinterpret_cast<const uint32_t*>(q0 + 8 * S + ks * 16 + 8);
  }
}

// A stage of `keys` stored E4M3 K and V rows (kr, vr; rows rs bytes apart, D elements) converted
// to BF16 tiles kc, vc (rows S elements apart), 8 elements per step, by threads first, first +
// stride, ... (the block, or one warp's lanes); the caller synchronizes before reading them.
template <int D>
__device__ __forceinline__ void e4m3_kv_to_bf16(const char* kr, const char* vr, int rs, int keys, uint16_t* kc,
                                                uint16_t* vc, int S, int first, int stride) {
  constexpr int C8 = D / 8;
  for (int i = first; i < keys * C8; i += stride) {
    const int key = i / C8, ch = i % C8;
    *reinterpret_cast<uint4*>(kc + key * S + ch * 8) = e4m3x8_to_bf16x8(kr + key * rs + ch * 8);
    *reinterpret_cast<uint4*>(vc + key * S + ch * 8) = e4m3x8_to_bf16x8(vr + key * rs + ch * 8);
  }
}

// S = Q K^T for 16 rows x 8 NT keys: qa the rows' A fragments over K = 16 KS, k_s the keys'
// BF16 rows (S elements apart) as the B operands; s in the m16n8k16 accumulator layout.
template <int NT, int KS>
__device__ __forceinline__ void scores_tile(float (&s)[NT][4], const uint32_t (&qa)[KS][4], const uint16_t* k_s,
                                            int S, int g, int c) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    const uint16_t* k0 = k_s + (nt * 8 + g) * S + 2 * c;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      const uint32_t b0 = *reinterpret_cast<const uint32_t*>(k0 + ks * 16);
      const uint32_t b1 = *reinterpret_cast<const uint32_t*>(k0 + ks * 16 + 8);
      mma_bf16_16816(s[nt], qa[ks], b0, b1);
    }
  }
}

// One key tile of the online softmax, for the two rows a lane holds in a warp's m16 tile (g:
// lo, g + 8: hi; m16n8k16 accumulator layout): s [NT][4] holds the tile's scores in the log2
// domain (masked keys -inf) and becomes P = 2^(s - m_new) in place; the running maxima m (shared
// by the row's four lanes), the lanes' partial sums l and the output accumulators o [DT][4] are
// rescaled by 2^(m_old - m_new). A row with no key yet keeps m = -inf: its base is 0 and every
// p is 0.
template <int NT, int DT>
__device__ __forceinline__ void online_softmax_tile(float (&s)[NT][4], float& m_lo, float& m_hi, float& l_lo,
                                                    float& l_hi, float (&o)[DT][4]) {
  float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    mx_lo = fmaxf(mx_lo, fmaxf(s[nt][0], s[nt][1]));
    mx_hi = fmaxf(mx_hi, fmaxf(s[nt][2], s[nt][3]));
  }
#pragma unroll
  for (int o2 = 1; o2 <= 2; o2 <<= 1) {
    mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xFFFFFFFFu, mx_lo, o2));
    mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xFFFFFFFFu, mx_hi, o2));
  }
  const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
  const float base_lo = mn_lo == -INFINITY ? 0.0f : mn_lo, base_hi = mn_hi == -INFINITY ? 0.0f : mn_hi;
  const float alpha_lo = exp2f(m_lo - base_lo), alpha_hi = exp2f(m_hi - base_hi);
  m_lo = mn_lo;
  m_hi = mn_hi;
  float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    s[nt][0] = exp2f(s[nt][0] - base_lo);
    s[nt][1] = exp2f(s[nt][1] - base_lo);
    s[nt][2] = exp2f(s[nt][2] - base_hi);
    s[nt][3] = exp2f(s[nt][3] - base_hi);
    sum_lo += s[nt][0] + s[nt][1];
    sum_hi += s[nt][2] + s[nt][3];
  }
  l_lo = l_lo * alpha_lo + sum_lo;
  l_hi = l_hi * alpha_hi + sum_hi;
#pragma unroll
  for (int i = 0; i < DT; ++i) {
    o[i][0] *= alpha_lo;
    o[i][1] *= alpha_lo;
    o[i][2] *= alpha_hi;
    o[i][3] *= alpha_hi;
  }
}

// O += P V over keys [16 kk, 16 kk + 16) of a tile: P (rounded to BF16) is the A operand straight
// from the score registers s[2 kk], s[2 kk + 1]; V fragments come from the row-major BF16 rows
// v_s (stride S elements) by ldmatrix.trans: matrices (keys +0..7, d tile dt), (+8..15, dt),
// (+0..7, dt + 1), (+8..15, dt + 1); lane l addresses row (l & 7) of matrix l >> 3.
template <int NT, int DT>
__device__ __forceinline__ void pv_kstep(float (&o)[DT][4], const float (&s)[NT][4], int kk, const uint16_t* v_s,
                                         int S, int lane) {
  const uint32_t pa[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                          pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                          pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
  const int mi = lane >> 3, key = kk * 16 + (mi & 1) * 8 + (lane & 7);
#pragma unroll
  for (int dt = 0; dt < DT; dt += 2) {
    uint32_t b[4];
    ldmatrix_x4_trans(b, v_s + key * S + (dt + (mi >> 1)) * 8);
    mma_bf16_16816(o[dt], pa, b[0], b[1]);
    mma_bf16_16816(o[dt + 1], pa, b[2], b[3]);
  }
}

}  // namespace nemotron::kernels::cuda
