// RMSNorm (+ residual add), embedding gather, relu², Mamba gated group RMSNorm.
// One block per row (per (row, group) for the gated norm); sums of squares in fp32.
#include <cmath>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/norm_cuda.h"

namespace nemotron::kernels {
namespace {

using cuda::bf16f;
using cuda::f2bf;

constexpr int kThreads = 256;

// u row t starts at u + t * u_stride; uf (fp32, stride H) may be nullptr. y2 (only with y)
// is added to y first with BF16 rounding, as add_bf16_cuda would. Thread i owns elements
// i, i + 256, ... (at most kPer of them, H <= 256 * kPer), kept in registers between the sum
// of squares and the scaling: all loads of the row are issued before any is used. The sum
// of squares runs in the same order as a strided loop would (element order per thread, then
// block_sum), so the result does not depend on kPer.
template <int kPer>
__global__ void __launch_bounds__(kThreads) add_rmsnorm_kernel(float* __restrict__ x, const uint16_t* __restrict__ y,
                                                               const uint16_t* __restrict__ y2,
                                                               const uint16_t* __restrict__ w, int H, float eps,
                                                               uint16_t* __restrict__ u, int64_t u_stride,
                                                               float* __restrict__ uf) {
  __shared__ float scratch[32];
  cuda::pdl_wait();
  cuda::pdl_trigger();
  float* xr = x + static_cast<int64_t>(blockIdx.x) * H;
  const uint16_t* yr = y ? y + static_cast<int64_t>(blockIdx.x) * H : nullptr;
  const uint16_t* y2r = y && y2 ? y2 + static_cast<int64_t>(blockIdx.x) * H : nullptr;
  float v[kPer], a[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    v[j] = i < H ? xr[i] : 0.0f;
    a[j] = yr && i < H ? bf16f(yr[i]) : 0.0f;
    if (y2r && i < H) a[j] = bf16f(f2bf(a[j] + bf16f(y2r[i])));
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < H) {
      if (yr) {
        v[j] += a[j];
        xr[i] = v[j];
      }
      ss += v[j] * v[j];
    }
  }
  ss = cuda::block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(H) + eps);
  uint16_t* ur = u + static_cast<int64_t>(blockIdx.x) * u_stride;
  float* ufr = uf ? uf + static_cast<int64_t>(blockIdx.x) * H : nullptr;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < H) {
      const float o = (v[j] * inv) * bf16f(w[i]);
      ur[i] = f2bf(o);
      if (ufr) ufr[i] = o;
    }
  }
}

// Launches add_rmsnorm_kernel with the smallest register count that holds a row.
void launch_add_rmsnorm(float* x, const uint16_t* y, const uint16_t* y2, const uint16_t* w, int64_t T, int64_t H,
                        float eps, uint16_t* u, int64_t u_stride, float* uf, cudaStream_t stream) {
  cuda::require(H <= 32 * kThreads, "RMSNorm: hidden size " + std::to_string(H) + " above " +
                                       std::to_string(32 * kThreads) + " is not supported");
  const dim3 grid(static_cast<unsigned>(T)), block(kThreads);
  const int h = static_cast<int>(H);
  if (H <= 4 * kThreads) cuda::launch_pdl(add_rmsnorm_kernel<4>, grid, block, 0, stream, x, y, y2, w, h, eps, u, u_stride, uf);
  else if (H <= 8 * kThreads) cuda::launch_pdl(add_rmsnorm_kernel<8>, grid, block, 0, stream, x, y, y2, w, h, eps, u, u_stride, uf);
  else if (H <= 16 * kThreads) cuda::launch_pdl(add_rmsnorm_kernel<16>, grid, block, 0, stream, x, y, y2, w, h, eps, u, u_stride, uf);
  else cuda::launch_pdl(add_rmsnorm_kernel<32>, grid, block, 0, stream, x, y, y2, w, h, eps, u, u_stride, uf);
}

__global__ void embed_kernel(const int32_t* __restrict__ ids, const uint16_t* __restrict__ table, int64_t V, int H,
                             float* __restrict__ x) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  const int32_t id = ids[blockIdx.x];
  float* xr = x + static_cast<int64_t>(blockIdx.x) * H;
  const bool ok = id >= 0 && id < V;
  const uint16_t* tr = table + (ok ? static_cast<int64_t>(id) * H : 0);
  for (int i = threadIdx.x; i < H; i += blockDim.x) xr[i] = ok ? bf16f(tr[i]) : __int_as_float(0x7FC00000);
}

__global__ void relu2_kernel(uint16_t* __restrict__ v, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float a = bf16f(v[i]);
    v[i] = f2bf(a > 0.0f ? a * a : 0.0f);
  }
}

// grid (groups, T). The gated values are kept in registers between the two passes over the
// group (group <= kThreads * kPer).
constexpr int kPer = 8;
__global__ void __launch_bounds__(kThreads) gated_rmsnorm_kernel(const float* __restrict__ y,
                                                                 const uint16_t* __restrict__ z, int64_t z_stride,
                                                                 const uint16_t* __restrict__ w, int D, int group,
                                                                 float eps, uint16_t* __restrict__ out) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  __shared__ float scratch[32];
  const int64_t t = blockIdx.y;
  const int g0 = blockIdx.x * group;
  float v[kPer];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    v[j] = 0.0f;
    if (i < group) {
      const float zi = bf16f(z[t * z_stride + g0 + i]);
      v[j] = y[t * D + g0 + i] * (zi / (1.0f + expf(-zi)));
      ss += v[j] * v[j];
    }
  }
  ss = cuda::block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(group) + eps);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < group) out[t * D + g0 + i] = f2bf((v[j] * inv) * bf16f(w[g0 + i]));
  }
}

void check_rows(int64_t T, int64_t H, const char* what) {
  cuda::require(T >= 0 && H >= 1 && H < (int64_t{1} << 30) && T < (int64_t{1} << 31),
                std::string(what) + ": bad shape T=" + std::to_string(T) + " H=" + std::to_string(H));
}

}  // namespace

void add_rmsnorm_cuda(float* x, const uint16_t* y, const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* u,
                      cudaStream_t stream) {
  check_rows(T, H, "add_rmsnorm_cuda");
  cuda::require(x && w && u, "add_rmsnorm_cuda: null pointer");
  if (T == 0) return;
  launch_add_rmsnorm(x, y, nullptr, w, T, H, eps, u, H, nullptr, stream);
  cuda::check_launch("add_rmsnorm_cuda");
}

void add_rmsnorm_f32_cuda(float* x, const uint16_t* y, const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* u,
                          float* uf, cudaStream_t stream) {
  check_rows(T, H, "add_rmsnorm_f32_cuda");
  cuda::require(x && w && u, "add_rmsnorm_f32_cuda: null pointer");
  if (T == 0) return;
  launch_add_rmsnorm(x, y, nullptr, w, T, H, eps, u, H, uf, stream);
  cuda::check_launch("add_rmsnorm_f32_cuda");
}

void add2_rmsnorm_f32_cuda(float* x, const uint16_t* y, const uint16_t* y2, const uint16_t* w, int64_t T, int64_t H,
                           float eps, uint16_t* u, float* uf, cudaStream_t stream) {
  check_rows(T, H, "add2_rmsnorm_f32_cuda");
  cuda::require(x && w && u && (y || !y2), "add2_rmsnorm_f32_cuda: null pointer (y2 needs y)");
  if (T == 0) return;
  launch_add_rmsnorm(x, y, y2, w, T, H, eps, u, H, uf, stream);
  cuda::check_launch("add2_rmsnorm_f32_cuda");
}

void rmsnorm_strided_cuda(const float* x, const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* out,
                          int64_t out_stride, cudaStream_t stream) {
  check_rows(T, H, "rmsnorm_strided_cuda");
  cuda::require(x && w && out && out_stride >= H, "rmsnorm_strided_cuda: null pointer or out_stride < H");
  if (T == 0) return;
  // With y == nullptr the kernel only reads x.
  launch_add_rmsnorm(const_cast<float*>(x), nullptr, nullptr, w, T, H, eps, out, out_stride, nullptr, stream);
  cuda::check_launch("rmsnorm_strided_cuda");
}

void embed_cuda(const int32_t* ids, const uint16_t* table, int64_t V, int64_t H, int64_t T, float* x,
                cudaStream_t stream) {
  check_rows(T, H, "embed_cuda");
  cuda::require(ids && table && x && V >= 1, "embed_cuda: null pointer or empty table");
  if (T == 0) return;
  cuda::launch_pdl(embed_kernel, dim3(static_cast<unsigned>(T)), dim3(kThreads), 0, stream, ids, table, V,
                   static_cast<int>(H), x);
  cuda::check_launch("embed_cuda");
}

void relu2_cuda(uint16_t* v, int64_t n, cudaStream_t stream) {
  cuda::require(n >= 0 && (n == 0 || v), "relu2_cuda: bad arguments");
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 4096);
  relu2_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(v, n);
  cuda::check_launch("relu2_cuda");
}

void gated_rmsnorm_cuda(const float* y, const uint16_t* z, int64_t z_stride, const uint16_t* w, int64_t T, int64_t D,
                        int64_t group, float eps, uint16_t* out, cudaStream_t stream) {
  check_rows(T, D, "gated_rmsnorm_cuda");
  cuda::require(y && z && w && out, "gated_rmsnorm_cuda: null pointer");
  cuda::require(group >= 1 && D % group == 0 && group <= kThreads * kPer && z_stride >= D,
                "gated_rmsnorm_cuda: group " + std::to_string(group) + " must divide D " + std::to_string(D) +
                    ", be <= " + std::to_string(kThreads * kPer) + ", and z_stride >= D");
  cuda::require(T < 65536, "gated_rmsnorm_cuda: T must be < 65536");
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>(D / group), static_cast<unsigned>(T));
  cuda::launch_pdl(gated_rmsnorm_kernel, grid, dim3(kThreads), 0, stream, y, z, z_stride, w, static_cast<int>(D),
                   static_cast<int>(group), eps, out);
  cuda::check_launch("gated_rmsnorm_cuda");
}

}  // namespace nemotron::kernels
