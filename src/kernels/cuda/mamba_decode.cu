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
// One block per (batch row, heads of a block), its state rows loaded into registers before the
// PDL wait. At 64-256 rows it moves the state at ~55% of the copy bandwidth (bench/RESULTS.md,
// tenth and twenty-seventh sessions): 128 registers allow two blocks per SM, and each block's
// chain of load, conv, update, store and two cluster barriers leaves the memory system idle
// between blocks. A pipelined layout (a grid of as many block rows as run at once, each block
// taking batch rows in turn and copying the next row's state into shared memory with cp.async
// while computing the current one) measured slower at every batch size on an H100 (Nano 25%
// slower at 1 row, 18% at 64, 22% at 256; Super 40% slower from 8 rows) and was removed
// (twenty-seventh session).
#include <cooperative_groups.h>

#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/cuda/state_io.cuh"
#include "kernels/cuda_stream.h"
#include "kernels/mamba_cuda.h"

namespace nemotron::kernels {
namespace {

namespace cg = cooperative_groups;
using cuda::bf16f;
using cuda::f2bf;

constexpr int kThreads = 256, kMaxK = 8, kMaxCluster = 8, kMaxRows = 1024, kMaxHpb = 64;

__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

// A group's hpg = heads / groups heads are split over a cluster of cs blocks (the largest of
// 8, 4, 2, 1 dividing hpg), hpb = hpg / cs consecutive heads per block.
struct Geometry {
  int cs = 1, hpb = 1;  // blocks per group (cluster size), heads per block
};

inline Geometry geometry(int64_t heads, int64_t groups) {
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

// The conv of one round: channels q0 + u * kThreads (u = 0, 1) of the block's
// nch = rows + 2N (its x rows, then the group's B and C channels; ch[u] their conv channel),
// from their windows, weights, bias and new input xin[u]; SiLU; into xs / Bf / Cf. The x
// channels' windows are shifted in the conv state here; the group's B / C windows are shifted
// once every block of the cluster has read them (shift_bc_windows).
__device__ __forceinline__ void conv_round(int q0, int nch, int rows, int N, int W, int64_t C, float* cst,
                                           const float (&win)[2][kMaxK], const float (&cw)[2][kMaxK],
                                           const float (&cb)[2], const float (&xin)[2], const int64_t (&ch)[2],
                                           float* xs, float* Bf, float* Cf) {
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

// kernel(a, hpb) on grid blocks of kThreads, in clusters of geo.cs blocks along x, with PDL
// when it is on (cuda::pdl_enabled); smem bytes of dynamic shared memory.
inline void launch_clustered(void (*kernel)(MambaDecodeArgs, int), dim3 grid, const Geometry& geo, size_t smem,
                             cudaStream_t stream, const MambaDecodeArgs& a) {
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(geo.cs);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = cuda::pdl_enabled() ? 2 : 1;
  cudaLaunchKernelEx(&cfg, kernel, a, geo.hpb);
}

// kPasses: SSM passes of PT rows whose state is loaded together (1, 2 or 4). S16: a 16-bit SSM
// state (a.state_dtype); false compiles the fp32 path alone (no 16-bit code in the hot kernel).
template <int NPT, int LPR, int kPasses, bool S16>
__global__ void __launch_bounds__(kThreads) mamba_decode_kernel(MambaDecodeArgs a, int hpb) {
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
    conv_round(q0, nch, rows, N, W, C, cst, win, cw, cb, xin, ch, xs, Bf, Cf);
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

template <int NPT, int LPR, int kPasses>
void launch_passes(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.heads / geo.hpb), static_cast<unsigned>(a.rows));
  if (a.state_dtype != StateDType::F32)
    launch_clustered(mamba_decode_kernel<NPT, LPR, kPasses, true>, grid, geo, 0, stream, a);
  else
    launch_clustered(mamba_decode_kernel<NPT, LPR, kPasses, false>, grid, geo, 0, stream, a);
}

template <int NPT, int LPR>
void launch(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream) {
  constexpr int PT = kThreads / LPR;
  const int64_t passes = (geo.hpb * a.head_dim + PT - 1) / PT;
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
