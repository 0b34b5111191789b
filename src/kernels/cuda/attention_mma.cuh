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

// ---- FP8 K/V straight into f16 mmas (attention_decode.cu, the default for FP8 K/V) ----
// E4M3 values are exact in f16, so the K and V bytes are converted in registers (one cvt per
// pair) into the B operands of m16n8k16 f16 mmas, without a converted tile in shared memory.
// Two index permutations make every lane's bytes contiguous:
//  - QK^T sums over d, so d may be permuted in Q and K alike: the m16n8k16 k index 2c + j
//    (j = 0, 1) and 2c + 8 + j of k-step ks is the stored d = c (D / 4) + 4 ks + j (+ 2):
//    lane c reads bytes [c D / 4, (c + 1) D / 4) of a key row, 4 per k-step.
//  - P V's output columns may be permuted if the result is written back in place: n index g of
//    n-tile dt is d = g (D / 8) + dt, so lane g reads bytes [g D / 8, (g + 1) D / 8) of its four
//    key rows (2c, 2c + 1, 2c + 8, 2c + 9) and pairs them by byte permutes; its accumulator
//    o[dt][0..1] is d = 2c (D / 8) + dt and that + D / 8 (rows g, g + 8 alike).

__device__ __forceinline__ void mma_f16_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Two BF16 -> two f16, clamped to the f16 range (a |q| above 65,504 would be infinite).
__device__ __forceinline__ uint32_t bf16x2_to_f16x2_clamped(uint32_t x) {
  constexpr float kMax = 65504.0f;
  const float lo = fminf(fmaxf(__uint_as_float(x << 16), -kMax), kMax);
  const float hi = fminf(fmaxf(__uint_as_float(x & 0xFFFF0000u), -kMax), kMax);
  return pack_f16x2(lo, hi);
}

// N 32-bit words from shared memory at p (aligned to 4 N bytes, N = 1, 2, 4 or 8).
template <int N>
__device__ __forceinline__ void load_words(uint32_t (&w)[N], const char* p) {
  static_assert(N == 1 || N == 2 || N == 4 || N == 8, "1, 2, 4 or 8 words");
  if constexpr (N == 1) {
    w[0] = *reinterpret_cast<const uint32_t*>(p);
  } else if constexpr (N == 2) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    w[0] = v.x;
    w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      w[4 * i] = v.x;
      w[4 * i + 1] = v.y;
      w[4 * i + 2] = v.z;
      w[4 * i + 3] = v.w;
    }
  }
}

// The A fragments of 16 BF16 q rows (q_s, rows S elements apart) as f16, d in the permuted
// order above: a0 / a2 = row g's d = c D / 4 + 4 ks + {0, 1} / {2, 3}, a1 / a3 = row g + 8's.
template <int KS>
__device__ __forceinline__ void load_a_fragments_f16_permuted(uint32_t (&qa)[KS][4], const uint16_t* q_s, int S, int g,
                                                              int c) {
  const uint16_t* r0 = q_s + g * S + c * 4 * KS;
  const uint16_t* r1 = r0 + 8 * S;
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    qa[ks][0] = bf16x2_to_f16x2_clamped(*reinterpret_cast<const uint32_t*>(r0 + 4 * ks));
    qa[ks][1] = bf16x2_to_f16x2_clamped(*reinterpret_cast<const uint32_t*>(r1 + 4 * ks));
    qa[ks][2] = bf16x2_to_f16x2_clamped(*reinterpret_cast<const uint32_t*>(r0 + 4 * ks + 2));
    qa[ks][3] = bf16x2_to_f16x2_clamped(*reinterpret_cast<const uint32_t*>(r1 + 4 * ks + 2));
  }
}

// S = Q K^T for 16 rows x 8 NT keys from E4M3 key rows k_rows (rs bytes apart; D = 16 KS
// bytes each), qa from load_a_fragments_f16_permuted; s in the accumulator layout.
template <int NT, int KS>
__device__ __forceinline__ void scores_tile_e4m3(float (&s)[NT][4], const uint32_t (&qa)[KS][4], const char* k_rows,
                                                 int rs, int g, int c) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    uint32_t w[KS];
    load_words<KS>(w, k_rows + (nt * 8 + g) * rs + c * 4 * KS);
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) mma_f16_16816(s[nt], qa[ks], e4m3x2_to_f16x2(w[ks]), e4m3x2_to_f16x2(w[ks] >> 16));
  }
}

// O += P V over the 16 keys of a tile (P: s[0], s[1] rounded to f16) from E4M3 value rows
// v_rows (rs bytes apart), the output columns permuted as above (o [DT][4], D = 8 DT).
template <int DT>
__device__ __forceinline__ void pv_tile_e4m3(float (&o)[DT][4], const float (&s)[2][4], const char* v_rows, int rs,
                                             int g, int c) {
  static_assert(DT % 4 == 0, "head_dim a multiple of 32");
  const uint32_t pa[4] = {pack_f16x2(s[0][0], s[0][1]), pack_f16x2(s[0][2], s[0][3]), pack_f16x2(s[1][0], s[1][1]),
                          pack_f16x2(s[1][2], s[1][3])};
  constexpr int W = DT / 4;
  const char* base = v_rows + g * DT;
  uint32_t r0[W], r1[W], r2[W], r3[W];
  load_words<W>(r0, base + (2 * c) * rs);
  load_words<W>(r1, base + (2 * c + 1) * rs);
  load_words<W>(r2, base + (2 * c + 8) * rs);
  load_words<W>(r3, base + (2 * c + 9) * rs);
#pragma unroll
  for (int w = 0; w < W; ++w) {
    // Bytes i of rows (2c, 2c + 1) side by side: {d 4w: keys 2c, 2c + 1; d 4w + 1: ...}.
    const uint32_t lo01 = __byte_perm(r0[w], r1[w], 0x5140), hi01 = __byte_perm(r0[w], r1[w], 0x7362);
    const uint32_t lo23 = __byte_perm(r2[w], r3[w], 0x5140), hi23 = __byte_perm(r2[w], r3[w], 0x7362);
    mma_f16_16816(o[4 * w], pa, e4m3x2_to_f16x2(lo01), e4m3x2_to_f16x2(lo23));
    mma_f16_16816(o[4 * w + 1], pa, e4m3x2_to_f16x2(lo01 >> 16), e4m3x2_to_f16x2(lo23 >> 16));
    mma_f16_16816(o[4 * w + 2], pa, e4m3x2_to_f16x2(hi01), e4m3x2_to_f16x2(hi23));
    mma_f16_16816(o[4 * w + 3], pa, e4m3x2_to_f16x2(hi01 >> 16), e4m3x2_to_f16x2(hi23 >> 16));
  }
}

}  // namespace nemotron::kernels::cuda
