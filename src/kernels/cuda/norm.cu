// RMSNorm (+ residual add), embedding gather, relu², Mamba gated group RMSNorm.
// One block per row (per (row, group) for the gated norm); sums of squares in fp32.
#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/norm_cuda.h"

namespace nemotron::kernels {
namespace {

using cuda::bf16f;
using cuda::f2bf;

constexpr int kThreads = 256;

// Operands of one add+norm launch over T rows of width H (see norm_cuda.h). The addend of
// row t is, when yk is set, the MoE combine bf16(sum_s rw[t, s] * yk[t, s, :]) (as
// moe_combine_cuda: fp32 sum in slot order, one BF16 rounding), else y[t] (nullptr: no add,
// x is only read); y2, when set, is added to it with BF16 rounding (as add_bf16_cuda).
struct NormArgs {
  float* x = nullptr;
  const uint16_t* y = nullptr;
  const uint16_t* y2 = nullptr;
  const uint16_t* yk = nullptr;
  const float* rw = nullptr;
  int k = 0;
  const uint16_t* w = nullptr;
  int H = 0;
  float eps = 0.0f;
  uint16_t* u = nullptr;
  int64_t u_stride = 0;
  float* uf = nullptr;
};

// Scalar path (any H <= 256 * kPer, any alignment). Thread i owns elements i, i + 256, ...
// (at most kPer), kept in registers between the sum of squares and the scaling. Every path:
// norm weights are read before pdl_wait (they are constant during a step), pdl_trigger early.
template <int kPer>
__global__ void __launch_bounds__(kThreads) add_rmsnorm_kernel(NormArgs a) {
  __shared__ float scratch[32];
  const int H = a.H;
  float wv[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    wv[j] = i < H ? bf16f(a.w[i]) : 0.0f;
  }
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const int64_t t = blockIdx.x;
  float* xr = a.x + t * H;
  const bool add = a.y || a.yk;
  float v[kPer], s[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    v[j] = i < H ? xr[i] : 0.0f;
    s[j] = 0.0f;
    if (add && i < H) {
      if (a.yk) {
        float acc = 0.0f;
        for (int q = 0; q < a.k; ++q) acc += a.rw[t * a.k + q] * bf16f(a.yk[(t * a.k + q) * H + i]);
        s[j] = bf16f(f2bf(acc));
      } else {
        s[j] = bf16f(a.y[t * H + i]);
      }
      if (a.y2) s[j] = bf16f(f2bf(s[j] + bf16f(a.y2[t * H + i])));
    }
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < H) {
      if (add) {
        v[j] += s[j];
        xr[i] = v[j];
      }
      ss += v[j] * v[j];
    }
  }
  ss = cuda::block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(H) + a.eps);
  uint16_t* ur = a.u + t * a.u_stride;
  float* ufr = a.uf ? a.uf + t * H : nullptr;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < H) {
      const float o = (v[j] * inv) * wv[j];
      ur[i] = f2bf(o);
      if (ufr) ufr[i] = o;
    }
  }
}

__device__ __forceinline__ void unpack4(uint2 p, float* f) {
  f[0] = cuda::bf16lo(p.x);
  f[1] = cuda::bf16hi(p.x);
  f[2] = cuda::bf16lo(p.y);
  f[3] = cuda::bf16hi(p.y);
}

// Vector path (H % 4 == 0; x, uf 16-byte and y, y2, yk, w, u 8-byte aligned, u_stride % 4 == 0):
// with nt = blockDim.x threads (a multiple of 32, <= 1024), thread i owns the 4-element quads
// i, i + nt, ... (at most kVec; H <= 4 * nt * kVec), moved as float4 / 4 x BF16: a row of 2688
// is one quad per thread of a 672-thread block, so that the few loads of each thread are in
// flight together (one row per block: decode is latency-bound). Same per-element arithmetic
// as the scalar path; the sum of squares runs over the thread's elements in order, then
// block_sum (a row's result depends on that row and H alone).
template <int kVec>
__global__ void __launch_bounds__(1024) add_rmsnorm_vec_kernel(NormArgs a) {
  __shared__ float scratch[32];
  const int H = a.H, H4 = H >> 2, nt = static_cast<int>(blockDim.x);
  float wv[kVec][4];
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int q = threadIdx.x + j * nt;
    if (q < H4) unpack4(__ldg(reinterpret_cast<const uint2*>(a.w) + q), wv[j]);
  }
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const int64_t t = blockIdx.x;
  float4* xr = reinterpret_cast<float4*>(a.x + t * H);
  const bool add = a.y || a.yk;
  float v[kVec][4], s[kVec][4];
  uint2 y2raw[kVec];  // loaded with x, used after the addend
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int q = threadIdx.x + j * nt;
    y2raw[j] = a.y2 && q < H4 ? reinterpret_cast<const uint2*>(a.y2 + t * H)[q] : make_uint2(0u, 0u);
    const float4 xv = q < H4 ? xr[q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    v[j][0] = xv.x, v[j][1] = xv.y, v[j][2] = xv.z, v[j][3] = xv.w;
#pragma unroll
    for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
    if (a.y && !a.yk && q < H4) unpack4(reinterpret_cast<const uint2*>(a.y + t * H)[q], s[j]);
  }
  if (a.yk) {
    // Slots in runs of kRun: the run's loads are all issued before its sums (a sequence of
    // dependent load latencies otherwise); the sum stays in slot order.
    constexpr int kRun = 8 / kVec;
    for (int r0 = 0; r0 < a.k; r0 += kRun) {
      uint2 raw[kRun][kVec];
      float wr[kRun];
#pragma unroll
      for (int u = 0; u < kRun; ++u) {
        const int r = r0 + u;
        wr[u] = r < a.k ? a.rw[t * a.k + r] : 0.0f;
        const uint2* yr = reinterpret_cast<const uint2*>(a.yk + (t * a.k + (r < a.k ? r : r0)) * H);
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const int q = threadIdx.x + j * nt;
          raw[u][j] = q < H4 && r < a.k ? yr[q] : make_uint2(0u, 0u);
        }
      }
#pragma unroll
      for (int u = 0; u < kRun; ++u) {
        if (r0 + u >= a.k) break;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          float f[4];
          unpack4(raw[u][j], f);
#pragma unroll
          for (int e = 0; e < 4; ++e) s[j][e] += wr[u] * f[e];
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = bf16f(f2bf(s[j][e]));
  }
  if (a.y2) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const int q = threadIdx.x + j * nt;
      if (q < H4) {
        float f[4];
        unpack4(y2raw[j], f);
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] = bf16f(f2bf(s[j][e] + f[e]));
      }
    }
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int q = threadIdx.x + j * nt;
    if (q < H4) {
      if (add) {
#pragma unroll
        for (int e = 0; e < 4; ++e) v[j][e] += s[j][e];
        xr[q] = make_float4(v[j][0], v[j][1], v[j][2], v[j][3]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) ss += v[j][e] * v[j][e];
    }
  }
  ss = cuda::block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(H) + a.eps);
  uint2* ur = reinterpret_cast<uint2*>(a.u + t * a.u_stride);
  float4* ufr = a.uf ? reinterpret_cast<float4*>(a.uf + t * H) : nullptr;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int q = threadIdx.x + j * nt;
    if (q < H4) {
      float o[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) o[e] = (v[j][e] * inv) * wv[j][e];
      ur[q] = make_uint2(f2bf(o[0]) | static_cast<uint32_t>(f2bf(o[1])) << 16,
                         f2bf(o[2]) | static_cast<uint32_t>(f2bf(o[3])) << 16);
      if (ufr) ufr[q] = make_float4(o[0], o[1], o[2], o[3]);
    }
  }
}

bool aligned8(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 7u) == 0; }

// Launches the vector kernel when the shape and alignment allow it, else the scalar one, each
// with the smallest register count that holds a row.
void launch_add_rmsnorm(const NormArgs& a, int64_t T, cudaStream_t stream) {
  const int64_t H = a.H;
  cuda::require(H <= 32 * kThreads, "RMSNorm: hidden size " + std::to_string(H) + " above " +
                                       std::to_string(32 * kThreads) + " is not supported");
  const dim3 grid(static_cast<unsigned>(T)), block(kThreads);
  const bool vec = H % 4 == 0 && a.u_stride % 4 == 0 && cuda::aligned16(a.x) && (!a.uf || cuda::aligned16(a.uf)) &&
                   aligned8(a.w) && aligned8(a.u) && (!a.y || aligned8(a.y)) && (!a.y2 || aligned8(a.y2)) &&
                   (!a.yk || aligned8(a.yk));
  if (vec) {
    // One quad per thread up to 1024 threads, then 1024 threads with two quads each (H <= 8192).
    const int64_t H4 = H / 4;
    const dim3 vblock(static_cast<unsigned>(std::min<int64_t>(1024, (H4 + 31) / 32 * 32)));
    if (H4 <= 1024) cuda::launch_pdl(add_rmsnorm_vec_kernel<1>, grid, vblock, 0, stream, a);
    else cuda::launch_pdl(add_rmsnorm_vec_kernel<2>, grid, vblock, 0, stream, a);
    return;
  }
  if (H <= 4 * kThreads) cuda::launch_pdl(add_rmsnorm_kernel<4>, grid, block, 0, stream, a);
  else if (H <= 8 * kThreads) cuda::launch_pdl(add_rmsnorm_kernel<8>, grid, block, 0, stream, a);
  else if (H <= 16 * kThreads) cuda::launch_pdl(add_rmsnorm_kernel<16>, grid, block, 0, stream, a);
  else cuda::launch_pdl(add_rmsnorm_kernel<32>, grid, block, 0, stream, a);
}

NormArgs norm_args(float* x, const uint16_t* y, const uint16_t* y2, const uint16_t* w, int64_t H, float eps, uint16_t* u,
                   int64_t u_stride, float* uf) {
  NormArgs a;
  a.x = x;
  a.y = y;
  a.y2 = y2;
  a.w = w;
  a.H = static_cast<int>(H);
  a.eps = eps;
  a.u = u;
  a.u_stride = u_stride;
  a.uf = uf;
  return a;
}

// Rows [v0, v1) of the vocabulary are table rows 0..v1-v0-1; another id in [0, V) gives a zero
// row (a vocab shard: another rank holds it), an id outside [0, V) a NaN row.
__global__ void embed_kernel(const int32_t* __restrict__ ids, const uint16_t* __restrict__ table, int64_t v0,
                             int64_t v1, int64_t V, int H, float* __restrict__ x) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  const int32_t id = ids[blockIdx.x];
  float* xr = x + static_cast<int64_t>(blockIdx.x) * H;
  const bool ok = id >= v0 && id < v1, valid = id >= 0 && id < V;
  const uint16_t* tr = table + (ok ? (static_cast<int64_t>(id) - v0) * H : 0);
  for (int i = threadIdx.x; i < H; i += blockDim.x) xr[i] = ok ? bf16f(tr[i]) : valid ? 0.0f : __int_as_float(0x7FC00000);
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
  cuda::pdl_trigger();
  cuda::pdl_wait();
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
  launch_add_rmsnorm(norm_args(x, y, nullptr, w, H, eps, u, H, nullptr), T, stream);
  cuda::check_launch("add_rmsnorm_cuda");
}

void add_rmsnorm_f32_cuda(float* x, const uint16_t* y, const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* u,
                          float* uf, cudaStream_t stream) {
  check_rows(T, H, "add_rmsnorm_f32_cuda");
  cuda::require(x && w && u, "add_rmsnorm_f32_cuda: null pointer");
  if (T == 0) return;
  launch_add_rmsnorm(norm_args(x, y, nullptr, w, H, eps, u, H, uf), T, stream);
  cuda::check_launch("add_rmsnorm_f32_cuda");
}

void add2_rmsnorm_f32_cuda(float* x, const uint16_t* y, const uint16_t* y2, const uint16_t* w, int64_t T, int64_t H,
                           float eps, uint16_t* u, float* uf, cudaStream_t stream) {
  check_rows(T, H, "add2_rmsnorm_f32_cuda");
  cuda::require(x && w && u && (y || !y2), "add2_rmsnorm_f32_cuda: null pointer (y2 needs y)");
  if (T == 0) return;
  launch_add_rmsnorm(norm_args(x, y, y2, w, H, eps, u, H, uf), T, stream);
  cuda::check_launch("add2_rmsnorm_f32_cuda");
}

void combine_add2_rmsnorm_f32_cuda(float* x, const uint16_t* yk, const float* rw, int64_t k, const uint16_t* y2,
                                   const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* u, float* uf,
                                   cudaStream_t stream) {
  check_rows(T, H, "combine_add2_rmsnorm_f32_cuda");
  cuda::require(k >= 1 && k <= 1024, "combine_add2_rmsnorm_f32_cuda: k must be in [1, 1024]");
  cuda::require(x && yk && rw && w && u, "combine_add2_rmsnorm_f32_cuda: null pointer");
  if (T == 0) return;
  NormArgs a = norm_args(x, nullptr, y2, w, H, eps, u, H, uf);
  a.yk = yk;
  a.rw = rw;
  a.k = static_cast<int>(k);
  launch_add_rmsnorm(a, T, stream);
  cuda::check_launch("combine_add2_rmsnorm_f32_cuda");
}

void rmsnorm_strided_cuda(const float* x, const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* out,
                          int64_t out_stride, cudaStream_t stream) {
  check_rows(T, H, "rmsnorm_strided_cuda");
  cuda::require(x && w && out && out_stride >= H, "rmsnorm_strided_cuda: null pointer or out_stride < H");
  if (T == 0) return;
  // With y == nullptr the kernel only reads x.
  launch_add_rmsnorm(norm_args(const_cast<float*>(x), nullptr, nullptr, w, H, eps, out, out_stride, nullptr), T,
                     stream);
  cuda::check_launch("rmsnorm_strided_cuda");
}

void embed_cuda(const int32_t* ids, const uint16_t* table, int64_t V, int64_t H, int64_t T, float* x,
                cudaStream_t stream) {
  embed_range_cuda(ids, table, 0, V, V, H, T, x, stream);
}

void embed_range_cuda(const int32_t* ids, const uint16_t* table, int64_t v0, int64_t v1, int64_t V, int64_t H,
                      int64_t T, float* x, cudaStream_t stream) {
  check_rows(T, H, "embed_cuda");
  cuda::require(ids && x && V >= 1 && 0 <= v0 && v0 <= v1 && v1 <= V && (table || v0 == v1),
                "embed_cuda: null pointer, empty table or a row range outside [0, V)");
  if (T == 0) return;
  cuda::launch_pdl(embed_kernel, dim3(static_cast<unsigned>(T)), dim3(kThreads), 0, stream, ids, table, v0, v1, V,
                   static_cast<int>(H), x);
  cuda::check_launch("embed_cuda");
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
