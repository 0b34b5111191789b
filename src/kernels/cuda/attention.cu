// Paged-KV causal GQA attention (API and cache layout: attention_cuda.h).
//
// attn_kernel: block (query row t, kv head g, chunk of HG q heads of g's group, split).
//   The block walks positions [s0, s1) of its sequence in tiles of P positions. Per tile:
//   K and V rows (prefetched into registers during the previous tile, through the block table)
//   are stored to shared memory as fp32 (FP8: e4m3 * scale, as the CPU dequantization), then
//     scores   S[h][p] = (q_h . k_p) * scale * log2(e)        thread = (head slot, position)
//     softmax  running max m_h and sum l_h per head (log2 domain), P[h][p] = 2^(S - m_h)
//     PV       acc[h][d] = acc * 2^(m_old - m_new) + sum_p P[h][p] v_p[d]   thread = (head slot, 4 dims)
//   all in fp32. With one split the block writes acc / l as BF16; with several it writes
//   (acc, m, l) to a temporary buffer and merge_kernel combines the splits of each (row, head).
// Shared memory (fp32, rows padded by 4 floats so that float4 reads by consecutive positions
// hit distinct banks): q [QR][D+4], k and v [P][D+4], P [PR][P], alpha [PR], m and l [HG].
// QR >= HG and PR >= HG are the rows the score and PV mappings touch: their inner loops run
// branch-free over every head slot and rows past HG hold junk whose results are dropped.
//   D <= 128: P = 32, HG <= 16, QR = 16 (<= 44.5 KB at D = 128);
//   128 < D <= 256: P = 16, HG <= 8, QR = 8 (<= 42.2 KB at D = 256).
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "kernels/attention_cuda.h"
#include "kernels/attention_splits.h"
#include "kernels/cuda/attention_args.cuh"
#include "kernels/cuda/common.cuh"
#include "util/env.h"

namespace nemotron::kernels {
namespace {

using attention_splits::ceil_div;
using attention_splits::kMinTilesPerSplit;
using attention_splits::SplitPlan;
using attention_splits::workspace_for;

// Resident blocks per SM that the register allocation targets (4: at most 128 registers).
#ifndef NEMOTRON_ATTN_MIN_BLOCKS
#define NEMOTRON_ATTN_MIN_BLOCKS 4
#endif

constexpr int kThreads = 128, kWarps = kThreads / 32;
constexpr int kMaxAcc = 4;    // heads per thread in the score, softmax and PV mappings
constexpr int kMaxLoads = 4;  // 8-element K (and V) pieces per thread per tile: P * D / 8 <= 512
constexpr float kLog2e = 1.4426950408889634f;

using Params = cuda::SplitParams;
using cuda::row_ok;
using cuda::split_len_for;

__device__ __forceinline__ void decode8(const uint4& w, float (&f)[8], bool fp8, float scale) {
  if (!fp8) {
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = cuda::bf16lo(u[i]);
      f[2 * i + 1] = cuda::bf16hi(u[i]);
    }
  } else {
    const uint32_t u[2] = {w.x, w.y};
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const __half2_raw r =
            __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>((u[i] >> (16 * h)) & 0xFFFFu), __NV_E4M3);
        const float2 x = __half22float2(*reinterpret_cast<const __half2*>(&r));
        f[4 * i + 2 * h] = x.x * scale;
        f[4 * i + 2 * h + 1] = x.y * scale;
      }
  }
}

__device__ __forceinline__ void store8(float* dst, const float (&f)[8]) {
  reinterpret_cast<float4*>(dst)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(dst)[1] = make_float4(f[4], f[5], f[6], f[7]);
}

__device__ __forceinline__ float dot4(const float4& a, const float4& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

// Score mapping: kThreads / kP head slots, kScoreHeads heads each; covers every HG.
template <int kP>
constexpr int kScoreHeads = kP == 32 ? 4 : 1;
template <int kP>
constexpr int kQRows = (kThreads / kP) * kScoreHeads<kP>;

template <bool kFp8, int kP>
__global__ void __launch_bounds__(kThreads, NEMOTRON_ATTN_MIN_BLOCKS) attn_kernel(const Params p) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  extern __shared__ float4 smem4[];
  __shared__ int bad_page;
  constexpr int P = kP, SS = kThreads / kP, kJ = kScoreHeads<kP>;
  const int D = p.D, DS = D + 4, D4 = D / 4, D8 = D / 8;
  float* q_s = reinterpret_cast<float*>(smem4);
  float* k_s = q_s + kQRows<kP> * DS;
  float* v_s = k_s + P * DS;
  float* pr_s = v_s + P * DS;
  float* alpha_s = pr_s + p.pr_rows * P;
  float* m_s = alpha_s + p.pr_rows;
  float* l_s = m_s + p.HG;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const cuda::SplitBlock blk = cuda::split_block(p);
  if (cuda::split_block_done(p, blk)) return;
  const int64_t t = blk.t;
  const int g = blk.kvh, nh = blk.nh, qh0 = blk.qh0, split = blk.split, seq = blk.seq;
  const int s0 = blk.s0, s1 = blk.s1;
  uint16_t* out_row = p.out + (t * p.q_heads + qh0) * D;

  if (tid == 0) bad_page = 0;
  const uint16_t* q_row = p.q + (t * p.q_heads + qh0) * D;
  for (int i = tid; i < nh * D8; i += kThreads) {
    const int h = i / D8, c = i % D8;
    float f[8];
    decode8(*reinterpret_cast<const uint4*>(q_row + h * D + c * 8), f, false, 1.0f);
    store8(q_s + h * DS + c * 8, f);
  }

  const int64_t slot_stride = static_cast<int64_t>(p.kv_heads) * D;  // elements per cache slot
  const int32_t* bt = p.block_tables + static_cast<int64_t>(seq) * p.max_pages;
  uint4 kr[kMaxLoads], vr[kMaxLoads];
  auto fetch = [&](int tile0) {
#pragma unroll
    for (int j = 0; j < kMaxLoads; ++j) {
      const int i = tid + j * kThreads;
      kr[j] = vr[j] = make_uint4(0, 0, 0, 0);  // zero in BF16 and E4M3: masked rows add nothing
      if (i >= P * D8) continue;
      const int pos = tile0 + i / D8, c = i % D8;
      if (pos >= s1) continue;
      const int page = bt[pos / p.page_size];
      if (page < 0 || page >= p.num_pages) {
        bad_page = 1;
        continue;
      }
      const int64_t off =
          (static_cast<int64_t>(page) * p.page_size + pos % p.page_size) * slot_stride + g * D + c * 8;
      if constexpr (kFp8) {
        const uint2 a = *reinterpret_cast<const uint2*>(static_cast<const uint8_t*>(p.k) + off);
        const uint2 b = *reinterpret_cast<const uint2*>(static_cast<const uint8_t*>(p.v) + off);
        kr[j] = make_uint4(a.x, a.y, 0, 0);
        vr[j] = make_uint4(b.x, b.y, 0, 0);
      } else {
        kr[j] = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.k) + off);
        vr[j] = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.v) + off);
      }
    }
  };
  auto stash = [&]() {
#pragma unroll
    for (int j = 0; j < kMaxLoads; ++j) {
      const int i = tid + j * kThreads;
      if (i >= P * D8) continue;
      const int pp = i / D8, c = i % D8;
      float f[8];
      decode8(kr[j], f, kFp8, p.k_scale);
      store8(k_s + pp * DS + c * 8, f);
      decode8(vr[j], f, kFp8, p.v_scale);
      store8(v_s + pp * DS + c * 8, f);
    }
  };

  // Score mapping: thread (sc_r, sc_p) computes heads sc_r + SS * j at position sc_p.
  const int sc_p = tid % P, sc_r = tid / P;
  // PV mapping: thread (pv_r, pv_c) owns heads pv_r + R * j, dims 4 pv_c .. 4 pv_c + 3.
  const int R = kThreads / D4, pv_r = tid / D4, pv_c = tid % D4;
  float acc[kMaxAcc][4] = {};
  float m_run[kMaxAcc], l_run[kMaxAcc];  // softmax state of heads warp + kWarps * j
#pragma unroll
  for (int j = 0; j < kMaxAcc; ++j) {
    m_run[j] = -INFINITY;
    l_run[j] = 0.0f;
  }

  __syncthreads();  // bad_page initialized, q staged
  fetch(s0);
  for (int tile0 = s0; tile0 < s1; tile0 += P) {
    __syncthreads();  // the previous tile's shared-memory reads are done
    stash();
    __syncthreads();
    if (tile0 + P < s1) fetch(tile0 + P);

    float sc[kJ] = {};
    const float4* kp = reinterpret_cast<const float4*>(k_s + sc_p * DS);
    const float4* qp = reinterpret_cast<const float4*>(q_s + sc_r * DS);
    for (int d4 = 0; d4 < D4; ++d4) {
      const float4 kv = kp[d4];
#pragma unroll
      for (int j = 0; j < kJ; ++j) sc[j] += dot4(qp[SS * j * (DS / 4) + d4], kv);
    }
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      const int h = sc_r + SS * j;
      if (h < nh) pr_s[h * P + sc_p] = tile0 + sc_p < s1 ? sc[j] * p.score_scale : -INFINITY;
    }
    __syncthreads();

#pragma unroll
    for (int j = 0; j < kMaxAcc; ++j) {
      const int h = warp + kWarps * j;
      if (h >= nh) continue;  // warp-uniform
      const float x = lane < P ? pr_s[h * P + lane] : -INFINITY;
      const float m_new = fmaxf(m_run[j], cuda::warp_max(x));  // finite: the tile has a valid position
      const float e = lane < P ? exp2f(x - m_new) : 0.0f;
      const float alpha = exp2f(m_run[j] - m_new);
      l_run[j] = l_run[j] * alpha + cuda::warp_sum(e);
      m_run[j] = m_new;
      if (lane < P) pr_s[h * P + lane] = e;
      if (lane == 0) alpha_s[h] = alpha;
    }
    __syncthreads();

    if (pv_r < R) {
      // Positions past s1 (up to the next multiple of 4) have P = 0 and zero V rows.
      const int np = min(P, s1 - tile0);
#pragma unroll
      for (int j = 0; j < kMaxAcc; ++j) {
        const float a = alpha_s[pv_r + R * j];
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[j][e] *= a;
      }
      for (int pp = 0; pp < np; pp += 4) {
        float4 w[kMaxAcc];
#pragma unroll
        for (int j = 0; j < kMaxAcc; ++j) w[j] = reinterpret_cast<const float4*>(pr_s + (pv_r + R * j) * P + pp)[0];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const float4 vv = reinterpret_cast<const float4*>(v_s + (pp + u) * DS)[pv_c];
#pragma unroll
          for (int j = 0; j < kMaxAcc; ++j) {
            const float x = u == 0 ? w[j].x : u == 1 ? w[j].y : u == 2 ? w[j].z : w[j].w;
            acc[j][0] += x * vv.x;
            acc[j][1] += x * vv.y;
            acc[j][2] += x * vv.z;
            acc[j][3] += x * vv.w;
          }
        }
      }
    }
  }

#pragma unroll
  for (int j = 0; j < kMaxAcc; ++j) {
    const int h = warp + kWarps * j;
    if (h < nh && lane == 0) {
      m_s[h] = m_run[j];
      l_s[h] = l_run[j];
    }
  }
  __syncthreads();
  const bool bad = bad_page != 0;
  if (pv_r >= R) return;
#pragma unroll
  for (int j = 0; j < kMaxAcc; ++j) {
    const int h = pv_r + R * j;
    if (h >= nh) continue;
    if (p.splits == 1) {
      const float inv = 1.0f / l_s[h];
      uint2 o;
      o.x = bad ? cuda::kAttnBf16NaN2
                : (cuda::f2bf(acc[j][0] * inv) | (static_cast<uint32_t>(cuda::f2bf(acc[j][1] * inv)) << 16));
      o.y = bad ? cuda::kAttnBf16NaN2
                : (cuda::f2bf(acc[j][2] * inv) | (static_cast<uint32_t>(cuda::f2bf(acc[j][3] * inv)) << 16));
      *reinterpret_cast<uint2*>(out_row + h * D + 4 * pv_c) = o;
    } else {
      const int64_t idx = (t * p.q_heads + qh0 + h) * p.splits + split;
      reinterpret_cast<float4*>(p.part_acc + idx * D)[pv_c] = make_float4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
      if (pv_c == 0) p.part_ml[idx] = make_float2(m_s[h], bad ? __int_as_float(0x7FC00000) : l_s[h]);
    }
  }
}

// One block per (row, q head): combines the splits that saw part of the row's context.
// kMergeThreads threads = G groups of D/4 column threads (G >= 4 since D <= 256): group g sums
// splits g, g + G, ... of float4 column c, so long contexts (hundreds of splits) are read by
// many independent loads at once; the G partial sums are then added in group order (fixed
// order: deterministic).
constexpr int kMergeThreads = 256;
__global__ void __launch_bounds__(kMergeThreads) merge_kernel(const Params p) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  __shared__ float4 part[kMergeThreads];
  __shared__ float lpart[kMergeThreads];
  __shared__ float mred[kMergeThreads / 32];
  const int64_t row = blockIdx.x;  // t * q_heads + head
  const int64_t t = row / p.q_heads;
  const int D4 = p.D / 4;
  int seq = 0, len = 0;
  uint16_t* o = p.out + row * p.D;
  if (!row_ok(p, t, &seq, &len)) {
    for (int i = threadIdx.x; i < p.D; i += blockDim.x) o[i] = cuda::kAttnBf16NaN;
    return;
  }
  const int split_len = split_len_for(p, len);
  const int n = min(p.splits, (len + split_len - 1) / split_len);
  const float2* ml = p.part_ml + row * p.splits;
  float M = -INFINITY;
  for (int s = threadIdx.x; s < n; s += blockDim.x) M = fmaxf(M, ml[s].x);
  M = cuda::warp_max(M);
  if ((threadIdx.x & 31) == 0) mred[threadIdx.x >> 5] = M;
  __syncthreads();
  M = -INFINITY;
#pragma unroll
  for (int w = 0; w < kMergeThreads / 32; ++w) M = fmaxf(M, mred[w]);
  const int G = kMergeThreads / D4, c = threadIdx.x % D4, g = threadIdx.x / D4;
  float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  float L = 0.0f;
  if (g < G) {
    const float4* acc = reinterpret_cast<const float4*>(p.part_acc + row * p.splits * p.D) + c;
#pragma unroll 4
    for (int s = g; s < n; s += G) {
      const float2 x = ml[s];
      const float w = exp2f(x.x - M);
      L += x.y * w;
      const float4 v = acc[static_cast<int64_t>(s) * D4];
      a.x += v.x * w;
      a.y += v.y * w;
      a.z += v.z * w;
      a.w += v.w * w;
    }
  }
  part[threadIdx.x] = a;
  lpart[threadIdx.x] = L;
  __syncthreads();
  if (g != 0) return;
  for (int j = 1; j < G; ++j) {
    const float4 v = part[j * D4 + c];
    a.x += v.x;
    a.y += v.y;
    a.z += v.z;
    a.w += v.w;
    L += lpart[j * D4 + c];
  }
  const float inv = 1.0f / L;
  uint2 r;
  r.x = cuda::f2bf(a.x * inv) | (static_cast<uint32_t>(cuda::f2bf(a.y * inv)) << 16);
  r.y = cuda::f2bf(a.z * inv) | (static_cast<uint32_t>(cuda::f2bf(a.w * inv)) << 16);
  reinterpret_cast<uint2*>(o)[c] = r;
}

int sm_count() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0)
    return 132;
  return sms;
}

}  // namespace

int64_t paged_attention_workspace_bytes(const PagedAttentionArgs& a) {
  return attention_splits::workspace_bytes(a, sm_count());
}

void paged_attention_cuda(const PagedAttentionArgs& a, cudaStream_t stream) {
  using cuda::require;
  const PagedKvCache& c = a.cache;
  const std::string name = "paged_attention_cuda: ";
  require(a.T >= 0, name + "T must be >= 0, got " + std::to_string(a.T));
  require(c.head_dim > 0 && c.head_dim % 8 == 0 && c.head_dim <= 256,
          name + "head_dim must be a multiple of 8 in [8, 256], got " + std::to_string(c.head_dim));
  require(a.q_heads * c.head_dim <= (1 << 20), name + "q_heads * head_dim too large");
  cuda::check_paged_shape(a, name);
  require(a.max_context >= 0 && a.num_splits >= 0, name + "max_context and num_splits must be >= 0");
  if (a.T == 0) return;
  cuda::check_paged_pointers(a, name);

  Params p{};
  static_cast<cuda::PagedParams&>(p) = cuda::paged_params(a);
  p.D = static_cast<int>(c.head_dim);
  const bool wide = p.D > 128;
  const int P = wide ? 16 : 32, q_rows = wide ? kQRows<16> : kQRows<32>;
  p.HG = std::min(p.group, wide ? 8 : 16);
  p.pr_rows = kMaxAcc * (kThreads / (p.D / 4));
  p.chunks = static_cast<int>(ceil_div(p.group, p.HG));
  const float scale = a.scale > 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(p.D));
  p.score_scale = scale * kLog2e;
  p.k_scale = c.dtype == KvDType::FP8_E4M3 ? c.k_scale : 1.0f;
  p.v_scale = c.dtype == KvDType::FP8_E4M3 ? c.v_scale : 1.0f;

  const int64_t base_blocks = a.T * p.kv_heads * p.chunks;
  require(base_blocks <= std::numeric_limits<int32_t>::max(), name + "too many query rows");
  const SplitPlan plan = attention_splits::plan(a, base_blocks, P, sm_count());
  const int64_t splits = plan.splits;
  p.splits = static_cast<int>(splits);
  p.tile = P;

  const int DS = p.D + 4;
  const size_t smem =
      sizeof(float) * static_cast<size_t>(q_rows * DS + 2 * P * DS + p.pr_rows * (P + 1) + 2 * p.HG);
  const dim3 grid(static_cast<unsigned>(base_blocks), 1, static_cast<unsigned>(splits));
  void* ws = nullptr;
  const bool own_ws = splits > 1 && !a.workspace;
  if (splits > 1) {
    const size_t parts = static_cast<size_t>(a.T * a.q_heads * splits);
    const int64_t bytes = workspace_for(a, splits);
    if (a.workspace) {
      require(a.workspace_bytes >= bytes && cuda::aligned16(a.workspace),
              name + "workspace of " + std::to_string(a.workspace_bytes) + " bytes (16-byte aligned) given, " +
                  std::to_string(bytes) + " needed");
      ws = a.workspace;
    } else {
      const cudaError_t e = cudaMallocAsync(&ws, static_cast<size_t>(bytes), stream);
      require(e == cudaSuccess, name + "cudaMallocAsync of " + std::to_string(bytes) +
                                    " bytes for the split-K partials failed: " + cudaGetErrorString(e));
    }
    p.part_acc = static_cast<float*>(ws);
    p.part_ml = reinterpret_cast<float2*>(p.part_acc + parts * p.D);
  }
  const bool fp8 = c.dtype == KvDType::FP8_E4M3;
  static const bool env_tensor_cores = !env_equals("NEMOTRON_DECODE_ATTENTION", "cuda-core");
  static const bool env_fp8_direct = !env_equals("NEMOTRON_DECODE_FP8", "tiles");
  const bool fp8_direct = fp8 && (a.fp8_direct == 1 || (a.fp8_direct < 0 && env_fp8_direct));
  const bool tensor_cores = (a.tensor_cores == 1 || (a.tensor_cores < 0 && env_tensor_cores)) &&
                            cuda::decode_tensor_cores_supported(p.D, p.HG, fp8, fp8_direct);
  if (tensor_cores) {
    cuda::launch_decode_tensor_cores(p, base_blocks, fp8, fp8_direct, stream);
  } else {
    auto* kernel = wide ? (fp8 ? attn_kernel<true, 16> : attn_kernel<false, 16>)
                        : (fp8 ? attn_kernel<true, 32> : attn_kernel<false, 32>);
    cuda::launch_pdl(kernel, grid, dim3(kThreads), smem, stream, p);
  }
  const cudaError_t launch = cudaGetLastError();
  if (splits > 1) {
    if (launch == cudaSuccess)
      cuda::launch_pdl(merge_kernel, dim3(static_cast<unsigned>(a.T * a.q_heads)), dim3(kMergeThreads), 0, stream, p);
    if (own_ws) cudaFreeAsync(ws, stream);
  }
  require(launch == cudaSuccess, name + "CUDA launch failed: " + cudaGetErrorString(launch));
  cuda::check_launch("paged_attention_cuda (merge)");
}

}  // namespace nemotron::kernels
