// Decode GEMV: y[t, r] = sum_k x[t, k] W[r, k] for T <= 8 rows of x.
//   Default: the tensor-core GEMV (gemv_core.cuh, mma_tile): one block per 16 output rows, x
//   staged in shared memory, 4-16 warps splitting K (LinearCudaArgs::tiles_per_block: a block
//   per 2 or 4 tiles, staging x once for them).
//   LinearPath::GemvWarpRow, Auto at T = 1 for BF16 / FP8 / small NVFP4 (prefer_rows), or x too
//   large for shared memory: one warp per output row on the CUDA cores (gemv_row), kWarps rows
//   per block.
#include <string>
#include <type_traits>

#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/linear_internal.cuh"
#include "util/env.h"

namespace nemotron::kernels::cuda {
namespace {

template <WeightFormat F, int NT>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const uint8_t* __restrict__ wdata,
                                                           const uint8_t* __restrict__ wscale, float scale,
                                                           const uint16_t* __restrict__ x, int T, int in, int out,
                                                           void* __restrict__ y, bool y_f32, bool relu2) {
  pdl_trigger();
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row < out) gemv_row<F, NT>(wdata, wscale, scale, x, T, in, out, y, y_f32, row, relu2, [] { pdl_wait(); });
}

// Calls f(std::integral_constant<int, NT>{}) with NT the row capacity of the warp-row kernel
// instance for T rows (1, 2, 4 or 8).
template <class Fn>
void with_row_capacity(int T, Fn&& f) {
  if (T == 1) f(std::integral_constant<int, 1>{});
  else if (T == 2) f(std::integral_constant<int, 2>{});
  else if (T <= 4) f(std::integral_constant<int, 4>{});
  else f(std::integral_constant<int, 8>{});
}

template <WeightFormat F>
void launch_rows(const LinearCudaArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.w.out + kWarps - 1) / kWarps)), block(kWarps * 32);
  const auto* wd = static_cast<const uint8_t*>(a.w.data);
  const int T = static_cast<int>(a.T), in = static_cast<int>(a.w.in), out = static_cast<int>(a.w.out);
  const bool f32 = a.y_type == OutType::F32;
  with_row_capacity(T, [&](auto nt) {
    launch_pdl(gemv_kernel<F, decltype(nt)::value>, grid, block, 0, stream, wd, a.w.block_scale, a.w.scale, a.x, T,
               in, out, a.y, f32, a.relu2);
  });
}

// Several warp-row GEMVs of one format over the same x in one launch (linear_group_cuda):
// blocks [block0[p], block0[p + 1]) compute part p's rows, kWarps per block.
constexpr int kMaxGroup = 4;
struct RowGroup {
  int n = 0;
  const uint8_t* wdata[kMaxGroup] = {};
  const uint8_t* wscale[kMaxGroup] = {};
  float scale[kMaxGroup] = {};
  int out[kMaxGroup] = {};
  void* y[kMaxGroup] = {};
  bool y_f32[kMaxGroup] = {};
  bool relu2[kMaxGroup] = {};
  int block0[kMaxGroup + 1] = {};
};

template <WeightFormat F, int NT>
__global__ void __launch_bounds__(kWarps * 32) gemv_group_kernel(const RowGroup g, const uint16_t* __restrict__ x, int T,
                                                                 int in) {
  pdl_trigger();
  int p = 0;
  while (p + 1 < g.n && static_cast<int>(blockIdx.x) >= g.block0[p + 1]) ++p;
  const int row = (static_cast<int>(blockIdx.x) - g.block0[p]) * kWarps + (threadIdx.x >> 5);
  if (row < g.out[p])
    gemv_row<F, NT>(g.wdata[p], g.wscale[p], g.scale[p], x, T, in, g.out[p], g.y[p], g.y_f32[p], row, g.relu2[p],
                    [] { pdl_wait(); });
}

// Blocks: at most kMaxGroup parts of out < 2^30 rows each, so block0 fits an int.
template <WeightFormat F>
void launch_group(const LinearCudaArgs* parts, int n, cudaStream_t stream) {
  RowGroup g;
  g.n = n;
  for (int i = 0; i < n; ++i) {
    const LinearCudaArgs& a = parts[i];
    g.wdata[i] = static_cast<const uint8_t*>(a.w.data);
    g.wscale[i] = a.w.block_scale;
    g.scale[i] = a.w.scale;
    g.out[i] = static_cast<int>(a.w.out);
    g.y[i] = a.y;
    g.y_f32[i] = a.y_type == OutType::F32;
    g.relu2[i] = a.relu2;
    g.block0[i + 1] = g.block0[i] + static_cast<int>((a.w.out + kWarps - 1) / kWarps);
  }
  const dim3 grid(static_cast<unsigned>(g.block0[n])), block(kWarps * 32);
  const int T = static_cast<int>(parts[0].T), in = static_cast<int>(parts[0].w.in);
  with_row_capacity(T, [&](auto nt) {
    launch_pdl(gemv_group_kernel<F, decltype(nt)::value>, grid, block, 0, stream, g, parts[0].x, T, in);
  });
}

// grid.x = 16-row tiles (kMulti: groups of `tpb` consecutive tiles, the block's tiles one after
// another over the x rows it staged once: at T = 8 rows x is 43 KB per block at Nano's in_proj,
// more than the tile's 24 KB of NVFP4 weights); dynamic shared memory = mma_smem_bytes (x, then
// the warp partials). Each tile's sums are those of a single-tile block of as many warps.
template <WeightFormat F, bool kMulti>
__global__ void __launch_bounds__(kMmaMaxWarps * 32) gemv_mma_kernel(const uint8_t* __restrict__ wdata,
                                                                     const uint8_t* __restrict__ wscale, float post,
                                                                     const uint16_t* __restrict__ x, int T, int in,
                                                                     int out, void* __restrict__ y, bool y_f32,
                                                                     bool relu2, int tpb) {
  extern __shared__ uint4 smem[];
  pdl_trigger();
  float* red = reinterpret_cast<float*>(smem + T * xs_stride(in));
  const int tile0 = kMulti ? static_cast<int>(blockIdx.x) * tpb : static_cast<int>(blockIdx.x);
  const int ntiles = kMulti ? min(tpb, (out + kTileRows - 1) / kTileRows - tile0) : 1;  // block-uniform, >= 1
  for (int ti = 0; ti < ntiles; ++ti) {
    const int row0 = (tile0 + ti) * kTileRows;
    float acc[4];
    // The first weight loads are in flight before the wait for the previous kernel (PDL): the
    // weights are never written during a step; x and y only after pdl_wait(). A later tile's
    // barrier (after its first loads) keeps its partial sums from overwriting `red` while the
    // previous tile's stores still read it.
    mma_tile<F>(wdata, wscale, in, out, row0, smem, T, threadIdx.x >> 5, blockDim.x >> 5, [&] {
      if (ti == 0) {
        pdl_wait();
        stage_x<F>(x, T, in, smem);
      }
      __syncthreads();
    }, acc);
    mma_tile_store(acc, red, row0, out, T, post, relu2, y, y_f32, out);
  }
}

// Tiles per block: LinearCudaArgs::tiles_per_block, else NEMOTRON_GEMV_TILES_PER_BLOCK (2 or 4,
// for A/B runs; applies from 2 rows of x, where the staged x is what a block re-reads), else 1.
int gemv_tiles_per_block(const LinearCudaArgs& a) {
  if (a.tiles_per_block >= 1) return a.tiles_per_block;
  static const int env = [] {
    const int64_t v = env_int("NEMOTRON_GEMV_TILES_PER_BLOCK", 1);
    return v == 2 || v == 4 ? static_cast<int>(v) : 1;
  }();
  return a.T >= 2 ? env : 1;
}

// Returns false (nothing launched) when x does not fit in shared memory.
template <WeightFormat F, bool kMulti>
bool launch_mma_tiles(const LinearCudaArgs& a, int tpb, cudaStream_t stream) {
  const DeviceLimits lim = device_limits();
  const int64_t tiles = (a.w.out + kTileRows - 1) / kTileRows, blocks = (tiles + tpb - 1) / tpb;
  const int nsteps = static_cast<int>((a.w.in / MmaFmt<F>::kE + 3) / 4);
  const auto kernel = gemv_mma_kernel<F, kMulti>;
  const int warps = mma_warps(blocks, nsteps, lim.sms, [&](int w) {
    return resident_blocks(reinterpret_cast<const void*>(kernel), w * 32, mma_smem_bytes<F>(a.T, a.w.in, w));
  });
  const int64_t smem = mma_smem_bytes<F>(a.T, a.w.in, warps);
  if (smem > lim.smem_optin) return false;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
    require(e == cudaSuccess, std::string("linear_gemv: shared memory opt-in failed: ") + cudaGetErrorString(e));
  }
  const float post = MmaFmt<F>::kPost * post_scale(F, a.w.scale);
  launch_pdl(kernel, dim3(static_cast<unsigned>(blocks)), dim3(warps * 32), static_cast<size_t>(smem), stream,
             static_cast<const uint8_t*>(a.w.data), a.w.block_scale, post, a.x, static_cast<int>(a.T),
             static_cast<int>(a.w.in), static_cast<int>(a.w.out), a.y, a.y_type == OutType::F32, a.relu2, tpb);
  return true;
}

template <WeightFormat F>
bool launch_mma(const LinearCudaArgs& a, cudaStream_t stream) {
  const int tpb = gemv_tiles_per_block(a);
  return tpb > 1 ? launch_mma_tiles<F, true>(a, tpb, stream) : launch_mma_tiles<F, false>(a, 1, stream);
}

// LinearPath::Auto at T = 1 keeps the warp-per-row kernel where it measured faster on the H100
// (bench/RESULTS.md): BF16 and FP8 (little decode work: it streams at 76-110% of the copy
// bandwidth), and NVFP4 weights under 4 MB (launch-bound either way). Gemv forces the tiles.
template <WeightFormat F>
bool prefer_rows(const LinearCudaArgs& a) {
  if (a.path == LinearPath::GemvWarpRow) return true;
  if (a.path != LinearPath::Auto || a.T != 1) return false;
  return F != WeightFormat::NVFP4 || a.w.stored_bytes() < (int64_t{4} << 20);
}

template <WeightFormat F>
void launch_fmt(const LinearCudaArgs& a, cudaStream_t stream) {
  if (prefer_rows<F>(a) || !launch_mma<F>(a, stream)) launch_rows<F>(a, stream);
}

}  // namespace

int resident_blocks(const void* kernel, int threads, int64_t smem) {
  int n = 0;
  if (smem > device_limits().smem_optin) return 1;
  if (smem > 48 * 1024 &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) != cudaSuccess)
    return 1;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, static_cast<size_t>(smem)) != cudaSuccess)
    return 1;
  return n < 1 ? 1 : n;
}

bool launch_linear_gemv_group(const LinearCudaArgs* parts, int n, cudaStream_t stream) {
  if (n < 2 || n > kMaxGroup) return false;
  const LinearCudaArgs& a0 = parts[0];
  for (int i = 0; i < n; ++i) {
    const LinearCudaArgs& a = parts[i];
    if (a.w.format != a0.w.format || a.w.in != a0.w.in || a.x != a0.x || a.T != a0.T || a.path != a0.path) return false;
    const bool rows = a.w.format == WeightFormat::Dense   ? prefer_rows<WeightFormat::Dense>(a)
                      : a.w.format == WeightFormat::FP8   ? prefer_rows<WeightFormat::FP8>(a)
                                                          : prefer_rows<WeightFormat::NVFP4>(a);
    if (!rows) return false;  // the tile GEMV serves it: one launch each
  }
  switch (a0.w.format) {
    case WeightFormat::Dense: launch_group<WeightFormat::Dense>(parts, n, stream); break;
    case WeightFormat::FP8: launch_group<WeightFormat::FP8>(parts, n, stream); break;
    case WeightFormat::NVFP4: launch_group<WeightFormat::NVFP4>(parts, n, stream); break;
  }
  check_launch("linear_group (gemv rows)");
  return true;
}

void launch_linear_gemv(const LinearCudaArgs& a, cudaStream_t stream) {
  switch (a.w.format) {
    case WeightFormat::Dense: launch_fmt<WeightFormat::Dense>(a, stream); break;
    case WeightFormat::FP8: launch_fmt<WeightFormat::FP8>(a, stream); break;
    case WeightFormat::NVFP4: launch_fmt<WeightFormat::NVFP4>(a, stream); break;
  }
  check_launch("linear_gemv");
}

}  // namespace nemotron::kernels::cuda
