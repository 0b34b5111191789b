#pragma once
// Tensor-core GEMM block shared by the dense prefill linear (linear_gemm.cu) and the grouped
// routed-expert GEMM (moe_grouped.cu): a BM x 128 tile of Y = A W^T, A rows BF16 (gathered
// through a per-row pointer table), W [out, in] in its checkpoint format.
//
// Portable sm_80+ instructions only (mma.sync m16n8k16 BF16 -> fp32, ldmatrix, cp.async), so
// the same code builds for sm_90a and sm_121a.
//
// Block: 256 threads = 8 warps as 2 (rows) x 4 (columns); warp tile (BM/2) x 32, i.e. BM/32
// m16 tiles x 4 n8 tiles (BM = 32: one m16 tile per warp, for calls of <= 32 rows, whose
// 64-row tiles spent half their mma and A-fragment work on zero rows). K advances in slices of
// BK = 64 (a slice past `in`, possible when in % 64 == 32, is zero-filled on both sides).
// Pipeline per slice kt:
//   A (activations): cp.async into a kStages-deep ring (kStages - 1 slices in flight).
//   W, Dense BF16: cp.async into the same kind of ring (no decoding needed).
//   W, FP8 / NVFP4: global -> registers two slices ahead, decoded to BF16 into one of two
//     shared buffers one slice ahead (after the slice's mma work, overlapping the other
//     resident block's tensor work). Decoded values are exact in BF16: FP8 values as such,
//     NVFP4 e2m1 x E4M3 block scale as the product times 2^-8 (kPost = 256 restores it);
//     the per-tensor scale is applied to the fp32 accumulators.
// Shared layout of one slice: rows of 64 BF16 = 8 chunks of 16 bytes, chunk c of row r at
// chunk position c ^ (r & 7) (XOR swizzle: ldmatrix and the 16-byte stores are conflict-free).
#include <cstdint>

#include "kernels/cuda/dequant.cuh"

namespace nemotron::kernels::cuda::gemm {

inline constexpr int BN = 128, BK = 64, kStages = 3, kThreads = 256;

// AW (asynchronous weights; FP8 / NVFP4 with in % 64 == 0, see async_weights): the raw weight
// bytes (and NVFP4 block scales) of each slice travel by cp.async in the same ring as A, so
// kRing - 1 slices of W are in flight while a slice is multiplied (the register staging of
// the other form keeps one: decode-size calls, whose blocks do little math per slice, wait on
// it). Per slice: wait for slice kt, barrier, refill the freed ring slot, decode slice kt's raw
// bytes to BF16 in the one decoded buffer, barrier, mma.
template <WeightFormat F, int BM, bool AW = false>
struct Cfg {
  static_assert(BM == 32 || BM == 64 || BM == 128, "row tile of 32, 64 or 128");
  static_assert(!AW || F != WeightFormat::Dense, "BF16 weights always travel by cp.async");
  static constexpr int kRing = AW ? (BM <= 64 ? 4 : 3) : kStages;  // slices in the ring
  static constexpr int kAStage = BM * BK * 2, kBStage = BN * BK * 2;  // bytes
  // AW: raw bytes of a W slice (NVFP4: 32 per row, then 4 scale bytes per row; FP8: 64 per row).
  static constexpr int kRawW = F == WeightFormat::NVFP4 ? BN * BK / 2 : BN * BK;
  static constexpr int kRawStage = AW ? kRawW + (F == WeightFormat::NVFP4 ? BN * BK / 16 : 0) : 0;
  static constexpr int kBBufs = F == WeightFormat::Dense ? kStages : AW ? 1 : 2;
  static constexpr int kSmem = kRing * (kAStage + kRawStage) + kBBufs * kBStage;
  static constexpr int MT = BM / 32, NT = 4;
  static constexpr float kPost = F == WeightFormat::NVFP4 ? 256.0f : 1.0f;
};

// Whether W takes the asynchronous form: FP8 / NVFP4 with in % 64 == 0 (every Nemotron 3
// projection: NVFP4 scale rows are then 4-byte aligned at every slice for the 4-byte cp.async,
// and no slice is partial).
inline bool async_weights(WeightFormat f, int64_t in) { return f != WeightFormat::Dense && in % 64 == 0; }

// Whether the block's dynamic (Cfg::kSmem) plus static (row tables) shared memory fits the
// device's per-block opt-in limit (H100: 227 KiB; sm_120-class parts: 99 KiB).
template <WeightFormat F, int BM, bool AW = false>
inline bool smem_fits(int smem_optin) {
  return Cfg<F, BM, AW>::kSmem + BM * (static_cast<int>(sizeof(void*)) + 4) <= smem_optin;
}

// Whether a call of F weights [*, in] on BM-row tiles runs the AW form: it applies and fits.
template <WeightFormat F, int BM>
inline bool use_async_weights(int64_t in, int smem_optin) {
  if constexpr (F == WeightFormat::Dense) return false;
  else return async_weights(F, in) && smem_fits<F, BM, true>(smem_optin);
}

// Element offset of chunk `c` of row `r` in a swizzled slice.
__device__ __forceinline__ int sw(int r, int c) { return r * BK + ((c ^ (r & 7)) << 3); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// NVFP4 word (8 codes, code 2j in the low nibble of byte j) -> 4 BF16x2 in natural order,
// (code 2i, code 2i+1) in o[i], each e2m1 * 2^-126 (see MmaFmt<NVFP4>::unit) times the splat
// `sc` (block scale * 2^118): e2m1 * scale * 2^-8, exact.
__device__ __forceinline__ void nvfp4_word(uint32_t q, uint32_t sc, uint32_t* o) {
  constexpr uint32_t M = 0x01C001C0u, S = 0x80008000u;
  const uint32_t lo = q & 0x0F0F0F0Fu, hi = (q >> 4) & 0x0F0F0F0Fu;
  // a: codes 0, 2 in bytes 0, 1 and codes 1, 3 in bytes 2, 3 (b: codes 4..7 likewise), so that
  // one shift pair moves a code to the low half and its neighbour to the high half.
  const uint32_t a = __byte_perm(lo, hi, 0x5410), b = __byte_perm(lo, hi, 0x7632);
  o[0] = bf16x2_mul(((a << 6) & M) | ((a << 12) & S), sc);
  o[1] = bf16x2_mul(((a >> 2) & M) | ((a << 4) & S), sc);
  o[2] = bf16x2_mul(((b << 6) & M) | ((b << 12) & S), sc);
  o[3] = bf16x2_mul(((b >> 2) & M) | ((b << 4) & S), sc);
}

// Register staging of one W slice for the decoded formats (kW uint4 per thread).
template <WeightFormat F>
struct WRegs {
  static constexpr int kW = F == WeightFormat::FP8 ? 2 : 1;
  uint4 v[kW];
  uint16_t s;  // NVFP4: the two E4M3 block scales of v[0]
};

// The weight operand of one block: rows n0.. of W (row stride rb bytes).
struct WOperand {
  const uint8_t* w;
  const uint8_t* wscale;  // NVFP4 block scales [out, in / 16]
  int64_t rb;
  int in, out, n0;
};

template <WeightFormat F>
__device__ __forceinline__ void load_w(WRegs<F>& r, const WOperand& o, int k0) {
  const int tid = threadIdx.x;
  if constexpr (F == WeightFormat::FP8) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + kThreads * i, row = idx >> 2, c = idx & 3;
      r.v[i] = make_uint4(0, 0, 0, 0);
      if (o.n0 + row < o.out && k0 + 16 * c < o.in)
        r.v[i] = __ldg(reinterpret_cast<const uint4*>(o.w + (o.n0 + row) * o.rb + k0) + c);
    }
  } else {
    const int row = tid >> 1, c = tid & 1;
    r.v[0] = make_uint4(0, 0, 0, 0);
    r.s = 0;
    if (o.n0 + row < o.out && k0 + 32 * c < o.in) {
      r.v[0] = __ldg(reinterpret_cast<const uint4*>(o.w + (o.n0 + row) * o.rb + k0 / 2) + c);
      const uint8_t* srow = o.wscale + static_cast<int64_t>(o.n0 + row) * (o.in / 16);
      r.s = __ldg(reinterpret_cast<const uint16_t*>(srow + k0 / 16) + c);
    }
  }
}

// AW: the raw bytes of the W slice at column k0 into a ring stage (zero-filled past `out`).
template <WeightFormat F>
__device__ __forceinline__ void issue_raw_w(unsigned char* raw, const WOperand& o, int k0) {
  const int tid = threadIdx.x;
  if constexpr (F == WeightFormat::FP8) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + kThreads * i, row = idx >> 2, c = idx & 3;
      const bool ok = o.n0 + row < o.out;
      cp_async16(raw + 16 * idx, ok ? o.w + (o.n0 + row) * o.rb + k0 + 16 * c : o.w, ok ? 16 : 0);
    }
  } else {
    const int row = tid >> 1, c = tid & 1;
    const bool ok = o.n0 + row < o.out;
    cp_async16(raw + 16 * tid, ok ? o.w + (o.n0 + row) * o.rb + k0 / 2 + 16 * c : o.w, ok ? 16 : 0);
    if (tid < BN) {
      const bool sok = o.n0 + tid < o.out;
      cp_async4(raw + BN * BK / 2 + 4 * tid,
                sok ? o.wscale + static_cast<int64_t>(o.n0 + tid) * (o.in / 16) + k0 / 16 : o.wscale, sok ? 4 : 0);
    }
  }
}

// AW: this thread's part of a raw ring stage, in load_w's register form.
template <WeightFormat F>
__device__ __forceinline__ void load_w_raw(WRegs<F>& r, const unsigned char* raw) {
  const int tid = threadIdx.x;
  if constexpr (F == WeightFormat::FP8) {
#pragma unroll
    for (int i = 0; i < 2; ++i) r.v[i] = *reinterpret_cast<const uint4*>(raw + 16 * (tid + kThreads * i));
  } else {
    r.v[0] = *reinterpret_cast<const uint4*>(raw + 16 * tid);
    r.s = *reinterpret_cast<const uint16_t*>(raw + BN * BK / 2 + 2 * tid);
  }
}

template <WeightFormat F>
__device__ __forceinline__ void store_w(const WRegs<F>& r, uint16_t* Bs) {
  const int tid = threadIdx.x;
  if constexpr (F == WeightFormat::FP8) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + kThreads * i, row = idx >> 2, c = idx & 3;
      const uint32_t s0[2] = {0, 0};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint32_t u[4];
        MmaFmt<WeightFormat::FP8>::unit(r.v[i], s0, h, u);
        *reinterpret_cast<uint4*>(Bs + sw(row, 2 * c + h)) = make_uint4(u[0], u[1], u[2], u[3]);
      }
    }
  } else {
    const int row = tid >> 1, c = tid & 1;
    uint32_t sc[2];
    MmaFmt<WeightFormat::NVFP4>::prep_scale(r.s, sc);
    const uint32_t q[4] = {r.v[0].x, r.v[0].y, r.v[0].z, r.v[0].w};
#pragma unroll
    for (int h = 0; h < 4; ++h) {
      uint32_t u[4];
      nvfp4_word(q[h], sc[h >> 1], u);
      *reinterpret_cast<uint4*>(Bs + sw(row, 4 * c + h)) = make_uint4(u[0], u[1], u[2], u[3]);
    }
  }
}

// acc[mt][nt][0..3] (mma C layout): rows wm + 16 mt + lane/4 (+8 for [2], [3]), columns
// wn + 8 nt + 2 (lane % 4) (+1 for [1], [3]) of the block tile, wm = (warp / 4) * BM/2,
// wn = (warp % 4) * 32.
//
// arow: shared table of BM row pointers into A (nullptr: a zero row); each points at `in`
// BF16, 16-byte aligned. `smem`: Cfg<F, BM>::kSmem bytes, 128-byte aligned. The caller has
// written arow and synchronized.
// K range: slices kt0 .. kt0 + ktn - 1 (columns [kt0 BK, min(in, (kt0 + ktn) BK))); ktn < 0:
// every slice from kt0 on. A split-K block takes its own range; ktn >= 1.
template <WeightFormat F, int BM, bool AW = false>
__device__ __forceinline__ void gemm_mainloop(const uint16_t* const* arow, const WOperand& o, unsigned char* smem,
                                              float (&acc)[BM / 32][4][4], int kt0 = 0, int ktn = -1) {
  using C = Cfg<F, BM, AW>;
  constexpr int R = C::kRing;
  constexpr int kAChunks = BM * 8 / kThreads;  // 16-byte chunks of A per thread per slice
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp >> 2) * (BM / 2), wn = (warp & 3) * 32;
  uint16_t* As = reinterpret_cast<uint16_t*>(smem);
  [[maybe_unused]] unsigned char* raw = smem + R * C::kAStage;  // AW: R stages of kRawStage bytes
  uint16_t* Bs = reinterpret_cast<uint16_t*>(smem + R * (C::kAStage + C::kRawStage));
  const int in = o.in, KT = ktn >= 0 ? ktn : (in + BK - 1) / BK - kt0, kb = kt0 * BK;

  const uint16_t* ap[kAChunks];
#pragma unroll
  for (int i = 0; i < kAChunks; ++i) ap[i] = arow[(tid + kThreads * i) >> 3];
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[mt][nt][q] = 0.0f;

  auto issue = [&](int slot, int k0) {
#pragma unroll
    for (int i = 0; i < kAChunks; ++i) {
      const int idx = tid + kThreads * i, row = idx >> 3, c = idx & 7;
      const bool ok = ap[i] != nullptr && k0 + 8 * c < in;
      cp_async16(As + slot * (BM * BK) + sw(row, c), ok ? ap[i] + k0 + 8 * c : static_cast<const void*>(o.w),
                 ok ? 16 : 0);
    }
    if constexpr (F == WeightFormat::Dense) {
#pragma unroll
      for (int i = 0; i < BN * 8 / kThreads; ++i) {
        const int idx = tid + kThreads * i, row = idx >> 3, c = idx & 7;
        const bool ok = o.n0 + row < o.out && k0 + 8 * c < in;
        cp_async16(Bs + slot * (BN * BK) + sw(row, c), ok ? o.w + (o.n0 + row) * o.rb + (k0 + 8 * c) * 2 : o.w,
                   ok ? 16 : 0);
      }
    } else if constexpr (AW) {
      issue_raw_w<F>(raw + slot * C::kRawStage, o, k0);
    }
  };
  // The slice's mma work: A slice `A` x decoded W slice `B` into acc.
  auto mma_slice = [&](const uint16_t* A, const uint16_t* B) {
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t b[4][2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        uint32_t r[4];
        ldmatrix_x4(r, B + sw(wn + 16 * j + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
        b[2 * j][0] = r[0];
        b[2 * j][1] = r[1];
        b[2 * j + 1][0] = r[2];
        b[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt) {
        uint32_t a[4];
        ldmatrix_x4(a, A + sw(wm + 16 * mt + (lane & 15), 2 * kk + (lane >> 4)));
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma_bf16_16816(acc[mt][nt], a, b[nt][0], b[nt][1]);
      }
    }
  };

#pragma unroll
  for (int s = 0; s < R - 1; ++s) {
    if (s < KT) issue(s, kb + s * BK);
    cp_async_commit();  // empty groups keep the wait counts uniform
  }
  if constexpr (AW) {
    for (int kt = 0; kt < KT; ++kt) {
      cp_async_wait<R - 2>();
      __syncthreads();  // slice kt (A and raw W) visible; every warp is done with slice kt - 1
      {
        const int nk = kt + R - 1;  // into the slot slice kt - 1 left
        if (nk < KT) issue(nk % R, kb + nk * BK);
        cp_async_commit();
      }
      WRegs<F> wr;
      load_w_raw(wr, raw + (kt % R) * C::kRawStage);
      store_w(wr, Bs);
      __syncthreads();  // the decoded slice visible
      mma_slice(As + (kt % R) * (BM * BK), Bs);
    }
    cp_async_wait<0>();
    return;
  }
  [[maybe_unused]] WRegs<F> wr;
  if constexpr (F != WeightFormat::Dense) {
    load_w(wr, o, kb);
    store_w(wr, Bs);
    if (KT > 1) load_w(wr, o, kb + BK);
  }

  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // slice kt of A (and W) visible; every warp is done with slice kt - 1
    {
      const int nk = kt + kStages - 1;
      if (nk < KT) issue(nk % kStages, kb + nk * BK);
      cp_async_commit();
    }
    mma_slice(As + (kt % kStages) * (BM * BK),
              Bs + (F == WeightFormat::Dense ? kt % kStages : kt & 1) * (BN * BK));
    if constexpr (F != WeightFormat::Dense) {
      if (kt + 1 < KT) {
        store_w(wr, Bs + ((kt + 1) & 1) * (BN * BK));
        if (kt + 2 < KT) load_w(wr, o, kb + (kt + 2) * BK);
      }
    }
  }
  cp_async_wait<0>();
}

// Writes the block tile: element (r, c) -> y[yrow[r] * out + n0 + c] (rows with yrow < 0 and
// columns >= out skipped), value acc * post, relu² applied after scaling when `relu2`; BF16
// (rounded once) or fp32. `pairs`: out is even and y aligned to two elements, so column pairs
// are stored as one word.
template <int BM>
__device__ __forceinline__ void gemm_store(const float (&acc)[BM / 32][4][4], const int32_t* yrow, void* y, bool y_f32,
                                           bool pairs, int out, int n0, float post, bool relu2) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp >> 2) * (BM / 2), wn = (warp & 3) * 32;
#pragma unroll
  for (int mt = 0; mt < BM / 32; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int yr = yrow[wm + 16 * mt + (lane >> 2) + 8 * h];
      if (yr < 0) continue;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int c = n0 + wn + 8 * nt + 2 * (lane & 3);
        if (c >= out) continue;
        float v0 = acc[mt][nt][2 * h] * post, v1 = acc[mt][nt][2 * h + 1] * post;
        if (relu2) {
          v0 = v0 > 0.0f ? v0 * v0 : 0.0f;
          v1 = v1 > 0.0f ? v1 * v1 : 0.0f;
        }
        const int64_t off = static_cast<int64_t>(yr) * out + c;
        if (y_f32) {
          float* p = static_cast<float*>(y) + off;
          if (pairs) {
            *reinterpret_cast<float2*>(p) = make_float2(v0, v1);
          } else {
            p[0] = v0;
            if (c + 1 < out) p[1] = v1;
          }
        } else {
          uint16_t* p = static_cast<uint16_t*>(y) + off;
          if (pairs) {
            *reinterpret_cast<uint32_t*>(p) = f2bf(v0) | (static_cast<uint32_t>(f2bf(v1)) << 16);
          } else {
            p[0] = f2bf(v0);
            if (c + 1 < out) p[1] = f2bf(v1);
          }
        }
      }
    }
}

}  // namespace nemotron::kernels::cuda::gemm
