#pragma once
// GEMV cores shared by the decode linear (linear_gemv.cu) and the routed experts (moe.cu).
//
// 1. gemv_row: warp per output row on the CUDA cores (the fallback when x does not fit in
//    shared memory, and LinearPath::GemvWarpRow). Each lane streams 16-byte chunks of the stored row (coalesced: lane l reads chunk
// l, l+32, ...), kUnroll chunks issued before any is used so that enough bytes are in flight;
// each decoded chunk is multiplied with all NT rows of x (read through L1, 16 bytes at a
// time), so the weight is read once for the whole batch.
#include "kernels/cuda/dequant.cuh"

namespace nemotron::kernels::cuda {

constexpr int kWarps = 8;   // rows per block
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ uint4 ldg_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// One warp computes y[t, row] for t < T (T <= NT); `relu2` squares the positive part.
// `wait()` (idempotent: PDL's wait for the previous kernel) runs after the first weight loads
// are issued and before x is read or y written, so that the loads overlap the previous
// kernel's tail: the weights are never written during a step.
template <WeightFormat F, int NT, class Wait>
__device__ __forceinline__ void gemv_row(const uint8_t* __restrict__ wdata, const uint8_t* __restrict__ wscale,
                                         float scale, const uint16_t* __restrict__ x, int T, int in, int out,
                                         void* __restrict__ y, bool y_f32, int row, bool relu2, Wait&& wait) {
  using D = Fmt<F>;
  constexpr int E = D::kElems;
  const int lane = threadIdx.x & 31;
  const int nvec = static_cast<int>(row_bytes(F, in) / 16);
  const uint4* wrow = reinterpret_cast<const uint4*>(wdata + static_cast<int64_t>(row) * row_bytes(F, in));
  const uint16_t* srow = F == WeightFormat::NVFP4 ? reinterpret_cast<const uint16_t*>(wscale + static_cast<int64_t>(row) * (in / 16)) : nullptr;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;

  for (int v0 = lane; v0 < nvec; v0 += 32 * kUnroll) {
    uint4 wv[kUnroll];
    uint16_t sv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + 32 * u;
      wv[u] = v < nvec ? ldg_stream(wrow + v) : make_uint4(0, 0, 0, 0);
      sv[u] = 0;
      if constexpr (F == WeightFormat::NVFP4) sv[u] = v < nvec ? __ldg(srow + v) : uint16_t{0};
    }
    if (v0 == lane) wait();
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + 32 * u;
      if (v >= nvec) break;
      // NVFP4: the 2^14-scaled e2m1 values are summed per 16-element block and the block
      // scale is applied to the partial sum (one multiply per block, not per element).
      constexpr int G = F == WeightFormat::NVFP4 ? 2 : 1;
      float wf[E], gs[G];
      if constexpr (F == WeightFormat::NVFP4) {
        Fmt<WeightFormat::NVFP4>::decode_raw(wv[u], wf);
        gs[0] = e4m3_to_float(static_cast<uint8_t>(sv[u] & 0xFF)) * 16384.0f;
        gs[G - 1] = e4m3_to_float(static_cast<uint8_t>(sv[u] >> 8)) * 16384.0f;
      } else {
        D::decode(wv[u], sv[u], wf);
        gs[0] = 1.0f;
      }
      const int k0 = v * E;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t >= T) break;
        const uint4* xp = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(t) * in + k0);
#pragma unroll
        for (int gi = 0; gi < G; ++gi) {
          float s = 0.0f;
#pragma unroll
          for (int jj = 0; jj < E / 8 / G; ++jj) {
            const int j = gi * (E / 8 / G) + jj;
            const uint4 xv = __ldg(xp + j);
            s = fmaf(wf[8 * j + 0], bf16lo(xv.x), s);
            s = fmaf(wf[8 * j + 1], bf16hi(xv.x), s);
            s = fmaf(wf[8 * j + 2], bf16lo(xv.y), s);
            s = fmaf(wf[8 * j + 3], bf16hi(xv.y), s);
            s = fmaf(wf[8 * j + 4], bf16lo(xv.z), s);
            s = fmaf(wf[8 * j + 5], bf16hi(xv.z), s);
            s = fmaf(wf[8 * j + 6], bf16lo(xv.w), s);
            s = fmaf(wf[8 * j + 7], bf16hi(xv.w), s);
          }
          acc[t] = G == 1 ? acc[t] + s : fmaf(s, gs[gi], acc[t]);
        }
      }
    }
  }
  wait();  // lanes past the last 16-byte chunk never entered the loop
  const float post = post_scale(F, scale);
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = warp_sum(acc[t]) * post;
    if (relu2) s = s > 0.0f ? s * s : 0.0f;
    if (lane == t && t < T) {
      const int64_t o = static_cast<int64_t>(t) * out + row;
      if (y_f32) static_cast<float*>(y)[o] = s;
      else static_cast<uint16_t*>(y)[o] = f2bf(s);
    }
  }
}

// 2. The tensor-core GEMV (the default). A block owns a tile of 16 output rows; its warps split
// the tile's K range (super-steps round-robin) and their partial sums are added in warp order
// (deterministic). Per super-step a warp reads, for each of its 16 rows, 4 consecutive 16-byte
// chunks (lane 4g+t: rows g and g+8, chunk t: coalesced 64-byte runs), decodes them to BF16
// in registers (dequant.cuh, MmaFmt) and issues m16n8k16 BF16 mmas with fp32 accumulation:
// A = the 16 weight rows, B = up to 8 rows of x (column n = token n, read from shared memory,
// staged once per block), so T = 1..8 costs the same weight traffic and instructions. The
// mma chain of one super-step (at most 8 mmas, 128 k) is added to fp32 accumulators.
constexpr int kTileRows = 16;
constexpr int kMmaMaxWarps = 16;
constexpr int kAhead = 2;  // super-steps per warp per load batch (two batches in flight)

// Shared-memory x: row n (token) of `xs_stride(in)` 16-byte units; unit u (8 elements, in the
// format's pair order) of row n sits at n * stride + (u ^ xs_swizzle(n, u)). The swizzle puts
// the 8 lanes of each quarter-warp 16-byte load (tokens 2p, 2p+1; chunks t = 0..3) on 8
// distinct 16-byte bank groups; it only permutes units inside aligned groups of 8, so the
// stride is padded to a multiple of 8 units.
__host__ __device__ inline int xs_stride(int in) { return ((in / 8 + 7) / 8) * 8; }

template <WeightFormat F>
__device__ __forceinline__ int xs_swizzle(int n, int u) {
  if constexpr (F == WeightFormat::NVFP4) return ((u >> 3) & 1) | ((n & 1) << 1);
  else if constexpr (F == WeightFormat::FP8) return n & 1;
  else return (n & 1) << 2;
}

template <WeightFormat F>
__host__ __device__ inline int64_t mma_smem_bytes(int64_t T, int64_t in, int warps) {
  return T * xs_stride(static_cast<int>(in)) * 16 + int64_t{warps} * 4 * 32 * 4;
}

// All threads of the block: x rows n < T (BF16, global; row n at row(n), 16-byte aligned,
// `in` elements) -> shared memory.
template <WeightFormat F, class RowPtr>
__device__ __forceinline__ void stage_x_rows(RowPtr&& row, int T, int in, uint4* xs) {
  const int units = in / 8, stride = xs_stride(in), total = T * units;
  constexpr int kBatch = 4;  // loads issued before the first store
  for (int i0 = threadIdx.x; i0 < total; i0 += kBatch * blockDim.x) {
    uint4 v[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = i0 + j * blockDim.x, n = i / units, u = i - n * units;
      v[j] = i < total ? __ldg(reinterpret_cast<const uint4*>(row(n)) + u) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = i0 + j * blockDim.x, n = i / units, u = i - n * units;
      if (i < total) xs[n * stride + (u ^ xs_swizzle<F>(n, u))] = MmaFmt<F>::stage_unit(v[j]);
    }
  }
}

// All threads of the block: x rows [T, in] (BF16, global, contiguous) -> shared memory.
template <WeightFormat F>
__device__ __forceinline__ void stage_x(const uint16_t* __restrict__ x, int T, int in, uint4* xs) {
  stage_x_rows<F>([&](int n) { return x + static_cast<int64_t>(n) * in; }, T, in, xs);
}

// One super-step of a warp's tile (mma_tile's layout): chunk c of rows g (va, block scales qa)
// and g + 8 (vc, qc), decoded to BF16 and multiplied with the staged x (xrow: token g's row,
// read where has_b and c < nchunk); the step's mma sum is added to acc. All lanes (mma).
template <WeightFormat F>
__device__ __forceinline__ void mma_super_step(const uint4& va, const uint4& vc, uint16_t qa, uint16_t qc, int c,
                                               int nchunk, bool has_b, const uint4* xrow, int g, float (&acc)[4]) {
  using D = MmaFmt<F>;
  constexpr int U = D::kE / 8;
  uint32_t sca[2] = {0, 0}, scc[2] = {0, 0};
  D::prep_scale(qa, sca);
  D::prep_scale(qc, scc);
  float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int w = 0; w < U; ++w) {
    uint32_t ra4[4], rc4[4];
    D::unit(va, sca, w, ra4);
    D::unit(vc, scc, w, rc4);
    uint4 b = make_uint4(0, 0, 0, 0);
    if (has_b && c < nchunk) {
      const int u = c * U + w;
      b = xrow[u ^ xs_swizzle<F>(g, u)];
    }
    const uint32_t a0[4] = {ra4[0], rc4[0], ra4[1], rc4[1]};
    const uint32_t a1[4] = {ra4[2], rc4[2], ra4[3], rc4[3]};
    mma_bf16_16816(part, a0, b.x, b.y);
    mma_bf16_16816(part, a1, b.z, b.w);
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) acc[j] += part[j];
}

// A lane's share of a 16-row tile (mma_tile's layout): lane 4g+t reads chunks t, t + 4, ... of
// rows g and g + 8 (clamped to out - 1: read, never stored) and, for NVFP4, their block scales;
// token g's staged x row is its mma B column (has_b: g < T).
template <WeightFormat F>
struct TileLanes {
  int lane, g, t, nchunk, nsteps;
  const uint4* wa;
  const uint4* wc;
  const uint16_t* sa = nullptr;
  const uint16_t* sc = nullptr;
  bool has_b;
  const uint4* xrow;
  __device__ __forceinline__ TileLanes(const uint8_t* __restrict__ wdata, const uint8_t* __restrict__ wscale, int in,
                                       int out, int row0, const uint4* xs, int T) {
    lane = threadIdx.x & 31;
    g = lane >> 2;
    t = lane & 3;
    nchunk = in / MmaFmt<F>::kE;
    nsteps = (nchunk + 3) / 4;
    const int stride = xs_stride(in);
    const int64_t rb = row_bytes(F, in);
    const int ra = min(row0 + g, out - 1), rc = min(row0 + g + 8, out - 1);
    wa = reinterpret_cast<const uint4*>(wdata + ra * rb);
    wc = reinterpret_cast<const uint4*>(wdata + rc * rb);
    if constexpr (F == WeightFormat::NVFP4) {
      sa = reinterpret_cast<const uint16_t*>(wscale + static_cast<int64_t>(ra) * (in / 16));
      sc = reinterpret_cast<const uint16_t*>(wscale + static_cast<int64_t>(rc) * (in / 16));
    }
    has_b = g < T;
    xrow = xs + g * stride;
  }
};

// One warp's share of a 16-row tile: super-steps warp, warp + nwarps, ... Returns the fp32
// partial sums acc[j] of lane 4g+t: j = 0, 1: row g, tokens 2t, 2t+1; j = 2, 3: row g+8.
// Rows past `out` are clamped (read, never stored); chunks past `in` count as zeros.
// `stage()` (all threads: x into shared memory, then a barrier) runs after the warp's first
// weight loads are issued, so that staging overlaps their latency.
template <WeightFormat F, class Stage>
__device__ __forceinline__ void mma_tile(const uint8_t* __restrict__ wdata, const uint8_t* __restrict__ wscale,
                                         int in, int out, int row0, const uint4* xs, int T, int warp, int nwarps,
                                         Stage&& stage, float (&acc)[4]) {
  const TileLanes<F> L(wdata, wscale, in, out, row0, xs, T);
#pragma unroll
  for (int j = 0; j < 4; ++j) acc[j] = 0.0f;

  // Two register buffers of kAhead super-steps: the loads of the next batch are in flight
  // while the current one is decoded and multiplied.
  uint4 va0[kAhead], vc0[kAhead], va1[kAhead], vc1[kAhead];
  uint16_t qa0[kAhead], qc0[kAhead], qa1[kAhead], qc1[kAhead];
  auto load = [&](uint4 (&va)[kAhead], uint4 (&vc)[kAhead], uint16_t (&qa)[kAhead], uint16_t (&qc)[kAhead], int s0) {
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      const int c = (s0 + i * nwarps) * 4 + L.t;
      const bool ok = c < L.nchunk;
      va[i] = ok ? ldg_stream(L.wa + c) : make_uint4(0, 0, 0, 0);
      vc[i] = ok ? ldg_stream(L.wc + c) : make_uint4(0, 0, 0, 0);
      qa[i] = qc[i] = 0;
      if constexpr (F == WeightFormat::NVFP4) {
        qa[i] = ok ? __ldg(L.sa + c) : uint16_t{0};
        qc[i] = ok ? __ldg(L.sc + c) : uint16_t{0};
      }
    }
  };
  auto compute = [&](const uint4 (&va)[kAhead], const uint4 (&vc)[kAhead], const uint16_t (&qa)[kAhead],
                     const uint16_t (&qc)[kAhead], int s0) {
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      const int s = s0 + i * nwarps;
      if (s >= L.nsteps) break;  // warp-uniform: the mma needs every lane
      mma_super_step<F>(va[i], vc[i], qa[i], qc[i], s * 4 + L.t, L.nchunk, L.has_b, L.xrow, L.g, acc);
    }
  };
  const int batch = nwarps * kAhead;
  load(va0, vc0, qa0, qc0, warp);
  stage();
  for (int s0 = warp; s0 < L.nsteps; s0 += 2 * batch) {
    load(va1, vc1, qa1, qc1, s0 + batch);
    compute(va0, vc0, qa0, qc0, s0);
    if (s0 + batch >= L.nsteps) break;
    load(va0, vc0, qa0, qc0, s0 + 2 * batch);
    compute(va1, vc1, qa1, qc1, s0 + batch);
  }
}

// mma_tile with the weights travelling by cp.async through a ring of kDepth super-steps in the
// warp's own shared memory (kDepth - 1 super-steps in flight per lane) instead of two register
// batches of kAhead: more bytes in flight per warp at no register cost, for tiles whose warps
// are too few per SM to cover the memory latency with mma_tile's two batches (routed experts at
// decode sizes: ~16 warps per SM, bench/RESULTS.md). Same super-steps, same arithmetic in the
// same order: the same bits as mma_tile.
// Slot layout (mma_ring_slot_bytes): [2 rows: g, g + 8][32 lanes] 16-byte chunks (a quarter-warp
// reads 128 contiguous bytes: no bank conflict), then for NVFP4 [2][8 row groups] 8 bytes: the
// block scales of the 4 chunks of the row group (lane 4g + t's at byte 2t), copied 4 bytes at a
// time by the even lanes, so scale rows must be 4-byte aligned: NVFP4 needs in % 64 == 0
// (mma_ring_fits).
template <WeightFormat F>
__host__ __device__ constexpr int mma_ring_slot_bytes() {
  return 2 * 32 * 16 + (F == WeightFormat::NVFP4 ? 2 * 8 * 8 : 0);
}
template <WeightFormat F>
__host__ __device__ inline bool mma_ring_fits(int64_t in) {
  return F != WeightFormat::NVFP4 || in % 64 == 0;
}

template <WeightFormat F, int kDepth, class Stage>
__device__ __forceinline__ void mma_tile_ring(const uint8_t* __restrict__ wdata, const uint8_t* __restrict__ wscale,
                                              int in, int out, int row0, const uint4* xs, int T, int warp, int nwarps,
                                              Stage&& stage, float (&acc)[4], uint8_t* ring) {
  static_assert(kDepth >= 2, "a ring of at least 2 super-steps");
  constexpr int kSlot = mma_ring_slot_bytes<F>();
  const TileLanes<F> L(wdata, wscale, in, out, row0, xs, T);
#pragma unroll
  for (int j = 0; j < 4; ++j) acc[j] = 0.0f;
  const int steps = warp < L.nsteps ? (L.nsteps - warp + nwarps - 1) / nwarps : 0;  // this warp's super-steps
  // Super-step i of this warp (s = warp + i * nwarps) into slot i % kDepth; one commit group
  // per super-step (empty past the last), so that group i is complete after wait<kDepth - 1>
  // at iteration i. Chunks past `in` are zero-filled (and count as zeros, as in mma_tile).
  auto issue = [&](int i, uint8_t* slot) {
    if (i < steps) {
      const int c = (warp + i * nwarps) * 4 + L.t;
      const bool ok = c < L.nchunk;
      cp_async16(slot + L.lane * 16, ok ? L.wa + c : L.wa, ok ? 16 : 0);
      cp_async16(slot + 512 + L.lane * 16, ok ? L.wc + c : L.wc, ok ? 16 : 0);
      if constexpr (F == WeightFormat::NVFP4) {
        if ((L.t & 1) == 0) {  // nchunk is even (in % 64 == 0): chunk c + 1 exists where c does
          cp_async4(slot + 1024 + L.g * 8 + L.t * 2, ok ? L.sa + c : L.sa, ok ? 4 : 0);
          cp_async4(slot + 1024 + 64 + L.g * 8 + L.t * 2, ok ? L.sc + c : L.sc, ok ? 4 : 0);
        }
      }
    }
    cp_async_commit();
  };
  int fill = 0;  // slot of super-step i + kDepth - 1
  for (int i = 0; i < kDepth - 1; ++i, ++fill) issue(i, ring + fill * kSlot);
  stage();
  int use = 0;  // slot of super-step i
  for (int i = 0; i < steps; ++i) {
    __syncwarp();  // every lane is past its reads of the slot refilled now (super-step i - 1's)
    issue(i + kDepth - 1, ring + fill * kSlot);
    fill = fill + 1 == kDepth ? 0 : fill + 1;
    cp_async_wait<kDepth - 1>();
    __syncwarp();  // the scale pairs copied by the even lanes are visible to the odd ones
    const uint8_t* slot = ring + use * kSlot;
    use = use + 1 == kDepth ? 0 : use + 1;
    const uint4 va = *reinterpret_cast<const uint4*>(slot + L.lane * 16);
    const uint4 vc = *reinterpret_cast<const uint4*>(slot + 512 + L.lane * 16);
    uint16_t qa = 0, qc = 0;
    if constexpr (F == WeightFormat::NVFP4) {
      qa = *reinterpret_cast<const uint16_t*>(slot + 1024 + L.g * 8 + L.t * 2);
      qc = *reinterpret_cast<const uint16_t*>(slot + 1024 + 64 + L.g * 8 + L.t * 2);
    }
    mma_super_step<F>(va, vc, qa, qc, (warp + i * nwarps) * 4 + L.t, L.nchunk, L.has_b, L.xrow, L.g, acc);
  }
  cp_async_wait<0>();  // no copy outlives the tile (the caller may reuse the ring)
}

// Adds the warps' partial sums in warp order (red: 4 * 32 floats per warp of shared memory)
// and calls put(n, row, act(sum * post)) for the tile's rows < out and tokens n < T (threads
// 0..127, one value each). Ends with every thread past a barrier; called by all threads of
// the block.
template <class Put>
__device__ __forceinline__ void mma_tile_reduce(const float (&acc)[4], float* red, int row0, int out, int T,
                                                float post, bool relu2, Put&& put) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int j = 0; j < 4; ++j) red[(warp * 4 + j) * 32 + lane] = acc[j];
  __syncthreads();
  if (threadIdx.x < 128) {
    const int j = threadIdx.x >> 5;
    float s = 0.0f;
    for (int w = 0; w < nwarps; ++w) s += red[(w * 4 + j) * 32 + lane];
    s *= post;
    if (relu2) s = s > 0.0f ? s * s : 0.0f;
    const int row = row0 + (lane >> 2) + (j >= 2 ? 8 : 0), n = 2 * (lane & 3) + (j & 1);
    if (row < out && n < T) put(n, row, s);
  }
}

// mma_tile_reduce storing y[n, row] (row stride y_row_stride elements, BF16 or fp32).
__device__ __forceinline__ void mma_tile_store(const float (&acc)[4], float* red, int row0, int out, int T,
                                               float post, bool relu2, void* __restrict__ y, bool y_f32,
                                               int64_t y_row_stride) {
  mma_tile_reduce(acc, red, row0, out, T, post, relu2, [&](int n, int row, float s) {
    const int64_t o = n * y_row_stride + row;
    if (y_f32) static_cast<float*>(y)[o] = s;
    else static_cast<uint16_t*>(y)[o] = f2bf(s);
  });
}

// Warps per block (4, 8 or 16) for `blocks` blocks over a K range of `nsteps` super-steps:
// the most warps (more loads in flight per tile) with which every block is resident at once
// (resident(w) = blocks per SM at w warps; no tail wave), else 4 (many waves: the steady state
// keeps the memory busy); never more warps than super-steps.
template <class Resident>
inline int mma_warps(int64_t blocks, int nsteps, int sms, Resident&& resident) {
  int best = 4;
  for (int w = 8; w <= kMmaMaxWarps && w <= nsteps; w *= 2)
    if (blocks <= int64_t{sms} * resident(w)) best = w;
  if (blocks > int64_t{sms} * resident(best)) best = 4;
  return best;
}

}  // namespace nemotron::kernels::cuda
