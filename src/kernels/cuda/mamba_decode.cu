// Fused Mamba-2 decode step (mamba_cuda.h: mamba_decode_fused_cuda): conv1d update + SiLU,
// selective state update + D skip, and the gated group RMSNorm in one kernel.
//
// Grid (heads / hpb, rows), 256 threads, thread block clusters of cs blocks along x: the cs
// blocks of a cluster are the hpg = heads / groups heads of one group g, hpb = hpg / cs
// consecutive heads each. That group is both the SSM group whose B, C rows those heads read
// and the gated norm's channel group (di / groups channels = hpg heads), so the norm's sum of
// squares is reduced inside the cluster: each block's partial (block_sum over its channels)
// is read by every block through distributed shared memory in rank order, a fixed order.
//
// Conv state: each block updates the window of its own x channels; the group's B and C
// channels are read (and convolved) by all blocks of the cluster and their window is shifted
// by the rank-0 block after the cluster barrier, once every block has read the old one.
// SSM: as the sequential prefill scan for one step (lane j of a row holds state columns
// 4 * (i * LPR + j) + e), so the state and y match it bit for bit given the same inputs.
//
// Two layouts of that work (MambaDecodeArgs::layout). Registers (the default): one block per
// (batch row, heads of a block), its state rows loaded into registers before the PDL wait.
// At 64-256 rows it moves the state at ~53% of the copy bandwidth (bench/RESULTS.md, tenth
// session): 128 registers allow two blocks per SM, and each block's chain of load, conv,
// update, store and two cluster barriers leaves the memory system idle between blocks.
// Pipelined (mamba_decode_pipe_kernel): the grid holds only as many block rows as the device
// runs at once, each block takes batch rows in turn and copies the next row's state into
// shared memory (cp.async) while it computes the current one. Measure with
// bench/cuda/bench_mamba_cuda before making it the default.
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/cuda/state_io.cuh"
#include "kernels/mamba_cuda.h"

namespace nemotron::kernels {
namespace {

namespace cg = cooperative_groups;
using cuda::bf16f;
using cuda::f2bf;

constexpr int kThreads = 256, kMaxK = 8, kMaxCluster = 8, kMaxRows = 1024, kMaxHpb = 64;

__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

struct Geometry {
  int cs = 1, hpb = 1;  // blocks per group (cluster size), heads per block
};

Geometry geometry(int64_t heads, int64_t groups) {
  const int64_t hpg = heads / groups;
  Geometry g;
  for (int cs = kMaxCluster; cs >= 1; cs /= 2)
    if (hpg % cs == 0) {
      g.cs = cs;
      g.hpb = static_cast<int>(hpg / cs);
      break;
    }
  return g;
}

// kPasses: SSM passes of PT rows whose state is loaded together (1, 2 or 4). S16: a 16-bit SSM
// state (a.state_dtype); false compiles the fp32 path alone (no 16-bit code in the hot kernel).
// kMinBlocks: resident blocks per SM asked of ptxas (1: its own register choice).
template <int NPT, int LPR, int kPasses, bool S16, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks) mamba_decode_kernel(MambaDecodeArgs a, int hpb) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int PT = kThreads / LPR, N = NPT * LPR, N4 = N / 4;
  __shared__ float4 Bs[N4], Cs[N4];
  __shared__ float xs[kMaxRows], gs[kMaxRows], zs[kMaxRows];
  __shared__ float dts[kMaxHpb], decs[kMaxHpb];
  __shared__ float scratch[32];
  __shared__ float partial;
  cg::cluster_group cluster = cg::this_cluster();
  const int tid = threadIdx.x;
  const int P = static_cast<int>(a.head_dim), Hm = static_cast<int>(a.heads), G = static_cast<int>(a.groups);
  const int hpg = Hm / G, h0 = blockIdx.x * hpb, g = h0 / hpg, rows = hpb * P;
  const int64_t di = static_cast<int64_t>(Hm) * P, GN = static_cast<int64_t>(G) * N, C = di + 2 * GN;
  const int K = static_cast<int>(a.K), W = K - 1;
  const int64_t b = blockIdx.y;
  // Before the wait: the per-head weights, the slot (uploaded before the step's first kernel),
  // the block's first SSM state rows and (below) its conv windows. Only this kernel writes
  // these state rows during a step, and every step ends with a stream synchronization
  // (cuda_model_step.cpp), so no earlier kernel can still be writing them.
  float dtb = 0.0f, Ah = 0.0f;
  if (tid < hpb) dtb = a.dt_bias[h0 + tid], Ah = a.A[h0 + tid];
  const int64_t slot = a.slot[b];
  const int r = tid / LPR, j = tid % LPR;
  const StateDType sdt = S16 ? a.state_dtype : StateDType::F32;
  float4 s[kPasses][NPT / 4];
  int64_t S[kPasses];  // element offset of the pass's state row (head h0 + q / P, row q % P) in the slot
  // A 16-bit state: every raw word of the passes is loaded before any is decoded (decoding at
  // each load made every load wait for the one before: the 16-bit kernel ran slower than fp32).
  auto load_state = [&](int q00) {
    [[maybe_unused]] uint2 raw[kPasses][NPT / 4];
#pragma unroll
    for (int m = 0; m < kPasses; ++m) {
      const int q = q00 + m * PT + r;
      const bool valid = q < rows;
      const int hl = valid ? q / P : 0, p = valid ? q % P : 0;
      S[m] = ((slot * Hm + h0 + hl) * P + p) * N;
#pragma unroll
      for (int i = 0; i < NPT / 4; ++i) {
        if constexpr (S16) {
          raw[m][i] = valid ? cuda::load_state16_raw(a.state, S[m] + 4 * (i * LPR + j)) : make_uint2(0u, 0u);
        } else {
          s[m][i] = valid ? *reinterpret_cast<const float4*>(static_cast<const float*>(a.state) + S[m] +
                                                             4 * (i * LPR + j))
                          : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
      }
    }
    if constexpr (S16) {
#pragma unroll
      for (int m = 0; m < kPasses; ++m)
#pragma unroll
        for (int i = 0; i < NPT / 4; ++i) s[m][i] = cuda::decode_state4(raw[m][i], sdt);
    }
  };
  // A 16-bit state is rounded with the noise of the row's position after this token.
  const int64_t pos = S16 ? a.row_pos[b] + 1 : 0;
  const cuda::StateStore store = cuda::state_store(sdt, a.state_stochastic, a.state_layer, pos);
  float* cst = a.conv_state + slot * W * C;
  // Conv over the block's channels: q < rows: x channel h0 * P + q; then the group's N B and
  // N C channels. Two channels per thread per round (q0 + u * kThreads), both windows loaded
  // before any store (the stores could alias the loads as far as the compiler knows). When one
  // round covers every channel (Nano, Super), its windows (conv state rows only this kernel
  // writes during a step, like the SSM state), conv weights and bias are loaded before the
  // wait, and the rank-0 block shifts the group's B/C windows from those registers at the end.
  const int nch = rows + 2 * N;
  const bool one_round = nch <= 2 * kThreads;
  float win[2][kMaxK], cw[2][kMaxK], cb[2], xin[2];
  int64_t ch[2];
  auto load_round = [&](int q0) {
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int q = q0 + u * kThreads;
      ch[u] = q < rows ? static_cast<int64_t>(h0) * P + q
                       : (q < rows + N ? di + static_cast<int64_t>(g) * N + (q - rows)
                                       : di + GN + static_cast<int64_t>(g) * N + (q - rows - N));
      if (q < nch) {
#pragma unroll
        for (int k = 0; k < kMaxK; ++k) {
          if (k < W) win[u][k] = cst[k * C + ch[u]];
          if (k < K) cw[u][k] = bf16f(a.conv_w[ch[u] * K + k]);
        }
        cb[u] = a.conv_b ? bf16f(a.conv_b[ch[u]]) : 0.0f;
      }
    }
  };
  if (one_round) load_round(tid);
  load_state(0);
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const uint16_t* in = a.in_proj + b * a.in_stride;
  const uint16_t* xbc = in + di;

  // The gate z of the block's rows and the raw dt of its heads: loaded with the conv inputs,
  // not at their use, so that no load waits on the conv and SSM phases.
  for (int q = tid; q < rows; q += kThreads) zs[q] = bf16f(in[static_cast<int64_t>(h0) * P + q]);
  const float dt_raw = tid < hpb ? bf16f(in[di + C + h0 + tid]) : 0.0f;
  float* Bf = reinterpret_cast<float*>(Bs);
  float* Cf = reinterpret_cast<float*>(Cs);
  for (int q0 = tid; q0 < nch; q0 += 2 * kThreads) {
    if (!one_round) load_round(q0);
#pragma unroll
    for (int u = 0; u < 2; ++u)
      if (q0 + u * kThreads < nch) xin[u] = bf16f(xbc[ch[u]]);
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int q = q0 + u * kThreads;
      if (q >= nch) continue;
      const int64_t c = ch[u];
      float acc = cb[u];
#pragma unroll
      for (int k = 0; k < kMaxK; ++k) {  // static indices: the arrays stay in registers
        if (k < W) acc += cw[u][k] * win[u][k];
        else if (k == W) acc += cw[u][k] * xin[u];
      }
      const float o = acc / (1.0f + expf(-acc));
      if (q < rows) {
        xs[q] = o;
        float* st = cst + c;
#pragma unroll
        for (int k = 0; k + 1 < kMaxK; ++k)
          if (k + 1 < W) st[k * C] = win[u][k + 1];
        if (W > 0) st[(W - 1) * C] = xin[u];
      } else if (q < rows + N) {
        Bf[q - rows] = o;
      } else {
        Cf[q - rows - N] = o;
      }
    }
  }
  if (tid < hpb) {
    float dt = softplus(dt_raw + dtb);
    dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
    dts[tid] = dt;
    decs[tid] = expf(dt * Ah);
  }
  __syncthreads();

  // Selective state update: PT rows (head, p) per pass, LPR lanes per row; kPasses passes'
  // state rows are loaded before any is stored.
  for (int q00 = 0; q00 < rows; q00 += kPasses * PT) {
    if (q00 > 0) load_state(q00);  // the first passes were loaded before the wait
#pragma unroll
    for (int m = 0; m < kPasses; ++m) {
      const int q = q00 + m * PT + r;
      const bool valid = q < rows;
      const int hl = valid ? q / P : 0, h = h0 + hl;
      const float decay = decs[hl], xp = valid ? xs[q] : 0.0f, dx = dts[hl] * xp;
      float acc = 0.0f;
#pragma unroll
      for (int i = 0; i < NPT / 4; ++i) {
        const float4 bb = Bs[i * LPR + j], cc = Cs[i * LPR + j];
        s[m][i].x = decay * s[m][i].x + dx * bb.x;
        s[m][i].y = decay * s[m][i].y + dx * bb.y;
        s[m][i].z = decay * s[m][i].z + dx * bb.z;
        s[m][i].w = decay * s[m][i].w + dx * bb.w;
        acc += s[m][i].x * cc.x + s[m][i].y * cc.y + s[m][i].z * cc.z + s[m][i].w * cc.w;
      }
#pragma unroll
      for (int o = LPR / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xFFFFFFFFu, acc, o);
      if (valid) {
        const int64_t qn = S[m] - slot * Hm * P * N;  // the row's noise index (state of this sequence)
#pragma unroll
        for (int i = 0; i < NPT / 4; ++i)
          cuda::store_state4(a.state, store, S[m] + 4 * (i * LPR + j), qn + 4 * (i * LPR + j), s[m][i]);
        if (j == 0) {
          const float y = acc + a.D[h] * xp;
          const float zi = zs[q];
          gs[q] = y * (zi / (1.0f + expf(-zi)));
        }
      }
    }
  }
  __syncthreads();

  // Gated group RMSNorm: block partials, summed over the cluster in rank order.
  float ss = 0.0f;
  for (int q = tid; q < rows; q += kThreads) ss += gs[q] * gs[q];
  ss = cuda::block_sum(ss, scratch);
  if (tid == 0) partial = ss;
  cluster.sync();
  float total = 0.0f;
  const int cs = static_cast<int>(cluster.num_blocks());
  for (int rk = 0; rk < cs; ++rk) total += *cluster.map_shared_rank(&partial, rk);
  const float inv = 1.0f / sqrtf(total / static_cast<float>(hpg * P) + a.eps);
  uint16_t* out = a.out + b * di + static_cast<int64_t>(h0) * P;
  const uint16_t* nw = a.norm_w + static_cast<int64_t>(h0) * P;
  for (int q = tid; q < rows; q += kThreads) out[q] = f2bf((gs[q] * inv) * bf16f(nw[q]));
  // Every block of the group has read the old B/C window (before the barrier): shift it now.
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
      const int64_t c = q < N ? di + static_cast<int64_t>(g) * N + q : di + GN + static_cast<int64_t>(g) * N + (q - N);
      float* st = cst + c;
      float win[kMaxK];
#pragma unroll
      for (int k = 0; k < kMaxK; ++k)
        if (k < W) win[k] = st[k * C];
#pragma unroll
      for (int k = 0; k + 1 < kMaxK; ++k)
        if (k + 1 < W) st[k * C] = win[k + 1];
      if (W > 0) st[(W - 1) * C] = bf16f(xbc[c]);
    }
  }
  cluster.sync();  // no block leaves while another may still read its `partial`
#endif
}

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
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int q = q0 + u * kThreads;
        if (q >= nch) continue;
        const int64_t c = ch[u];
        float acc = cb[u];
#pragma unroll
        for (int k = 0; k < kMaxK; ++k) {
          if (k < W) acc += cw[u][k] * win[u][k];
          else if (k == W) acc += cw[u][k] * xin[u];
        }
        const float o = acc / (1.0f + expf(-acc));
        if (q < rows) {
          xs[q] = o;
          float* st = cst + c;
#pragma unroll
          for (int k = 0; k + 1 < kMaxK; ++k)
            if (k + 1 < W) st[k * C] = win[u][k + 1];
          if (W > 0) st[(W - 1) * C] = xin[u];
        } else if (q < rows + N) {
          Bf[q - rows] = o;
        } else {
          Cf[q - rows - N] = o;
        }
      }
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

template <int NPT, int LPR, int kPasses, int kMinBlocks = 1>
void launch_passes(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream) {
  const bool s16 = a.state_dtype != StateDType::F32;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(geo.cs);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(a.heads / geo.hpb), static_cast<unsigned>(a.rows));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = cuda::pdl_enabled() ? 2 : 1;
  if (s16) cudaLaunchKernelEx(&cfg, mamba_decode_kernel<NPT, LPR, kPasses, true, kMinBlocks>, a, geo.hpb);
  else cudaLaunchKernelEx(&cfg, mamba_decode_kernel<NPT, LPR, kPasses, false, kMinBlocks>, a, geo.hpb);
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
  thread_local const void* cached_kernel = nullptr;
  thread_local int64_t cached_smem = -1;
  thread_local int per_sm = 1;
  if (kernel != cached_kernel || smem != cached_smem) {
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    cuda::require(e == cudaSuccess, "mamba_decode_fused_cuda: shared memory opt-in of " + std::to_string(smem) +
                                        " bytes failed: " + cudaGetErrorString(e));
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, static_cast<size_t>(smem)) !=
            cudaSuccess ||
        per_sm < 1)
      per_sm = 1;
    cached_kernel = kernel;
    cached_smem = smem;
  }
  static const int64_t forced_y = [] {
    const char* e = std::getenv("NEMOTRON_MAMBA_PIPE_Y");
    return e ? std::atoll(e) : 0;
  }();
  const int64_t X = a.heads / geo.hpb;
  int64_t Y = a.pipe_rows > 0 ? a.pipe_rows
              : forced_y > 0 ? forced_y
                             : std::max<int64_t>(1, int64_t{per_sm} * cuda::device_limits().sms / X);
  Y = std::min<int64_t>(Y, a.rows);
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(geo.cs);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(X), static_cast<unsigned>(Y));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = cuda::pdl_enabled() ? 2 : 1;
  if (s16) cudaLaunchKernelEx(&cfg, mamba_decode_pipe_kernel<NPT, LPR, true>, a, geo.hpb);
  else cudaLaunchKernelEx(&cfg, mamba_decode_pipe_kernel<NPT, LPR, false>, a, geo.hpb);
  return true;
}

// The layout of an Auto call, for A/B runs (NEMOTRON_MAMBA_DECODE, read once): `pipe` the
// pipelined layout; `p1lb3` (state 128 only) the register layout with one pass's state rows
// loaded at a time and 3 resident blocks per SM asked of ptxas (80 registers, no spills: is
// occupancy alone what the pipelined layout buys?); else the register layout.
enum class AutoLayout { Registers, Pipe, P1Lb3 };
AutoLayout auto_layout() {
  static const AutoLayout v = [] {
    const char* e = std::getenv("NEMOTRON_MAMBA_DECODE");
    const std::string s = e ? e : "";
    return s == "pipe" ? AutoLayout::Pipe : s == "p1lb3" ? AutoLayout::P1Lb3 : AutoLayout::Registers;
  }();
  return v;
}

template <int NPT, int LPR>
void launch(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream) {
  constexpr int PT = kThreads / LPR;
  const int64_t passes = (geo.hpb * a.head_dim + PT - 1) / PT;
  const bool is_auto = a.layout == MambaDecodeLayout::Auto;
  if (a.layout == MambaDecodeLayout::Pipelined || (is_auto && auto_layout() == AutoLayout::Pipe))
    if (launch_pipe<NPT, LPR>(a, geo, stream)) return;  // else its buffers do not fit: registers
  if constexpr (NPT == 16) {
    if (is_auto && auto_layout() == AutoLayout::P1Lb3) {
      launch_passes<NPT, LPR, 1, 3>(a, geo, stream);
      return;
    }
  }
  if (passes <= 1) {
    launch_passes<NPT, LPR, 1>(a, geo, stream);
  } else if constexpr (NPT > 16) {
    launch_passes<NPT, LPR, 2>(a, geo, stream);  // state 256: 2 passes' rows fill the register budget
  } else {
    if (passes <= 2) launch_passes<NPT, LPR, 2>(a, geo, stream);
    else launch_passes<NPT, LPR, 4>(a, geo, stream);
  }
}

// Thread block clusters: sm_90 and later (cached per device, as the model asks every step).
bool device_has_clusters() { return cuda::device_limits().cc_major >= 9; }

bool dims_supported(int64_t heads, int64_t head_dim, int64_t N, int64_t groups, int64_t K) {
  if (heads < 1 || heads > 65535 || groups < 1 || heads % groups != 0 || head_dim < 1 || K < 1 || K > kMaxK)
    return false;
  if (N != 16 && N != 32 && N != 64 && N != 128 && N != 256) return false;
  const Geometry geo = geometry(heads, groups);
  return geo.hpb <= kMaxHpb && geo.hpb * head_dim <= kMaxRows;
}

}  // namespace

bool mamba_decode_fused_supported(int64_t heads, int64_t head_dim, int64_t state_dim, int64_t groups, int64_t K) {
  return dims_supported(heads, head_dim, state_dim, groups, K) && device_has_clusters();
}

void mamba_decode_fused_cuda(const MambaDecodeArgs& a, cudaStream_t stream) {
  cuda::require(dims_supported(a.heads, a.head_dim, a.state_dim, a.groups, a.K),
                "mamba_decode_fused_cuda: unsupported dims (heads " + std::to_string(a.heads) + ", head_dim " +
                    std::to_string(a.head_dim) + ", state_dim " + std::to_string(a.state_dim) + ", groups " +
                    std::to_string(a.groups) + ", K " + std::to_string(a.K) + ")");
  cuda::require(device_has_clusters(), "mamba_decode_fused_cuda: needs an sm_90+ device (thread block clusters)");
  const int64_t di = a.heads * a.head_dim, C = di + 2 * a.groups * a.state_dim;
  cuda::require(a.rows >= 0 && a.rows < 65536, "mamba_decode_fused_cuda: rows must be in [0, 65536)");
  cuda::require(a.in_stride >= di + C + a.heads, "mamba_decode_fused_cuda: in_stride " + std::to_string(a.in_stride) +
                                                     " below the in_proj width " + std::to_string(di + C + a.heads));
  cuda::require(a.in_proj && a.conv_state && a.conv_w && a.state && a.dt_bias && a.A && a.D && a.norm_w && a.slot &&
                    a.out && (a.state_dtype == StateDType::F32 || a.row_pos),
                "mamba_decode_fused_cuda: null pointer (a 16-bit state needs row_pos)");
  cuda::require(cuda::aligned16(a.state), "mamba_decode_fused_cuda: ssm state not 16-byte aligned");
  if (a.rows == 0) return;
  const Geometry geo = geometry(a.heads, a.groups);
  switch (a.state_dim) {
    case 16: launch<4, 4>(a, geo, stream); break;
    case 32: launch<4, 8>(a, geo, stream); break;
    case 64: launch<8, 8>(a, geo, stream); break;
    case 128: launch<16, 8>(a, geo, stream); break;
    default: launch<32, 8>(a, geo, stream); break;  // 256 (validated)
  }
  cuda::check_launch("mamba_decode_fused_cuda");
}

}  // namespace nemotron::kernels
