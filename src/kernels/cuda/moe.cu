// Routed-expert GEMV per pair (expert ids read on the device; all T*k pairs in one launch), the
// dispatch of expert_gemv_cuda over its three paths (moe_cuda.h), and the weighted combine of
// the slots.
#include <string>

#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/moe_cuda.h"

namespace nemotron::kernels {
namespace {

using namespace cuda;

// Every expert kernel triggers its dependents only after its own pdl_wait(): when the next
// kernel starts, the kernel before this one has finished, so the next call may read the ids
// before its own wait (ExpertGemvArgs::ids_settled).

// grid (ceil(out / kWarps), T*k): block y is one (token, slot) pair. (ExpertGemvArgs::warp_rows)
template <WeightFormat F>
__global__ void __launch_bounds__(kWarps * 32) expert_gemv_kernel(ExpertGemvArgs a) {
  pdl_wait();  // the expert ids come from the router kernel
  pdl_trigger();
  const int64_t i = blockIdx.y;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int out = static_cast<int>(a.w.out), in = static_cast<int>(a.w.in);
  if (row >= out) return;
  const int32_t e = a.ids[i];
  uint16_t* y = a.y + i * out;
  if (e < 0 || e >= a.w.experts) {
    if ((threadIdx.x & 31) == 0) y[row] = 0x7FC0;  // NaN: a bad id must show
    return;
  }
  if (!a.w.data[e]) return;  // another rank's expert: no row (moe_cuda.h)
  const uint16_t* x = a.x + (a.x_per_slot ? i : i / a.k) * in;
  gemv_row<F, 1>(static_cast<const uint8_t*>(a.w.data[e]), a.w.block_scale ? a.w.block_scale[e] : nullptr,
                 a.w.scale ? a.w.scale[e] : 1.0f, x, 1, in, out, y, false, row, a.relu2, [] {});  // waited above
}

// The tensor-core path (gemv_core.cuh): grid (16-row tiles, T*k); every pair's x row is
// staged by each of its blocks (in * 2 bytes of shared memory, plus the warp partials).
// ids_settled (the down projection): the pair's id is read and the first weight loads are
// issued before the wait for x (the up projection's output).
template <WeightFormat F>
__global__ void __launch_bounds__(kMmaMaxWarps * 32) expert_mma_kernel(ExpertGemvArgs a) {
  extern __shared__ uint4 smem[];
  const bool early = a.ids_settled || a.reuse_buckets;  // reuse_buckets implies settled ids
  auto wait = [&] {
    pdl_wait();
    pdl_trigger();
  };
  if (!early) wait();  // the expert ids come from the router kernel
  const int64_t i = blockIdx.y;
  const int out = static_cast<int>(a.w.out), in = static_cast<int>(a.w.in);
  const int row0 = blockIdx.x * kTileRows;
  const int32_t e = early ? __ldcg(a.ids + i) : a.ids[i];
  uint16_t* y = a.y + i * out;
  if (e < 0 || e >= a.w.experts) {  // block-uniform: no barrier is skipped by part of the block
    if (early) wait();
    for (int r = row0 + static_cast<int>(threadIdx.x); r < min(out, row0 + kTileRows); r += blockDim.x)
      y[r] = 0x7FC0;  // NaN: a bad id must show
    return;
  }
  if (!a.w.data[e]) {  // another rank's expert (block-uniform): no row
    if (early) wait();
    return;
  }
  float* red = reinterpret_cast<float*>(smem + xs_stride(in));
  float acc[4];
  mma_tile<F>(static_cast<const uint8_t*>(a.w.data[e]), a.w.block_scale ? a.w.block_scale[e] : nullptr, in, out,
              row0, smem, 1, threadIdx.x >> 5, blockDim.x >> 5, [&] {
                if (early) wait();
                stage_x<F>(a.x + (a.x_per_slot ? i : i / a.k) * in, 1, in, smem);
                __syncthreads();
              }, acc);
  const float post = MmaFmt<F>::kPost * post_scale(F, a.w.scale ? a.w.scale[e] : 1.0f);
  mma_tile_store(acc, red, row0, out, 1, post, a.relu2, y, false, out);
}

template <WeightFormat F>
void launch_expert(const ExpertGemvArgs& a, cudaStream_t stream) {
  const DeviceLimits lim = device_limits();
  const int64_t pairs = a.T * a.k, tiles = (a.w.out + kTileRows - 1) / kTileRows;
  const int nsteps = static_cast<int>((a.w.in / MmaFmt<F>::kE + 3) / 4);
  const int warps = mma_warps(tiles * pairs, nsteps, lim.sms, [&](int w) {
    return resident_blocks(reinterpret_cast<const void*>(expert_mma_kernel<F>), w * 32, mma_smem_bytes<F>(1, a.w.in, w));
  });
  const int64_t smem = mma_smem_bytes<F>(1, a.w.in, warps);
  if (a.warp_rows || smem > lim.smem_optin) {
    const dim3 grid(static_cast<unsigned>((a.w.out + kWarps - 1) / kWarps), static_cast<unsigned>(pairs));
    launch_pdl(expert_gemv_kernel<F>, grid, dim3(kWarps * 32), 0, stream, a);
    return;
  }
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(expert_mma_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
    require(e == cudaSuccess, std::string("expert_gemv_cuda: shared memory opt-in failed: ") + cudaGetErrorString(e));
  }
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(pairs));
  launch_pdl(expert_mma_kernel<F>, grid, dim3(warps * 32), static_cast<size_t>(smem), stream, a);
}

// ids == nullptr: every slot; else only the slots whose expert id is in [lo, hi).
__global__ void combine_kernel(const uint16_t* __restrict__ y, const float* __restrict__ w, int k, int D,
                               const int32_t* __restrict__ ids, int lo, int hi, uint16_t* __restrict__ out) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  const int64_t t = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= D) return;
  float acc = 0.0f;
  for (int s = 0; s < k; ++s) {
    if (ids) {
      const int32_t e = ids[t * k + s];
      if (e < lo || e >= hi) continue;
    }
    acc += w[t * k + s] * bf16f(y[(t * k + s) * D + c]);
  }
  out[t * D + c] = f2bf(acc);
}

}  // namespace

ExpertGemvPath expert_gemv_cuda(const ExpertGemvArgs& a, cudaStream_t stream) {
  const ExpertTable& w = a.w;
  require(w.experts >= 1 && w.out >= 1 && w.in >= 1 && w.in % 32 == 0 && w.out < (1 << 30) && w.in < (1 << 30),
          "expert_gemv_cuda: bad expert shape (in % 32 == 0)");
  require(a.T >= 0 && a.k >= 1 && a.T < (int64_t{1} << 31) && a.k < 65536, "expert_gemv_cuda: bad T or k");
  const int64_t pairs = a.T * a.k;
  const ExpertGemvPath path = expert_gemv_path(a.T, a.k, w.experts, a.workspace != nullptr && !a.warp_rows);
  require(path != ExpertGemvPath::PerPair || pairs < 65536,
          "expert_gemv_cuda: T*k must be < 65536 without a workspace (the grouped path takes a workspace of "
          "expert_gemv_workspace_bytes)");
  require(w.data && a.ids && a.x && a.y && (w.format != WeightFormat::NVFP4 || w.block_scale),
          "expert_gemv_cuda: null pointer");
  require(cuda::aligned16(a.x), "expert_gemv_cuda: x must be 16-byte aligned");
  if (a.T == 0) return path;
  if (path == ExpertGemvPath::Grouped) {
    cuda::launch_expert_grouped(a, stream);
    check_launch("expert_gemv_cuda (grouped)");
    return path;
  }
  // The batch path declines (launches nothing) only when 8 rows of x exceed shared memory;
  // T*k < 65536 holds there (E <= 4096 and T*k < 12 E, or T*k < 256), so the GEMV can run.
  if (path == ExpertGemvPath::Batch && cuda::launch_expert_batch(a, stream)) return path;
  switch (w.format) {
    case WeightFormat::Dense: launch_expert<WeightFormat::Dense>(a, stream); break;
    case WeightFormat::FP8: launch_expert<WeightFormat::FP8>(a, stream); break;
    case WeightFormat::NVFP4: launch_expert<WeightFormat::NVFP4>(a, stream); break;
  }
  check_launch("expert_gemv_cuda");
  return ExpertGemvPath::PerPair;
}

void moe_combine_cuda(const uint16_t* y, const float* weights, int64_t T, int64_t k, int64_t D, uint16_t* out,
                      cudaStream_t stream) {
  require(T >= 0 && T < 65536 && k >= 1 && D >= 1 && D < (1 << 30), "moe_combine_cuda: bad shape");
  require(T == 0 || (y && weights && out), "moe_combine_cuda: null pointer");
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>((D + 255) / 256), static_cast<unsigned>(T));
  launch_pdl(combine_kernel, grid, dim3(256), 0, stream, y, weights, static_cast<int>(k), static_cast<int>(D),
             static_cast<const int32_t*>(nullptr), 0, 0, out);
  check_launch("moe_combine_cuda");
}

void moe_combine_owned_cuda(const uint16_t* y, const float* weights, const int32_t* ids, int64_t lo, int64_t hi,
                            int64_t T, int64_t k, int64_t D, uint16_t* out, cudaStream_t stream) {
  require(T >= 0 && T < 65536 && k >= 1 && D >= 1 && D < (1 << 30) && 0 <= lo && lo <= hi && hi < (int64_t{1} << 30),
          "moe_combine_owned_cuda: bad shape or expert range");
  require(T == 0 || (y && weights && ids && out), "moe_combine_owned_cuda: null pointer");
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>((D + 255) / 256), static_cast<unsigned>(T));
  launch_pdl(combine_kernel, grid, dim3(256), 0, stream, y, weights, static_cast<int>(k), static_cast<int>(D), ids,
             static_cast<int>(lo), static_cast<int>(hi), out);
  check_launch("moe_combine_owned_cuda");
}

}  // namespace nemotron::kernels
