// Mamba-2 decode kernels: conv1d state update + SiLU, and the selective state update (PDL
// launches; the model's decode steps use the fused kernel in mamba_decode.cu instead).
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/state_io.cuh"
#include "kernels/mamba_cuda.h"

namespace nemotron::kernels {
namespace {

using cuda::bf16f;

constexpr int kMaxK = 8;

// grid (ceil(C/256), B): one thread per channel.
__global__ void conv_update_kernel(ConvUpdateArgs a) {
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const int64_t b = blockIdx.y;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= a.C) return;
  const int W = static_cast<int>(a.K) - 1;
  float* st = a.state + static_cast<int64_t>(a.slot[b]) * W * a.C + c;
  float win[kMaxK];
#pragma unroll
  for (int k = 0; k < kMaxK; ++k)
    if (k < W) win[k] = st[k * a.C];
  const float xin = bf16f(a.xbc[b * a.xbc_stride + c]);
  float acc = a.bias ? bf16f(a.bias[c]) : 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxK; ++k)
    if (k < W) acc += bf16f(a.w[c * a.K + k]) * win[k];
  acc += bf16f(a.w[c * a.K + W]) * xin;
  a.out[b * a.C + c] = acc / (1.0f + expf(-acc));
#pragma unroll
  for (int k = 0; k + 1 < kMaxK; ++k)
    if (k + 1 < W) st[k * a.C] = win[k + 1];
  if (W > 0) st[(W - 1) * a.C] = xin;
}

__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

// grid (heads, B), 256 threads = 8 warps; warp w handles head rows p = w, w+8, ...; lane l holds
// state columns n = 4l .. 4l+3 (+128 per step), so state rows move as coalesced float4.
__global__ void __launch_bounds__(256) ssm_update_kernel(SsmUpdateArgs a) {
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const int h = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.y;
  const int P = static_cast<int>(a.head_dim), N = static_cast<int>(a.state_dim);
  const int g = h / static_cast<int>(a.heads / a.groups);
  const float* row = a.xbc + b * a.xbc_stride;
  const float* x = row + static_cast<int64_t>(h) * P;
  const float* Bv = row + a.heads * P + static_cast<int64_t>(g) * N;
  const float* Cv = row + a.heads * P + a.groups * N + static_cast<int64_t>(g) * N;
  float dt = softplus(bf16f(a.dt_raw[b * a.dt_stride + h]) + a.dt_bias[h]);
  dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
  const float decay = expf(dt * a.A[h]);
  const float Dh = a.D[h];
  const int64_t S = (static_cast<int64_t>(a.slot[b]) * a.heads + h) * P * N;  // the slot's head h
  const int64_t Q = static_cast<int64_t>(h) * P * N;                            // its noise index
  const int64_t pos = a.state_dtype == StateDType::F32 ? 0 : a.row_pos[b] + 1;
  const cuda::StateStore store = cuda::state_store(a.state_dtype, a.state_stochastic, a.state_layer, pos);
  for (int p = warp; p < P; p += 8) {
    const float xp = x[p];
    const float dx = dt * xp;
    float acc = 0.0f;
    for (int n = 4 * lane; n < N; n += 128) {
      float4 s = cuda::load_state4(a.state, a.state_dtype, S + static_cast<int64_t>(p) * N + n);
      const float4 bb = *reinterpret_cast<const float4*>(Bv + n);
      const float4 cc = *reinterpret_cast<const float4*>(Cv + n);
      s.x = decay * s.x + dx * bb.x;
      s.y = decay * s.y + dx * bb.y;
      s.z = decay * s.z + dx * bb.z;
      s.w = decay * s.w + dx * bb.w;
      acc += s.x * cc.x + s.y * cc.y + s.z * cc.z + s.w * cc.w;
      cuda::store_state4(a.state, store, S + static_cast<int64_t>(p) * N + n, Q + static_cast<int64_t>(p) * N + n, s);
    }
    acc = cuda::warp_sum(acc);
    if (lane == 0) a.y[b * a.heads * P + static_cast<int64_t>(h) * P + p] = acc + Dh * xp;
  }
}

}  // namespace

void conv1d_update_silu_cuda(const ConvUpdateArgs& a, cudaStream_t stream) {
  cuda::require(a.B >= 0 && a.B < 65536 && a.C >= 1 && a.K >= 1 && a.K <= kMaxK && a.xbc_stride >= a.C,
                "conv1d_update_silu_cuda: bad shape (B " + std::to_string(a.B) + ", C " + std::to_string(a.C) +
                    ", K " + std::to_string(a.K) + ", K <= 8, xbc_stride >= C)");
  cuda::require(a.xbc && a.state && a.slot && a.w && a.out, "conv1d_update_silu_cuda: null pointer");
  if (a.B == 0) return;
  const dim3 grid(static_cast<unsigned>((a.C + 255) / 256), static_cast<unsigned>(a.B));
  cuda::launch_pdl(conv_update_kernel, grid, dim3(256), 0, stream, a);
  cuda::check_launch("conv1d_update_silu_cuda");
}

void ssm_state_update_cuda(const SsmUpdateArgs& a, cudaStream_t stream) {
  cuda::require(a.B >= 0 && a.B < 65536 && a.heads >= 1 && a.groups >= 1 && a.heads % a.groups == 0 &&
                    a.head_dim >= 1 && a.state_dim >= 4 && a.state_dim % 4 == 0,
                "ssm_state_update_cuda: bad dims (heads % groups == 0, state_dim a multiple of 4)");
  cuda::require(a.xbc_stride >= a.heads * a.head_dim + 2 * a.groups * a.state_dim && a.xbc_stride % 4 == 0 &&
                    (a.heads * a.head_dim) % 4 == 0 && a.dt_stride >= a.heads,
                "ssm_state_update_cuda: bad strides (xbc_stride >= Hm*P + 2*G*N, multiples of 4)");
  cuda::require(a.xbc && a.dt_raw && a.dt_bias && a.A && a.D && a.state && a.slot && a.y &&
                    (a.state_dtype == StateDType::F32 || a.row_pos),
                "ssm_state_update_cuda: null pointer (a 16-bit state needs row_pos)");
  cuda::require(cuda::aligned16(a.xbc) && cuda::aligned16(a.state), "ssm_state_update_cuda: xbc/state not 16-byte aligned");
  if (a.B == 0) return;
  const dim3 grid(static_cast<unsigned>(a.heads), static_cast<unsigned>(a.B));
  cuda::launch_pdl(ssm_update_kernel, grid, dim3(256), 0, stream, a);
  cuda::check_launch("ssm_state_update_cuda");
}

}  // namespace nemotron::kernels
