// Device MoE router. Ungrouped routing: up to 256 experts router_rank_kernel (one block per
// token, each expert's rank counted directly), more router_block_kernel (one block per token,
// bitwise search for the k-th key). Grouped routing: router_kernel, one warp per token, lane l
// owning experts l, l+32, ... (kPer per lane), the k-th key by the same bitwise search. Every
// path orders by higher score, then lower id, which reproduces route_topk_cpu's partial_sort
// order; group scores (sum of the two best biased scores in each group) and group selection
// follow the same order rules (stable: ties -> lower group).
#include <cmath>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/moe_cuda.h"

namespace nemotron::kernels {
namespace {

constexpr int kMaxPer = 32;  // E <= 1024
constexpr int kMaxK = 64;

struct Best {
  float v;
  int i;
};

__device__ __forceinline__ bool better(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

// Unsigned key ordered as the float (larger float, larger key); -0 and +0 get the same key, as
// they compare equal.
__device__ __forceinline__ uint32_t order_key(float v) {
  const uint32_t bits = __float_as_uint(v + 0.0f);
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

// Warp arg-max over (v, i) pairs; i < 0 marks "none". Every lane gets the winner.
__device__ __forceinline__ Best warp_argmax(Best b) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xFFFFFFFFu, b.v, o);
    const int i = __shfl_xor_sync(0xFFFFFFFFu, b.i, o);
    if (i >= 0 && (b.i < 0 || better(v, i, b.v, b.i))) b = {v, i};
  }
  return b;
}

// kPer: experts per lane (E <= 32 * kPer), so a 128-expert router loops over 4, not 32.
template <int kPer>
__global__ void router_kernel(const float* __restrict__ logits, const float* __restrict__ bias, RouterParams p,
                              int64_t T, int32_t* __restrict__ ids, float* __restrict__ weights) {
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (t >= T) return;
  const int lane = threadIdx.x & 31, E = static_cast<int>(p.experts), k = static_cast<int>(p.top_k);
  const float* lg = logits + t * E;
  float s[kPer], sel[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int e = lane + 32 * j;
    s[j] = sel[j] = -INFINITY;
    if (e < E) {
      s[j] = 1.0f / (1.0f + expf(-lg[e]));
      sel[j] = s[j] + (bias ? bias[e] : 0.0f);
    }
  }
  if (p.n_group > 1) {
    const int G = static_cast<int>(p.n_group), per = E / G;
    // Group g's score: top two biased scores among its experts (duplicates count twice).
    // Groups are ranked one at a time: the best remaining group score wins, ties -> lower g.
    // G is small in practice; scores are recomputed per group with two warp arg-max passes.
    extern __shared__ float gscore_smem[];
    float* gscore = gscore_smem + (threadIdx.x >> 5) * G;
    for (int g = 0; g < G; ++g) {
      Best a{-INFINITY, -1};
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int e = lane + 32 * j;
        if (e >= g * per && e < (g + 1) * per && (a.i < 0 || better(sel[j], e, a.v, a.i))) a = {sel[j], e};
      }
      const Best first = warp_argmax(a);
      Best b{-INFINITY, -1};
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int e = lane + 32 * j;
        if (e >= g * per && e < (g + 1) * per && e != first.i && (b.i < 0 || better(sel[j], e, b.v, b.i)))
          b = {sel[j], e};
      }
      const Best second = warp_argmax(b);
      if (lane == 0) gscore[g] = first.v + (second.i >= 0 ? second.v : -INFINITY);
    }
    __syncwarp();
    // Rank of group g = number of groups strictly ahead of it; kept when rank < topk_group.
    for (int j = 0; j < kPer; ++j) {
      const int e = lane + 32 * j;
      if (e >= E) break;
      const int g = e / per;
      int rank = 0;
      for (int h = 0; h < G; ++h) rank += (gscore[h] > gscore[g] || (gscore[h] == gscore[g] && h < g)) ? 1 : 0;
      if (rank >= p.topk_group) sel[j] = -INFINITY;
    }
  }
  // Top-k without k sequential arg-max rounds: (1) the k-th largest selection key by a
  // 32-step bitwise search (each step counts the keys >= a candidate over the warp), (2) the
  // chosen set = keys above it plus the lowest-id keys equal to it, (3) each chosen expert's
  // rank = chosen ones that beat it (higher score, or equal and lower id): route_topk_cpu's
  // partial_sort order. Experts past E get key 0, below every float's key, and are never chosen.
  uint32_t key[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const uint32_t kj = order_key(sel[j]);
    key[j] = lane + 32 * j < E ? kj : 0u;
  }
  uint32_t tau = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t cand = tau | (1u << bit);
    int cnt = 0;
#pragma unroll
    for (int j = 0; j < kPer; ++j) cnt += key[j] >= cand;
    if (__reduce_add_sync(0xFFFFFFFFu, static_cast<unsigned>(cnt)) >= static_cast<unsigned>(k)) tau = cand;
  }
  int above = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) above += key[j] > tau;
  const int need_eq = k - static_cast<int>(__reduce_add_sync(0xFFFFFFFFu, static_cast<unsigned>(above)));
  // Equal keys are taken in id order: e = lane + 32 j grows with j, then with the lane.
  const unsigned lt_mask = (1u << lane) - 1u;
  int eq_before = 0;
  unsigned chosen = 0;  // bit j: expert lane + 32 j is in the top k
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const unsigned eq = __ballot_sync(0xFFFFFFFFu, key[j] == tau);
    const int my_rank = eq_before + __popc(eq & lt_mask);
    if (key[j] > tau || (key[j] == tau && my_rank < need_eq)) chosen |= 1u << j;
    eq_before += __popc(eq);
  }
  // Gather the chosen (score, id) pairs into shared memory, in any order.
  __shared__ float cs[4][kMaxK], cw[4][kMaxK];
  __shared__ int ci[4][kMaxK];
  const int wib = threadIdx.x >> 5;
  int mine = __popc(chosen), off = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xFFFFFFFFu, off, o);
    if (lane >= o) off += v;
  }
  off -= mine;
#pragma unroll
  for (int j = 0; j < kPer; ++j)
    if (chosen >> j & 1u) {
      cs[wib][off] = sel[j];
      cw[wib][off] = s[j];
      ci[wib][off] = lane + 32 * j;
      ++off;
    }
  __syncwarp();
  float* wout = weights + t * k;
  int32_t* iout = ids + t * k;
  // Rank of chosen entry q (lane q, q + 32): how many chosen entries come before it.
  __shared__ float ranked[4][kMaxK];
  for (int q = lane; q < k; q += 32) {
    int rank = 0;
    for (int o = 0; o < k; ++o)
      rank += cs[wib][o] > cs[wib][q] || (cs[wib][o] == cs[wib][q] && ci[wib][o] < ci[wib][q]);
    iout[rank] = ci[wib][q];
    ranked[wib][rank] = cw[wib][q];
  }
  __syncwarp();
  // The sum in rank order (as route_topk_cpu), then the normalized, scaled weights.
  float sum = 0.0f;
  for (int r = 0; r < k; ++r) sum += ranked[wib][r];
  for (int r = lane; r < k; r += 32) {
    float w = ranked[wib][r];
    if (p.norm_topk_prob) w /= (sum + 1e-20f);
    wout[r] = w * p.routed_scaling_factor;
  }
}

// Ungrouped routing of up to kRankMaxE experts (Nano: 128, k = 6): one block per token, thread
// e owning expert e (blockDim = E rounded up to 32). Each thread counts the experts that beat
// its own (a higher selection key, or an equal key and a lower id: the same keys and order
// rules as router_kernel, so the same ids as route_topk_cpu) over all keys in shared memory;
// the k with rank < k write themselves to ids[rank]. No serial search or arg-max rounds: one
// barrier, ~E/4 broadcast 16-byte shared loads per thread, then the rank-order weight sum.
constexpr int kRankMaxE = 256;
__global__ void __launch_bounds__(kRankMaxE) router_rank_kernel(const float* __restrict__ logits,
                                                                const float* __restrict__ bias, RouterParams p,
                                                                int32_t* __restrict__ ids,
                                                                float* __restrict__ weights) {
  __shared__ uint4 keys4[kRankMaxE / 4];
  __shared__ float ranked[kMaxK];
  const int e = threadIdx.x, E = static_cast<int>(p.experts), k = static_cast<int>(p.top_k);
  const float b = bias && e < E ? bias[e] : 0.0f;  // the correction bias is a weight: read before the wait
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const int64_t t = blockIdx.x;
  float s = 0.0f;
  uint32_t key = 0u;  // experts past E: key 0, below every real key, and a higher id
  if (e < E) {
    s = 1.0f / (1.0f + expf(-logits[t * E + e]));
    const uint32_t bits = __float_as_uint(s + b + 0.0f);  // -0 -> +0: equal scores, equal keys
    key = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
  }
  reinterpret_cast<uint32_t*>(keys4)[e] = key;
  __syncthreads();
  int rank = 0;
  const int n4 = static_cast<int>(blockDim.x) >> 2;
  for (int q = 0; q < n4; ++q) {
    const uint4 kk = keys4[q];
    const int o = 4 * q;
    rank += (kk.x > key) + (kk.x == key && o < e);
    rank += (kk.y > key) + (kk.y == key && o + 1 < e);
    rank += (kk.z > key) + (kk.z == key && o + 2 < e);
    rank += (kk.w > key) + (kk.w == key && o + 3 < e);
  }
  if (e < E && rank < k) {
    ids[t * k + rank] = e;
    ranked[rank] = s;
  }
  __syncthreads();
  if (e < k) {
    // The sum in rank order (as route_topk_cpu), then the normalized, scaled weight.
    float sum = 0.0f;
    for (int r = 0; r < k; ++r) sum += ranked[r];
    float w = ranked[e];
    if (p.norm_topk_prob) w /= (sum + 1e-20f);
    weights[t * k + e] = w * p.routed_scaling_factor;
  }
}

// Ungrouped routing of many experts (E > 256, n_group == 1; Super: 512, k = 22): one block of
// kTopkThreads per token, thread i owning experts i, i + 128, ... (kPer each), so that each
// step of the search compares kPer keys per thread instead of 4 * kPer per lane. Same three
// stages and the same order rules as router_kernel.
constexpr int kTopkThreads = 128, kTopkWarps = kTopkThreads / 32;
template <int kPer>
__global__ void __launch_bounds__(kTopkThreads) router_block_kernel(const float* __restrict__ logits,
                                                                    const float* __restrict__ bias, RouterParams p,
                                                                    int32_t* __restrict__ ids,
                                                                    float* __restrict__ weights) {
  __shared__ unsigned cnt[2][kTopkWarps];
  __shared__ int eqc[kPer][kTopkWarps];
  __shared__ float cs[kMaxK], cw[kMaxK], ranked[kMaxK];
  __shared__ int ci[kMaxK], nchosen;
  __shared__ float total;
  cuda::pdl_trigger();
  cuda::pdl_wait();
  const int64_t t = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int E = static_cast<int>(p.experts), k = static_cast<int>(p.top_k);
  const float* lg = logits + t * E;
  float s[kPer], sel[kPer];
  uint32_t key[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int e = tid + kTopkThreads * j;
    s[j] = sel[j] = -INFINITY;
    key[j] = 0u;
    if (e < E) {
      s[j] = 1.0f / (1.0f + expf(-lg[e]));
      sel[j] = s[j] + (bias ? bias[e] : 0.0f);
      key[j] = order_key(sel[j]);
    }
  }
  if (tid == 0) nchosen = 0;
  uint32_t tau = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t cand = tau | (1u << bit);
    int c = 0;
#pragma unroll
    for (int j = 0; j < kPer; ++j) c += key[j] >= cand;
    const unsigned wc = __reduce_add_sync(0xFFFFFFFFu, static_cast<unsigned>(c));
    if (lane == 0) cnt[bit & 1][warp] = wc;
    __syncthreads();  // cnt[bit & 1] was last read two steps ago, before the previous barrier
    unsigned all = 0;
#pragma unroll
    for (int w = 0; w < kTopkWarps; ++w) all += cnt[bit & 1][w];
    if (all >= static_cast<unsigned>(k)) tau = cand;
  }
  int above = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) above += key[j] > tau;
  const unsigned wa = __reduce_add_sync(0xFFFFFFFFu, static_cast<unsigned>(above));
  // Equal keys in id order: e = tid + 128 j grows with j, then with the warp, then the lane.
  const unsigned lt_mask = (1u << lane) - 1u;
  unsigned eqm[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    eqm[j] = __ballot_sync(0xFFFFFFFFu, key[j] == tau);
    if (lane == 0) eqc[j][warp] = __popc(eqm[j]);
  }
  if (lane == 0) cnt[1][warp] = wa;  // cnt[1] was last read at bit 1, before bit 0's barrier
  __syncthreads();
  unsigned n_above = 0;
#pragma unroll
  for (int w = 0; w < kTopkWarps; ++w) n_above += cnt[1][w];
  const int need_eq = k - static_cast<int>(n_above);
  int before = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    int rank = before + __popc(eqm[j] & lt_mask);
    for (int w = 0; w < warp; ++w) rank += eqc[j][w];
    for (int w = 0; w < kTopkWarps; ++w) before += eqc[j][w];
    if (key[j] > tau || (key[j] == tau && rank < need_eq)) {
      const int slot = atomicAdd(&nchosen, 1);
      cs[slot] = sel[j];
      cw[slot] = s[j];
      ci[slot] = tid + kTopkThreads * j;
    }
  }
  __syncthreads();
  int32_t* iout = ids + t * k;
  float* wout = weights + t * k;
  for (int q = tid; q < k; q += kTopkThreads) {
    int rank = 0;
    for (int o = 0; o < k; ++o) rank += cs[o] > cs[q] || (cs[o] == cs[q] && ci[o] < ci[q]);
    iout[rank] = ci[q];
    ranked[rank] = cw[q];
  }
  __syncthreads();
  if (tid == 0) {
    float sum = 0.0f;
    for (int r = 0; r < k; ++r) sum += ranked[r];
    total = sum;
  }
  __syncthreads();
  for (int r = tid; r < k; r += kTopkThreads) {
    float w = ranked[r];
    if (p.norm_topk_prob) w /= (total + 1e-20f);
    wout[r] = w * p.routed_scaling_factor;
  }
}

// Router logits from fp32 rows: grid (ceil(E / 8), ceil(T / 8)), 8 warps; warp w computes
// expert blockIdx.x * 8 + w for the block's 8 rows, lane l reading element pairs 2l, 2l+64, ...
constexpr int kRouterRows = 8, kRouterWarps = 8;
__global__ void __launch_bounds__(32 * kRouterWarps) router_logits_kernel(const float* __restrict__ x,
                                                                          const uint16_t* __restrict__ w, int64_t T,
                                                                          int E, int H, float* __restrict__ logits) {
  const int lane = threadIdx.x & 31;
  const int e = blockIdx.x * kRouterWarps + (threadIdx.x >> 5);
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kRouterRows;
  if (e >= E) return;
  const int nr = static_cast<int>(T - t0 < kRouterRows ? T - t0 : kRouterRows);
  const uint32_t* wr = reinterpret_cast<const uint32_t*>(w + static_cast<int64_t>(e) * H);
  float acc[kRouterRows];
#pragma unroll
  for (int r = 0; r < kRouterRows; ++r) acc[r] = 0.0f;
  for (int i = 2 * lane; i < H; i += 64) {
    const uint32_t wp = wr[i >> 1];
    const float w0 = cuda::bf16lo(wp), w1 = cuda::bf16hi(wp);
#pragma unroll
    for (int r = 0; r < kRouterRows; ++r)
      if (r < nr) {
        const float2 xv = *reinterpret_cast<const float2*>(x + (t0 + r) * H + i);
        acc[r] += w0 * xv.x + w1 * xv.y;
      }
  }
#pragma unroll
  for (int r = 0; r < kRouterRows; ++r) {
    const float v = cuda::warp_sum(acc[r]);
    if (lane == 0 && r < nr) logits[(t0 + r) * E + e] = v;
  }
}

// Router logits of up to kGateRows BF16 rows (decode): grid ceil(E / 2); warp w of a block
// takes expert 2 * blockIdx.x + (w & 1) and K quarter w >> 1 (16-byte chunks of 8 elements,
// lane-strided), for every row; quarters are summed in order. 64 blocks for E = 128 instead
// of the 16 a warp-per-expert kernel would have.
constexpr int kGateRows = 8, kGateWarps = 8, kGateSplit = 4, kGatePre = 4;
__global__ void __launch_bounds__(32 * kGateWarps) gate_logits_kernel(const uint16_t* __restrict__ x,
                                                                      const uint16_t* __restrict__ w, int T, int E,
                                                                      int H, float* __restrict__ logits) {
  __shared__ float part[kGateWarps][kGateRows];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int e = blockIdx.x * 2 + (warp & 1), q = warp >> 1;
  const int chunks = H / 8, per = (chunks + kGateSplit - 1) / kGateSplit;
  const int c0 = q * per, c1 = min(chunks, c0 + per);
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(e < E ? e : 0) * H);
  // The lane's first kGatePre weight chunks (Nano: all 3, Super: all 4) are loaded before the
  // wait for the norm that writes x: the gate is a weight, constant during a step.
  uint4 pre[kGatePre];
#pragma unroll
  for (int i = 0; i < kGatePre; ++i) {
    const int c = c0 + lane + 32 * i;
    pre[i] = e < E && c < c1 ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
  }
  cuda::pdl_wait();
  cuda::pdl_trigger();
  float acc[kGateRows];
#pragma unroll
  for (int r = 0; r < kGateRows; ++r) acc[r] = 0.0f;
  auto dot = [&](const uint4 wv, int c) {  // chunk c of every row, in chunk order per lane
    const uint32_t ww[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
    for (int r = 0; r < kGateRows; ++r) {
      if (r >= T) break;
      const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * H) + c);
      const uint32_t xx[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
        acc[r] = fmaf(cuda::bf16hi(ww[i]), cuda::bf16hi(xx[i]), fmaf(cuda::bf16lo(ww[i]), cuda::bf16lo(xx[i]), acc[r]));
    }
  };
  if (e < E) {
#pragma unroll
    for (int i = 0; i < kGatePre; ++i)
      if (c0 + lane + 32 * i < c1) dot(pre[i], c0 + lane + 32 * i);
    for (int c = c0 + lane + 32 * kGatePre; c < c1; c += 32) dot(__ldg(wr + c), c);
  }
#pragma unroll
  for (int r = 0; r < kGateRows; ++r) {
    const float v = cuda::warp_sum(acc[r]);
    if (lane == 0) part[warp][r] = v;
  }
  __syncthreads();
  if (threadIdx.x < 2 * kGateRows) {
    const int ex = threadIdx.x & 1, r = threadIdx.x >> 1, ee = blockIdx.x * 2 + ex;
    if (ee < E && r < T) {
      float v = 0.0f;
      for (int qq = 0; qq < kGateSplit; ++qq) v += part[2 * qq + ex][r];
      logits[static_cast<int64_t>(r) * E + ee] = v;
    }
  }
}

}  // namespace

void gate_logits_bf16_cuda(const uint16_t* x, const uint16_t* w, int64_t T, int64_t E, int64_t H, float* logits,
                           cudaStream_t stream) {
  cuda::require(E >= 1 && E < (int64_t{1} << 24) && H >= 8 && H % 8 == 0 && H < (int64_t{1} << 30),
                "gate_logits_bf16_cuda: E must be in [1, 2^24), H a multiple of 8");
  cuda::require(T >= 0 && T <= kGateRows, "gate_logits_bf16_cuda: at most 8 rows");
  cuda::require(T == 0 || (x && w && logits), "gate_logits_bf16_cuda: null pointer");
  cuda::require(cuda::aligned16(x) && cuda::aligned16(w), "gate_logits_bf16_cuda: x and w must be 16-byte aligned");
  if (T == 0) return;
  cuda::launch_pdl(gate_logits_kernel, dim3(static_cast<unsigned>((E + 1) / 2)), dim3(32 * kGateWarps), 0, stream, x, w,
                   static_cast<int>(T), static_cast<int>(E), static_cast<int>(H), logits);
  cuda::check_launch("gate_logits_bf16_cuda");
}

void router_logits_f32_cuda(const float* x, const uint16_t* w, int64_t T, int64_t E, int64_t H, float* logits,
                            cudaStream_t stream) {
  cuda::require(E >= 1 && E <= (int64_t{1} << 20) && H >= 2 && H % 2 == 0 && H < (int64_t{1} << 30),
                "router_logits_f32_cuda: E must be in [1, 2^20], H even");
  cuda::require(T >= 0 && T < (int64_t{65535} * kRouterRows), "router_logits_f32_cuda: bad T");
  cuda::require(T == 0 || (x && w && logits), "router_logits_f32_cuda: null pointer");
  cuda::require(cuda::aligned16(x) && (reinterpret_cast<uintptr_t>(w) & 3u) == 0,
                "router_logits_f32_cuda: misaligned x or w");
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>((E + kRouterWarps - 1) / kRouterWarps),
                  static_cast<unsigned>((T + kRouterRows - 1) / kRouterRows));
  router_logits_kernel<<<grid, 32 * kRouterWarps, 0, stream>>>(x, w, T, static_cast<int>(E), static_cast<int>(H),
                                                               logits);
  cuda::check_launch("router_logits_f32_cuda");
}

void route_topk_cuda(const float* logits, const float* bias, const RouterParams& p, int64_t T, int32_t* ids,
                     float* weights, cudaStream_t stream) {
  cuda::require(p.experts >= 1 && p.experts <= 32 * kMaxPer, "route_topk_cuda: experts must be in [1, 1024]");
  cuda::require(p.top_k >= 1 && p.top_k <= p.experts && p.top_k <= kMaxK, "route_topk_cuda: bad top_k");
  cuda::require(p.n_group >= 1 && p.experts % p.n_group == 0 && p.topk_group >= 1 && p.topk_group <= p.n_group &&
                    p.n_group <= 256,
                "route_topk_cuda: n_group must divide experts (<= 256 groups), 1 <= topk_group <= n_group");
  cuda::require(T >= 0 && (T == 0 || (logits && ids && weights)), "route_topk_cuda: null pointer");
  if (T == 0) return;
  constexpr int kWarpsPerBlock = 4;
  const size_t smem = p.n_group > 1 ? sizeof(float) * kWarpsPerBlock * static_cast<size_t>(p.n_group) : 0;
  if (p.n_group == 1 && p.experts <= kRankMaxE && T < (int64_t{1} << 31)) {
    const unsigned threads = static_cast<unsigned>((p.experts + 31) / 32 * 32);
    cuda::launch_pdl(router_rank_kernel, dim3(static_cast<unsigned>(T)), dim3(threads), 0, stream, logits, bias, p, ids,
                     weights);
    cuda::check_launch("route_topk_cuda");
    return;
  }
  if (p.n_group == 1) {  // E in (256, 1024]
    const dim3 g1(static_cast<unsigned>(T)), b1(kTopkThreads);
    if (p.experts <= kTopkThreads * 4) cuda::launch_pdl(router_block_kernel<4>, g1, b1, 0, stream, logits, bias, p, ids, weights);
    else cuda::launch_pdl(router_block_kernel<8>, g1, b1, 0, stream, logits, bias, p, ids, weights);
    cuda::check_launch("route_topk_cuda");
    return;
  }
  const dim3 grid(static_cast<unsigned>((T + kWarpsPerBlock - 1) / kWarpsPerBlock)), block(32 * kWarpsPerBlock);
  const int per = static_cast<int>((p.experts + 31) / 32);
  if (per <= 4) cuda::launch_pdl(router_kernel<4>, grid, block, smem, stream, logits, bias, p, T, ids, weights);
  else if (per <= 8) cuda::launch_pdl(router_kernel<8>, grid, block, smem, stream, logits, bias, p, T, ids, weights);
  else if (per <= 16) cuda::launch_pdl(router_kernel<16>, grid, block, smem, stream, logits, bias, p, T, ids, weights);
  else cuda::launch_pdl(router_kernel<kMaxPer>, grid, block, smem, stream, logits, bias, p, T, ids, weights);
  cuda::check_launch("route_topk_cuda");
}

}  // namespace nemotron::kernels
