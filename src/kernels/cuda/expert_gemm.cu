// Grouped routed-expert GEMM (expert_gemm_cuda.h).
//
// 1. bucket_kernel (one block): histogram of the pairs' expert ids, exclusive scans into
//    per-expert pair offsets and per-expert row-tile offsets, the pair list sorted by expert
//    (order within an expert is arbitrary), and the tile table (expert, first pair) of every
//    64-pair row tile. Pairs with a bad id get their NaN output row here.
// 2. gemm_kernel: grid (out / 64, bound on the tiles = ceil(N / 64) + E); block j takes tile
//    j of the table (blocks past the real count exit), gathers its pairs' x rows, decodes the
//    expert's 64 x 32 weight tiles to BF16 in shared memory and multiplies on the BF16 tensor
//    cores (wmma 16x16x16, fp32 accumulation), then scatters the rows to their pairs.
//
// Workspace (int32): counts [E] | offsets [E + 1] | tile_offsets [E + 1] | pairs [N] |
// tile_expert [tiles] | tile_start [tiles] | total [1].
#include <cuda_bf16.h>
#include <mma.h>

#include <string>

#include "kernels/cuda/dequant.cuh"
#include "kernels/expert_gemm_cuda.h"

namespace nemotron::kernels {
namespace {

using namespace cuda;

constexpr int BM = static_cast<int>(kExpertGemmTileRows), BN = 64, BK = 64, LDS = BK + 8, LDC = BN + 4, kThreads = 128;
constexpr int kBucketThreads = 1024, kMaxExperts = 4096;

struct Workspace {
  int32_t *counts, *offsets, *tile_off, *pairs, *tile_expert, *tile_start, *total;
};

int64_t max_tiles(int64_t N, int64_t E) { return (N + BM - 1) / BM + E; }

Workspace carve(void* base, int64_t N, int64_t E) {
  int32_t* p = static_cast<int32_t*>(base);
  const int64_t tiles = max_tiles(N, E);
  Workspace w;
  w.counts = p;
  w.offsets = w.counts + E;
  w.tile_off = w.offsets + E + 1;
  w.pairs = w.tile_off + E + 1;
  w.tile_expert = w.pairs + N;
  w.tile_start = w.tile_expert + tiles;
  w.total = w.tile_start + tiles;
  return w;
}

// Exclusive scan of v[0..n) into out[0..n] (out[n] = total) by warp 0; n <= kMaxExperts.
__device__ void warp0_scan(const int32_t* v, int n, int32_t* out) {
  const int lane = threadIdx.x & 31;
  if (threadIdx.x >= 32) return;
  const int per = (n + 31) / 32, lo = min(n, lane * per), hi = min(n, lo + per);
  int32_t sum = 0;
  for (int i = lo; i < hi; ++i) sum += v[i];
  int32_t incl = sum;
  for (int o = 1; o < 32; o <<= 1) {
    const int32_t t = __shfl_up_sync(0xFFFFFFFFu, incl, o);
    if (lane >= o) incl += t;
  }
  int32_t run = incl - sum;
  for (int i = lo; i < hi; ++i) {
    out[i] = run;
    run += v[i];
  }
  if (lane == 31) out[n] = incl;
}

__global__ void __launch_bounds__(kBucketThreads) bucket_kernel(const int32_t* __restrict__ ids, int N, int E,
                                                                int out_cols, uint16_t* __restrict__ y,
                                                                Workspace ws) {
  __shared__ int32_t cnt[kMaxExperts], tiles[kMaxExperts], cursor[kMaxExperts];
  pdl_wait();
  for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < N; i += blockDim.x) {
    const int32_t e = ids[i];
    if (e >= 0 && e < E) atomicAdd(&cnt[e], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    tiles[e] = (cnt[e] + BM - 1) / BM;
    ws.counts[e] = cnt[e];
  }
  __syncthreads();
  warp0_scan(cnt, E, ws.offsets);
  __syncthreads();
  warp0_scan(tiles, E, ws.tile_off);
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) cursor[e] = ws.offsets[e];
  if (threadIdx.x == 0) *ws.total = ws.tile_off[E];
  __syncthreads();
  for (int i = threadIdx.x; i < N; i += blockDim.x) {
    const int32_t e = ids[i];
    if (e >= 0 && e < E) {
      ws.pairs[atomicAdd(&cursor[e], 1)] = i;
    } else {
      for (int c = 0; c < out_cols; ++c) y[static_cast<int64_t>(i) * out_cols + c] = 0x7FC0;  // NaN: a bad id must show
    }
  }
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    const int32_t first = ws.tile_off[e], n = ws.tile_off[e + 1] - first;
    for (int t = 0; t < n; ++t) {
      ws.tile_expert[first + t] = e;
      ws.tile_start[first + t] = ws.offsets[e] + t * BM;
    }
  }
}

// Global -> register staging of one BK = 64 slice: kA uint4 of gathered x rows and kW uint4 of
// weight (+ NVFP4 block scales) per thread, loaded one slice ahead of the tensor-core work.
template <WeightFormat F>
struct Stage {
  static constexpr int kA = BM * BK / 8 / kThreads;                                       // 4
  static constexpr int kW = F == WeightFormat::Dense ? 4 : F == WeightFormat::FP8 ? 2 : 1;  // uint4 per thread
  uint4 a[kA];
  uint4 w[kW];
  uint16_t s;  // NVFP4: the two E4M3 block scales of w[0]
};

template <WeightFormat F>
__device__ __forceinline__ void load_stage(Stage<F>& st, const ExpertGemvArgs& a, const int32_t* rows_pair,
                                           const uint8_t* wdata, const uint8_t* wscale, int64_t rb, int in, int out,
                                           int n0, int k0) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int r = 0; r < Stage<F>::kA; ++r) {
    const int idx = tid + kThreads * r, row = idx >> 3, c = idx & 7;
    const int p = rows_pair[row];
    st.a[r] = make_uint4(0, 0, 0, 0);
    if (p >= 0 && k0 + 8 * c < in) {  // in % 32 == 0: the last slice may be half wide
      const int64_t xr = a.x_per_slot ? p : p / a.k;
      st.a[r] = __ldg(reinterpret_cast<const uint4*>(a.x + xr * in + k0) + c);
    }
  }
  // uint4 per weight row of the slice, and the elements each covers.
  constexpr int elems = F == WeightFormat::Dense ? 8 : F == WeightFormat::FP8 ? 16 : 32, per_row = BK / elems;
#pragma unroll
  for (int r = 0; r < Stage<F>::kW; ++r) {
    const int idx = tid + kThreads * r, row = idx / per_row, c = idx % per_row;
    st.w[r] = make_uint4(0, 0, 0, 0);
    if (n0 + row < out && k0 + elems * c < in) {
      const int64_t off = (n0 + row) * rb + (F == WeightFormat::Dense ? k0 * 2 : F == WeightFormat::FP8 ? k0 : k0 / 2);
      st.w[r] = __ldg(reinterpret_cast<const uint4*>(wdata + off) + c);
    }
  }
  if constexpr (F == WeightFormat::NVFP4) {
    const int row = tid / per_row, c = tid % per_row;
    st.s = n0 + row < out && k0 + elems * c < in ? __ldg(reinterpret_cast<const uint16_t*>(wscale + static_cast<int64_t>(n0 + row) * (in / 16) +
                                                                     k0 / 16) + c)
                          : uint16_t{0};
  }
}

template <WeightFormat F>
__device__ __forceinline__ void store_stage(const Stage<F>& st, uint16_t* As, uint16_t* Bs) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int r = 0; r < Stage<F>::kA; ++r) {
    const int idx = tid + kThreads * r, row = idx >> 3, c = idx & 7;
    *reinterpret_cast<uint4*>(As + row * LDS + c * 8) = st.a[r];
  }
  if constexpr (F == WeightFormat::Dense) {
#pragma unroll
    for (int r = 0; r < Stage<F>::kW; ++r) {
      const int idx = tid + kThreads * r, row = idx >> 3, c = idx & 7;
      *reinterpret_cast<uint4*>(Bs + row * LDS + c * 8) = st.w[r];
    }
  } else if constexpr (F == WeightFormat::FP8) {
#pragma unroll
    for (int r = 0; r < Stage<F>::kW; ++r) {
      const int idx = tid + kThreads * r, row = idx >> 2, c = idx & 3;
      float f[16];
      Fmt<F>::decode(st.w[r], 0, f);
      store_bf16(Bs + row * LDS + c * 16, f);
    }
  } else {
    const int row = tid >> 1, c = tid & 1;
    float f[32];
    Fmt<F>::decode(st.w[0], st.s, f);
    store_bf16(Bs + row * LDS + c * 32, f);
  }
}

template <WeightFormat F>
__global__ void __launch_bounds__(kThreads) gemm_kernel(ExpertGemvArgs a, Workspace ws) {
  using namespace nvcuda;
  // As/Bs (the current slice) and Cs (the epilogue) are never live at once.
  __shared__ __align__(32) unsigned char smem[sizeof(float) * BM * LDC > 2 * sizeof(uint16_t) * BM * LDS
                                                   ? sizeof(float) * BM * LDC
                                                   : 2 * sizeof(uint16_t) * BM * LDS];
  __shared__ int32_t rows_pair[BM];
  uint16_t* As = reinterpret_cast<uint16_t*>(smem);
  uint16_t* Bs = As + BM * LDS;
  float* Cs = reinterpret_cast<float*>(smem);
  pdl_wait();
  const int j = blockIdx.y;
  if (j >= *ws.total) return;
  const int e = ws.tile_expert[j], start = ws.tile_start[j];
  const int nrows = min(BM, ws.offsets[e + 1] - start);
  const int tid = threadIdx.x, warp = tid >> 5;
  const int n0 = blockIdx.x * BN;
  const int out = static_cast<int>(a.w.out), in = static_cast<int>(a.w.in);
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  const int64_t rb = row_bytes(F, in);
  const uint8_t* wdata = static_cast<const uint8_t*>(a.w.data[e]);
  const uint8_t* wscale = F == WeightFormat::NVFP4 ? a.w.block_scale[e] : nullptr;
  if (tid < BM) rows_pair[tid] = tid < nrows ? ws.pairs[start + tid] : -1;
  __syncthreads();

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) wmma::fill_fragment(acc[i][jj], 0.0f);

  // Slices of BK = 64; with in % 64 == 32 the last one is zero-filled past `in` (load_stage).
  Stage<F> st;
  load_stage(st, a, rows_pair, wdata, wscale, rb, in, out, n0, 0);
  for (int k0 = 0; k0 < in; k0 += BK) {
    store_stage(st, As, Bs);
    __syncthreads();
    if (k0 + BK < in) load_stage(st, a, rows_pair, wdata, wscale, rb, in, out, n0, k0 + BK);
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(fa[i], reinterpret_cast<const __nv_bfloat16*>(As + (wm + 16 * i) * LDS + kk), LDS);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj)
        wmma::load_matrix_sync(fb[jj], reinterpret_cast<const __nv_bfloat16*>(Bs + (wn + 16 * jj) * LDS + kk), LDS);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) wmma::mma_sync(acc[i][jj], fa[i], fb[jj], acc[i][jj]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * LDC + wn + 16 * jj, acc[i][jj], LDC, wmma::mem_row_major);
  __syncthreads();
  const float post = post_scale(F, a.w.scale ? a.w.scale[e] : 1.0f);
  for (int idx = tid; idx < BM * BN; idx += kThreads) {
    const int r = idx / BN, c = idx % BN;
    if (r >= nrows || n0 + c >= out) continue;
    float v = Cs[r * LDC + c] * post;
    if (a.relu2) v = v > 0.0f ? v * v : 0.0f;
    a.y[static_cast<int64_t>(rows_pair[r]) * out + n0 + c] = f2bf(v);
  }
}

}  // namespace

void expert_gemm_cuda(const ExpertGemvArgs& a, void* workspace, int64_t workspace_bytes, cudaStream_t stream) {
  const ExpertTable& w = a.w;
  require(w.experts >= 1 && w.experts <= kMaxExperts && w.out >= 1 && w.in >= 1 && w.in % 32 == 0 &&
              w.out < (1 << 30) && w.in < (1 << 30),
          "expert_gemm_cuda: bad expert shape (1 <= E <= 4096, in % 32 == 0)");
  require(a.T >= 0 && a.k >= 1 && a.T * a.k < (int64_t{1} << 30), "expert_gemm_cuda: bad T or k");
  if (a.T == 0) return;
  require(w.data && a.ids && a.x && a.y && (w.format != WeightFormat::NVFP4 || w.block_scale) && workspace,
          "expert_gemm_cuda: null pointer");
  require(aligned16(a.x) && aligned16(workspace), "expert_gemm_cuda: x and the workspace must be 16-byte aligned");
  const int64_t need = expert_gemm_workspace_bytes(a.T, a.k, w.experts);
  require(workspace_bytes >= need, "expert_gemm_cuda: workspace of " + std::to_string(workspace_bytes) +
                                       " bytes given, " + std::to_string(need) + " needed");
  const int64_t N = a.T * a.k, tiles = max_tiles(N, w.experts);
  require(tiles < 65536, "expert_gemm_cuda: too many row tiles (T*k/64 + E must be < 65536)");
  const Workspace ws = carve(workspace, N, w.experts);
  launch_pdl(bucket_kernel, dim3(1), dim3(kBucketThreads), 0, stream, a.ids, static_cast<int>(N),
             static_cast<int>(w.experts), static_cast<int>(w.out), a.y, ws);
  check_launch("expert_gemm_cuda (bucketing)");
  const dim3 grid(static_cast<unsigned>((w.out + BN - 1) / BN), static_cast<unsigned>(tiles));
  switch (w.format) {
    case WeightFormat::Dense: launch_pdl(gemm_kernel<WeightFormat::Dense>, grid, dim3(kThreads), 0, stream, a, ws); break;
    case WeightFormat::FP8: launch_pdl(gemm_kernel<WeightFormat::FP8>, grid, dim3(kThreads), 0, stream, a, ws); break;
    case WeightFormat::NVFP4: launch_pdl(gemm_kernel<WeightFormat::NVFP4>, grid, dim3(kThreads), 0, stream, a, ws); break;
  }
  check_launch("expert_gemm_cuda");
}

}  // namespace nemotron::kernels
