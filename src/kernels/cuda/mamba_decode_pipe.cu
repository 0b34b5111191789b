// The pipelined layout of the fused Mamba-2 decode step (mamba_cuda.h: MambaDecodeLayout::
// Pipelined; the register layout and the dispatch: mamba_decode.cu, whose notes on the
// cluster, the conv windows and the SSM lanes hold here too).
#include <cooperative_groups.h>

#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device_limits.cuh"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/cuda/mamba_decode_internal.cuh"
#include "kernels/cuda/state_io.cuh"
#include "util/env.h"

namespace nemotron::kernels::mamba_decode_detail {
namespace {

namespace cg = cooperative_groups;
using cuda::bf16f;
using cuda::f2bf;

// The pipelined layout (NEMOTRON_MAMBA_DECODE=pipe): grid (heads / hpb, Y) with Y <= rows, the
// same clusters along x; the blocks of grid row y take the batch rows y, y + Y, y + 2Y, ... in
// turn. A block's SSM state rows of one batch row are contiguous in the slot ([slots, Hm, P, N],
// heads h0 .. h0 + hpb - 1), and are copied into shared memory (cp.async, two buffers: the
// next row's copy is issued before the current row's conv) so that every resident block keeps
// its next row's state in flight through the conv, the SSM update, the norm and the cluster
// barriers; the arithmetic (and so every bit) is the default layout's. Dynamic shared memory:
// 2 x rows x N state elements in the storage type, then xs, gs, zs (rows floats each).
template <int NPT, int LPR, bool S16>
__global__ void __launch_bounds__(kThreads, NPT <= 16 ? 3 : 1) mamba_decode_pipe_kernel(MambaDecodeArgs a, int hpb) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int PT = kThreads / LPR, N = NPT * LPR, N4 = N / 4;
  constexpr int kEs = S16 ? 2 : 4;  // bytes per stored element
  extern __shared__ uint4 sbuf[];
  __shared__ float4 Bs[N4], Cs[N4];
  __shared__ float dts[kMaxHpb], decs[kMaxHpb];
  __shared__ float scratch[32];
  __shared__ float partial[2];  // by iteration parity: a fast block's next write never meets a slow block's read
  cg::cluster_group cluster = cg::this_cluster();
  const int tid = threadIdx.x;
  const int P = static_cast<int>(a.head_dim), Hm = static_cast<int>(a.heads), G = static_cast<int>(a.groups);
  const int hpg = Hm / G, h0 = blockIdx.x * hpb, g = h0 / hpg, rows = hpb * P;
  const int64_t di = static_cast<int64_t>(Hm) * P, GN = static_cast<int64_t>(G) * N, C = di + 2 * GN;
  const int K = static_cast<int>(a.K), W = K - 1;
  const int units = rows * N * kEs / 16;  // 16-byte units of one buffer
  auto* sb = reinterpret_cast<uint8_t*>(sbuf);
  float* xs = reinterpret_cast<float*>(sb + 2 * static_cast<int64_t>(units) * 16);
  float* gs = xs + rows;
  float* zs = gs + rows;
  const int64_t ystep = gridDim.y;
  // Row b's state rows of this block into buffer buf, as one cp.async group per call (an empty
  // group past the last row keeps the groups' count uniform for cp_async_wait<1>).
  auto prefetch = [&](int64_t b, int buf) {
    if (b < a.rows) {
      const int64_t slot = a.slot[b];
      const auto* src = static_cast<const uint8_t*>(a.state) + (slot * Hm + h0) * static_cast<int64_t>(P) * N * kEs;
      uint8_t* dst = sb + static_cast<int64_t>(buf) * units * 16;
      for (int u = tid; u < units; u += kThreads)
        cuda::cp_async16(dst + u * 16, src + static_cast<int64_t>(u) * 16, 16);
    }
    cuda::cp_async_commit();
  };
  // Before the wait: the first row's state (rows only this kernel writes during a step; the
  // slots were uploaded before the step), the per-head weights, the conv weights and bias.
  prefetch(blockIdx.y, 0);
  float dtb = 0.0f, Ah = 0.0f;
  if (tid < hpb) dtb = a.dt_bias[h0 + tid], Ah = a.A[h0 + tid];
  const int r = tid / LPR, j = tid % LPR;
  const StateDType sdt = S16 ? a.state_dtype : StateDType::F32;
  const int nch = rows + 2 * N;
  const bool one_round = nch <= 2 * kThreads;
  float win[2][kMaxK], cw[2][kMaxK], cb[2], xin[2];
  int64_t ch[2];
  auto load_consts = [&](int q0) {
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int q = q0 + u * kThreads;
      ch[u] = q < rows ? static_cast<int64_t>(h0) * P + q
                       : (q < rows + N ? di + static_cast<int64_t>(g) * N + (q - rows)
                                       : di + GN + static_cast<int64_t>(g) * N + (q - rows - N));
      if (q < nch) {
#pragma unroll
        for (int k = 0; k < kMaxK; ++k)
          if (k < K) cw[u][k] = bf16f(a.conv_w[ch[u] * K + k]);
        cb[u] = a.conv_b ? bf16f(a.conv_b[ch[u]]) : 0.0f;
      }
    }
  };
  auto load_windows = [&](const float* cst, int q0) {
#pragma unroll
    for (int u = 0; u < 2; ++u)
      if (q0 + u * kThreads < nch) {
#pragma unroll
        for (int k = 0; k < kMaxK; ++k)
          if (k < W) win[u][k] = cst[k * C + ch[u]];
      }
  };
  if (one_round) load_consts(tid);
  cuda::pdl_trigger();
  cuda::pdl_wait();
  float* Bf = reinterpret_cast<float*>(Bs);
  float* Cf = reinterpret_cast<float*>(Cs);
  int it = 0;
  for (int64_t b = blockIdx.y; b < a.rows; b += ystep, ++it) {  // uniform over the cluster (same blockIdx.y)
    const int buf = it & 1;
    prefetch(b + ystep, buf ^ 1);  // buffer buf ^ 1 was last read before the previous row's post-SSM barrier
    const int64_t slot = a.slot[b];
    float* cst = a.conv_state + slot * W * C;
    const uint16_t* in = a.in_proj + b * a.in_stride;
    const uint16_t* xbc = in + di;
    if (one_round) load_windows(cst, tid);
    for (int q = tid; q < rows; q += kThreads) zs[q] = bf16f(in[static_cast<int64_t>(h0) * P + q]);
    const float dt_raw = tid < hpb ? bf16f(in[di + C + h0 + tid]) : 0.0f;
    for (int q0 = tid; q0 < nch; q0 += 2 * kThreads) {
      if (!one_round) {
        load_consts(q0);
        load_windows(cst, q0);
      }
#pragma unroll
      for (int u = 0; u < 2; ++u)
        if (q0 + u * kThreads < nch) xin[u] = bf16f(xbc[ch[u]]);
      conv_round(q0, nch, rows, N, W, C, cst, win, cw, cb, xin, ch, xs, Bf, Cf);
    }
    if (tid < hpb) {
      float dt = softplus(dt_raw + dtb);
      dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
      dts[tid] = dt;
      decs[tid] = expf(dt * Ah);
    }
    cuda::cp_async_wait<1>();  // this row's group (the newest is the next row's)
    __syncthreads();
    const int64_t pos = S16 ? a.row_pos[b] + 1 : 0;
    const cuda::StateStore store = cuda::state_store(sdt, a.state_stochastic, a.state_layer, pos);
    const uint8_t* cur = sb + static_cast<int64_t>(buf) * units * 16;
    // PT rows (head, p) per pass, LPR lanes per row; every warp runs every pass (the shuffles
    // below need whole warps), lanes past the last row on zeros, storing nothing.
    for (int q0 = 0; q0 < rows; q0 += PT) {
      const int q = q0 + r;
      const bool valid = q < rows;
      const int hl = valid ? q / P : 0, h = h0 + hl;
      const int64_t S = ((slot * Hm + h) * P + (valid ? q % P : 0)) * N;
      const float decay = decs[hl], xp = valid ? xs[q] : 0.0f, dx = dts[hl] * xp;
      float4 s[NPT / 4];
#pragma unroll
      for (int i = 0; i < NPT / 4; ++i) {
        const int e = q * N + 4 * (i * LPR + j);  // element in the block's rows
        if (!valid) s[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        else if constexpr (S16) s[i] = cuda::decode_state4(*reinterpret_cast<const uint2*>(cur + e * 2), sdt);
        else s[i] = *reinterpret_cast<const float4*>(cur + e * 4);
      }
      float acc = 0.0f;
#pragma unroll
      for (int i = 0; i < NPT / 4; ++i) {
        const float4 bb = Bs[i * LPR + j], cc = Cs[i * LPR + j];
        s[i].x = decay * s[i].x + dx * bb.x;
        s[i].y = decay * s[i].y + dx * bb.y;
        s[i].z = decay * s[i].z + dx * bb.z;
        s[i].w = decay * s[i].w + dx * bb.w;
        acc += s[i].x * cc.x + s[i].y * cc.y + s[i].z * cc.z + s[i].w * cc.w;
      }
#pragma unroll
      for (int o = LPR / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xFFFFFFFFu, acc, o);
      if (!valid) continue;
      const int64_t qn = S - slot * Hm * P * N;
#pragma unroll
      for (int i = 0; i < NPT / 4; ++i)
        cuda::store_state4(a.state, store, S + 4 * (i * LPR + j), qn + 4 * (i * LPR + j), s[i]);
      if (j == 0) {
        const float y = acc + a.D[h] * xp;
        const float zi = zs[q];
        gs[q] = y * (zi / (1.0f + expf(-zi)));
      }
    }
    __syncthreads();
    float ss = 0.0f;
    for (int q = tid; q < rows; q += kThreads) ss += gs[q] * gs[q];
    ss = cuda::block_sum(ss, scratch);
    if (tid == 0) partial[buf] = ss;
    cluster.sync();
    float total = 0.0f;
    const int cs = static_cast<int>(cluster.num_blocks());
    for (int rk = 0; rk < cs; ++rk) total += *cluster.map_shared_rank(&partial[buf], rk);
    const float inv = 1.0f / sqrtf(total / static_cast<float>(hpg * P) + a.eps);
    uint16_t* out = a.out + b * di + static_cast<int64_t>(h0) * P;
    const uint16_t* nw = a.norm_w + static_cast<int64_t>(h0) * P;
    for (int q = tid; q < rows; q += kThreads) out[q] = f2bf((gs[q] * inv) * bf16f(nw[q]));
    if (cluster.block_rank() == 0 && one_round) {
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int q = tid + u * kThreads;
        if (q < rows || q >= nch) continue;
        float* st = cst + ch[u];
#pragma unroll
        for (int k = 0; k + 1 < kMaxK; ++k)
          if (k + 1 < W) st[k * C] = win[u][k + 1];
        if (W > 0) st[(W - 1) * C] = xin[u];
      }
    } else if (cluster.block_rank() == 0) {
      for (int q = tid; q < 2 * N; q += kThreads) {
        const int64_t c =
            q < N ? di + static_cast<int64_t>(g) * N + q : di + GN + static_cast<int64_t>(g) * N + (q - N);
        float* st = cst + c;
        float w2[kMaxK];
#pragma unroll
        for (int k = 0; k < kMaxK; ++k)
          if (k < W) w2[k] = st[k * C];
#pragma unroll
        for (int k = 0; k + 1 < kMaxK; ++k)
          if (k + 1 < W) st[k * C] = w2[k + 1];
        if (W > 0) st[(W - 1) * C] = bf16f(xbc[c]);
      }
    }
  }
  cuda::cp_async_wait<0>();
  cluster.sync();  // no block leaves while another may still read its `partial`
#endif
}

// The pipelined layout's grid: Y = the blocks that fit on the device at once over the x
// blocks of one row (NEMOTRON_MAMBA_PIPE_Y overrides it), at most the rows.
template <int NPT, int LPR>
bool launch_pipe(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream) {
  const bool s16 = a.state_dtype != StateDType::F32;
  const int64_t rows = geo.hpb * a.head_dim;
  const int64_t smem = 2 * rows * a.state_dim * (s16 ? 2 : 4) + 3 * rows * 4;
  if (smem > cuda::device_limits().smem_optin) return false;
  const void* kernel = s16 ? reinterpret_cast<const void*>(mamba_decode_pipe_kernel<NPT, LPR, true>)
                           : reinterpret_cast<const void*>(mamba_decode_pipe_kernel<NPT, LPR, false>);
  const int per_sm = cuda::resident_blocks(kernel, kThreads, smem);  // opts in to the shared memory
  static const int64_t forced_y = env_int("NEMOTRON_MAMBA_PIPE_Y", 0);
  const int64_t X = a.heads / geo.hpb;
  int64_t Y = a.pipe_rows > 0 ? a.pipe_rows
              : forced_y > 0 ? forced_y
                             : std::max<int64_t>(1, int64_t{per_sm} * cuda::device_limits().sms / X);
  Y = std::min<int64_t>(Y, a.rows);
  const dim3 grid(static_cast<unsigned>(X), static_cast<unsigned>(Y));
  if (s16) launch_clustered(mamba_decode_pipe_kernel<NPT, LPR, true>, grid, geo, static_cast<size_t>(smem), stream, a);
  else launch_clustered(mamba_decode_pipe_kernel<NPT, LPR, false>, grid, geo, static_cast<size_t>(smem), stream, a);
  return true;
}

}  // namespace

bool launch_pipelined(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream) {
  switch (a.state_dim) {
    case 16: return launch_pipe<4, 4>(a, geo, stream);
    case 32: return launch_pipe<4, 8>(a, geo, stream);
    case 64: return launch_pipe<8, 8>(a, geo, stream);
    case 128: return launch_pipe<16, 8>(a, geo, stream);
    default: return launch_pipe<32, 8>(a, geo, stream);  // 256 (validated)
  }
}

}  // namespace nemotron::kernels::mamba_decode_detail
