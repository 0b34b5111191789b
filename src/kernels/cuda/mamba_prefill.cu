// Mamba-2 varlen prefill kernels: causal conv1d + SiLU over each sequence's rows, and the
// sequential selective scan (state of one (head, p) row in registers, B/C/x of a run of time
// steps staged in shared memory for the block). Both continue from and update the sequences'
// state slots, with the same per-element arithmetic as the decode kernels in mamba.cu.
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mamba_prefill.cuh"
#include "kernels/cuda/state_io.cuh"
#include "kernels/mamba_cuda.h"

namespace nemotron::kernels {
namespace {

using cuda::bf16f;

constexpr int kMaxK = 8;
constexpr int kConvTile = 64;  // rows per conv block; >= K-1, so tile 0 holds every old-window read

// grid (ceil(C/256), ceil(rows/kConvTile) + B): blockIdx.y enumerates (sequence, tile) pairs in
// order; blocks past the last pair exit. One thread per channel walks the tile's rows with the
// K-1 previous pre-conv rows in registers. Tile 0 of a sequence is the only block that reads the
// slot's old window, so it alone writes the new one (no race with other tiles).
__global__ void __launch_bounds__(256) conv_prefill_kernel(ConvPrefillArgs a) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  int64_t idx = blockIdx.y, b = -1, start = 0, len = 0, tile = 0;
  for (int64_t s = 0; s < a.B; ++s) {
    const mamba_prefill::SeqRange r = mamba_prefill::seq_range(a.cu_rows, s, a.rows);
    const int64_t nt = (r.len + kConvTile - 1) / kConvTile;
    if (idx < nt) {
      b = s, start = r.start, len = r.len, tile = idx;
      break;
    }
    idx -= nt;
  }
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b < 0 || c >= a.C) return;
  const int W = static_cast<int>(a.K) - 1;
  float* st = a.state + static_cast<int64_t>(a.slot[b]) * W * a.C + c;
  const uint16_t* xc = a.xbc + start * a.xbc_stride + c;
  const int64_t t0 = tile * kConvTile, t1 = t0 + kConvTile < len ? t0 + kConvTile : len;
  float w[kMaxK], win[kMaxK];
#pragma unroll
  for (int k = 0; k < kMaxK; ++k) {
    w[k] = k <= W ? bf16f(a.w[c * a.K + k]) : 0.0f;
    const int64_t j = t0 - W + k;  // sequence row feeding window slot k (< 0: old window)
    if (k < W) win[k] = j < 0 ? st[(W + j) * a.C] : bf16f(xc[j * a.xbc_stride]);
  }
  const float bias = a.bias ? bf16f(a.bias[c]) : 0.0f;
  for (int64_t t = t0; t < t1; ++t) {
    const float xin = bf16f(xc[t * a.xbc_stride]);
    float acc = bias;
#pragma unroll
    for (int k = 0; k < kMaxK; ++k)
      if (k < W) acc += w[k] * win[k];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k)
      if (k == W) acc += w[k] * xin;
    a.out[(start + t) * a.C + c] = acc / (1.0f + expf(-acc));
#pragma unroll
    for (int k = 0; k + 1 < kMaxK; ++k)
      if (k + 1 < W) win[k] = win[k + 1];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k)
      if (k + 1 == W) win[k] = xin;
  }
  if (tile != 0) return;
  // New window = last W rows of (old ++ rows): the registers when this tile was the last one,
  // else the sequence's last W rows (len > kConvTile >= W).
#pragma unroll
  for (int k = 0; k < kMaxK; ++k)
    if (k < W) st[k * a.C] = len <= kConvTile ? win[k] : bf16f(xc[(len - W + k) * a.xbc_stride]);
}

__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

// Sequential scan. grid (ceil(P/PT), Hm, B), 256 threads: PT = 256/LPR rows p of head h, LPR
// consecutive lanes per row; lane j of a row holds state columns n = 4*(i*LPR + j) + e
// (i < NPT/4, e < 4), so a row's B/C float4 reads from shared memory cover contiguous 16*LPR
// bytes. Runs of TS steps are staged (B, C, x, dt, decay) and y is written back per run.
// S16: a 16-bit SSM state (a.state_dtype); false compiles the fp32 path alone. Sequences of
// chunked_from rows or more are the chunked scan's (mamba_prefill_ssd.cu): their blocks exit.
template <int NPT, int LPR, bool S16>
__global__ void __launch_bounds__(256) ssm_scan_seq_kernel(SsmScanArgs a, int64_t chunked_from) {
  const StateDType sdt = S16 ? a.state_dtype : StateDType::F32;
  cuda::pdl_wait();
  cuda::pdl_trigger();
  constexpr int PT = 256 / LPR, N = NPT * LPR, N4 = N / 4, TS = N <= 128 ? 32 : 16;
  __shared__ float4 Bs[TS][N4], Cs[TS][N4];
  __shared__ float xs[TS][PT], ys[TS][PT], dts[TS], decs[TS];
  const int tid = threadIdx.x, row = tid / LPR, j = tid % LPR;
  const int h = blockIdx.y;
  const int64_t b = blockIdx.z, P = a.head_dim, HP = a.heads * a.head_dim;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * PT, p = p0 + row;
  const bool valid = p < P;
  const mamba_prefill::SeqRange sr = mamba_prefill::seq_range(a.cu_rows, b, a.rows);
  if (sr.len >= chunked_from) return;  // block-uniform
  const int64_t g = h / (a.heads / a.groups);
  const float A = a.A[h], Dh = a.D[h], dtb = a.dt_bias[h];
  // Row p of head h in the slot (elements), and in the sequence's layer state (noise index).
  const int64_t S = ((static_cast<int64_t>(a.slot[b]) * a.heads + h) * P + p) * N;
  const int64_t Q = (static_cast<int64_t>(h) * P + p) * N;
  float4 s[NPT / 4];
#pragma unroll
  for (int i = 0; i < NPT / 4; ++i)
    s[i] = valid ? cuda::load_state4(a.state, sdt, S + 4 * (i * LPR + j)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int64_t t0 = 0; t0 < sr.len; t0 += TS) {
    const int nt = static_cast<int>(sr.len - t0 < TS ? sr.len - t0 : TS);
    const float* rows0 = a.xbc + (sr.start + t0) * a.xbc_stride;
    __syncthreads();  // the previous run's staging buffers are free
    for (int q = tid; q < nt * N4; q += 256) {
      const int t = q / N4, k = q % N4;
      const float4* bc = reinterpret_cast<const float4*>(rows0 + t * a.xbc_stride + HP + g * N);
      Bs[t][k] = bc[k];
      Cs[t][k] = bc[k + a.groups * N4];
    }
    for (int q = tid; q < nt * PT; q += 256) {
      const int t = q / PT, k = q % PT;
      xs[t][k] = p0 + k < P ? rows0[t * a.xbc_stride + h * P + p0 + k] : 0.0f;
    }
    if (tid < nt) {
      float dt = softplus(bf16f(a.dt_raw[(sr.start + t0 + tid) * a.dt_stride + h]) + dtb);
      dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
      dts[tid] = dt;
      decs[tid] = expf(dt * A);
    }
    __syncthreads();
    for (int t = 0; t < nt; ++t) {
      const float decay = decs[t], xp = xs[t][row], dx = dts[t] * xp;
      float acc = 0.0f;
#pragma unroll
      for (int i = 0; i < NPT / 4; ++i) {
        const float4 bb = Bs[t][i * LPR + j], cc = Cs[t][i * LPR + j];
        s[i].x = decay * s[i].x + dx * bb.x;
        s[i].y = decay * s[i].y + dx * bb.y;
        s[i].z = decay * s[i].z + dx * bb.z;
        s[i].w = decay * s[i].w + dx * bb.w;
        acc += s[i].x * cc.x + s[i].y * cc.y + s[i].z * cc.z + s[i].w * cc.w;
      }
#pragma unroll
      for (int o = LPR / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xFFFFFFFFu, acc, o);
      if (j == 0) ys[t][row] = acc + Dh * xp;
    }
    __syncthreads();
    for (int q = tid; q < nt * PT; q += 256) {
      const int t = q / PT, k = q % PT;
      if (p0 + k < P) a.y[(sr.start + t0 + t) * HP + h * P + p0 + k] = ys[t][k];
    }
  }
  if (valid) {
    // The position after the sequence's last row (the noise key of a 16-bit state).
    const int64_t pos = !S16 || sr.len == 0 ? 0 : a.row_pos[sr.start + sr.len - 1] + 1;
    const cuda::StateStore store = cuda::state_store(sdt, a.state_stochastic, a.state_layer, pos);
#pragma unroll
    for (int i = 0; i < NPT / 4; ++i)
      cuda::store_state4(a.state, store, S + 4 * (i * LPR + j), Q + 4 * (i * LPR + j), s[i]);
  }
}

template <int NPT, int LPR>
void launch_seq(const SsmScanArgs& a, int64_t chunked_from, cudaStream_t stream) {
  constexpr int PT = 256 / LPR;
  const dim3 grid(static_cast<unsigned>((a.head_dim + PT - 1) / PT), static_cast<unsigned>(a.heads),
                  static_cast<unsigned>(a.B));
  if (a.state_dtype != StateDType::F32)
    cuda::launch_pdl(ssm_scan_seq_kernel<NPT, LPR, true>, grid, dim3(256), 0, stream, a, chunked_from);
  else
    cuda::launch_pdl(ssm_scan_seq_kernel<NPT, LPR, false>, grid, dim3(256), 0, stream, a, chunked_from);
}

}  // namespace

void conv1d_prefill_silu_cuda(const ConvPrefillArgs& a, cudaStream_t stream) {
  cuda::require(a.B >= 0 && a.B < 65536 && a.rows >= 0 && a.C >= 1 && a.K >= 1 && a.K <= kMaxK &&
                    a.xbc_stride >= a.C && a.rows / kConvTile + a.B < 65535,
                "conv1d_prefill_silu_cuda: bad shape (B " + std::to_string(a.B) + ", rows " + std::to_string(a.rows) +
                    ", C " + std::to_string(a.C) + ", K " + std::to_string(a.K) + "; K <= 8, xbc_stride >= C)");
  cuda::require(a.xbc && a.state && a.slot && a.cu_rows && a.w && a.out, "conv1d_prefill_silu_cuda: null pointer");
  if (a.B == 0 || a.rows == 0) return;
  const dim3 grid(static_cast<unsigned>((a.C + 255) / 256),
                  static_cast<unsigned>((a.rows + kConvTile - 1) / kConvTile + a.B));
  cuda::launch_pdl(conv_prefill_kernel, grid, dim3(256), 0, stream, a);
  cuda::check_launch("conv1d_prefill_silu_cuda");
}

namespace mamba_prefill {

void validate_scan(const SsmScanArgs& a) {
  const int64_t N = a.state_dim;
  cuda::require(a.B >= 0 && a.B < 65536 && a.rows >= 0 && a.heads >= 1 && a.heads < 65536 && a.groups >= 1 &&
                    a.heads % a.groups == 0 && a.head_dim >= 1 &&
                    (N == 16 || N == 32 || N == 64 || N == 128 || N == 256),
                "ssm_scan_cuda: bad dims (heads % groups == 0, state_dim one of 16, 32, 64, 128, 256; got heads " +
                    std::to_string(a.heads) + ", groups " + std::to_string(a.groups) + ", state_dim " +
                    std::to_string(N) + ")");
  cuda::require(a.xbc_stride >= a.heads * a.head_dim + 2 * a.groups * N && a.xbc_stride % 4 == 0 &&
                    (a.heads * a.head_dim) % 4 == 0 && a.dt_stride >= a.heads,
                "ssm_scan_cuda: bad strides (xbc_stride >= Hm*P + 2*G*N, multiples of 4)");
  cuda::require(a.xbc && a.dt_raw && a.dt_bias && a.A && a.D && a.state && a.slot && a.cu_rows && a.y &&
                    (a.state_dtype == StateDType::F32 || a.row_pos),
                "ssm_scan_cuda: null pointer (a 16-bit state needs row_pos)");
  cuda::require(cuda::aligned16(a.xbc) && cuda::aligned16(a.state), "ssm_scan_cuda: xbc/state not 16-byte aligned");
}

void ssm_scan_sequential(const SsmScanArgs& a, int64_t chunked_from, cudaStream_t stream) {
  switch (a.state_dim) {
    case 16: launch_seq<4, 4>(a, chunked_from, stream); break;
    case 32: launch_seq<4, 8>(a, chunked_from, stream); break;
    case 64: launch_seq<8, 8>(a, chunked_from, stream); break;
    case 128: launch_seq<16, 8>(a, chunked_from, stream); break;
    default: launch_seq<32, 8>(a, chunked_from, stream); break;  // 256 (validated)
  }
  cuda::check_launch("ssm_scan_cuda (sequential)");
}

}  // namespace mamba_prefill
}  // namespace nemotron::kernels
