// Token sampling on the GPU (sampling_cuda.h; semantics in sampling.h).
//
// Grid (cs, n_rows), kThreads threads, thread-block clusters of cs blocks along x: the cs blocks
// of a cluster are one row (cs from V and n_rows: for V = 131072, 16 up to 8 rows, else 8).
// Block `rank` owns the logits [rank * chunk, min(V, (rank + 1) * chunk)) (chunk a multiple of 4)
// and keeps them, penalized, in shared memory `w` (padding: NaN), so the row is read from global
// memory once. Blocks exchange results by writing into each other's shared memory (DSMEM) before
// a cluster barrier and reading their own copy after it; every block derives the same values
// from the same data, so all blocks of a cluster take the same branches (and reach the same
// barriers). After the cluster's last barrier no block touches another's shared memory, so
// blocks may leave. Nothing in the results depends on cs or on the other rows: tokens come from
// exact comparisons and integer sums, lse from an integer (fixed-point) sum.
//
// Phases of a row:
//  1. load + penalties; per block: max s and its first index, the count of non-NaN s, the raw
//     max; every warp's max s and max raw logit go to every block. Barrier S0. Greedy and
//     degenerate rows are decided here.
//  2. bounds from the cluster's warp maxima (each above -inf is a logit of the row, so at least k
//     logits are >= the k-th largest): bound_k for top_k, bound_n for the top-n logprobs, and,
//     for top_p alone, the kCandTarget-th largest as a guess. One pass (barrier S1): the tokens
//     with d = M - s <= M - bound go into every block (at most kCandD; with top_k they hold K_k),
//     with top_p alone the masses of the others are summed; the tokens with a raw logit >=
//     bound_n (at least n) go into block 0 (at most kCandRaw); the fixed-point sum of
//     exp(l - max l) goes into block 0.
//  3. theta_k, theta_p from the candidates, by every block (one warp per candidate counts the
//     keys and exact u64 masses below it). When the candidates do not suffice (too many, top_k
//     beyond the warp maxima, the top_p boundary beyond them, or a flat row), a cluster radix
//     select over the float bits of d (d >= 0, so its bits order like d): top_k by count, then
//     top_p by fixed-point mass over d <= theta_k; three levels (key bits 31..21, 20..10,
//     9..0); each level: a shared-memory histogram per block, pushed with DSMEM atomics into the
//     owner block of each bin (bins split over the cluster), one barrier, then every block reads
//     the whole reduced histogram and finds the bin by a block prefix sum; the owners' histograms
//     rotate over three buffers, so a buffer is zeroed (by its owner, after the barrier of level
//     L, for level L + 2) only once every block has read it.
//  4. Gumbel argmax over K = { d <= theta }: one Philox call per 4 tokens, skipping a token whose
//     s + kGumbelBound is below the best value already known (the argmax token's own s + noise
//     to start with); block results into block 0, barrier S2.
//  5. block 0 writes the outputs (the top-n by ranking its raw candidates; when they overflowed,
//     a radix select over the raw logits and a push of the <= n winners before S2) and updates
//     the penalty state.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"
#include "kernels/sampling_cuda.h"

namespace nemotron::kernels {
namespace {

namespace cg = cooperative_groups;
using u64 = unsigned long long;

constexpr int kThreads = 512;
constexpr int kMinBlocks = 2;  // resident blocks per SM the registers allow (<= 64 registers)
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 2048;         // bins of radix levels 0 and 1 (11 bits); level 2 has 1024 (10 bits)
constexpr int kChunkTarget = 8192;  // logits per block the cluster size aims at
constexpr int kMaxCluster = 16;     // non-portable on sm_90 (8 where not schedulable)
constexpr int kCandD = 512;         // d candidates, a copy in every block
constexpr int kCandRaw = 256;       // raw-logit candidates, in block 0
constexpr int kCandTarget = 128;    // top_p alone: candidates down to the kCandTarget-th largest warp maximum
constexpr float kFlatGap = 8.0f;    // ... unless it lies within kFlatGap of M (a flat row)
constexpr uint32_t kNoKey = 0xFFFFFFFFu;
constexpr uint32_t kInfKey = 0x7F800000u;  // float bits of +inf

struct KernelArgs {
  const float* logits;
  int64_t V;
  const SampleRow* rows;
  int32_t* counts;
  uint32_t* seen;
  int64_t penalty_slots;
  int32_t* token;
  float* logprob;
  int32_t* top_ids;
  float* top_logprobs;
  int chunk;  // logits per block (multiple of 4)
  bool vec;   // rows 16-byte aligned (V % 4 == 0): float4 loads
};

struct Part {  // a block's phase-1 result (index INT_MAX: none)
  float v;       // max s (NaN ignored)
  int i;         // its first index
  float rmax;    // max raw logit
  int valid;     // non-NaN s
  int rnan;      // a raw logit is NaN
};

struct Best {  // a block's Gumbel winner
  float v;
  int i;
};

struct DCand {
  uint32_t key;  // float bits of d
  int32_t idx;
};

struct RawCand {
  uint32_t key;  // raw_key(l)
  int32_t idx;
  float l;
};

struct Shared {
  Part parts[kMaxCluster];  // written by block `rank` into every block
  float wmax_s[kMaxCluster * kWarps], wmax_r[kMaxCluster * kWarps];  // every warp's max s / raw logit, likewise
  float bound_k, bound_c, bound_n;  // the top_k-th / kCandTarget-th largest wmax_s, the n-th largest wmax_r
  Best best[kMaxCluster];   // block 0
  DCand dc[kCandD];         // every block
  u64 dq[kCandD];
  RawCand rc[kCandRaw];     // block 0
  RawCand top[kMaxTopLogprobs];  // block 0: the radix path's top-n
  uint32_t dc_pos, rc_pos, top_n;          // block 0: positions handed out
  uint32_t dc_n, rc_n, tail_lo, tail_hi;   // every block: totals pushed by all blocks
  uint32_t lse_lo, lse_hi;                 // block 0
  uint32_t blk_dc, blk_rc;                 // this block's candidate counts
  Part warp_part[kWarps], block_part;
  u64 scan[kWarps], tail;
  bool first_nan;  // block 0: s[0] is NaN (greedy / degenerate rows then take token 0)
  uint32_t sel_k, sel_p, sel_bin;
  u64 sel_resid, sel_cnt;
};

// Histograms of the radix path in dynamic shared memory: the block's own (a count, or a 64-bit
// mass as two 32-bit words with carry, per bin) and, as owner of bins [rank * per, (rank + 1) *
// per), three rotating cluster-reduced buffers of per + 1 entries (entry `per` of block 0: the
// level's tail weight).
struct Hist {
  uint32_t *cnt, *mlo, *mhi;   // [kBins] each
  uint32_t *rcnt, *rlo, *rhi;  // [3][per + 1] each
  int per;                     // kBins / cs
  __device__ int at(int buf, int off) const { return buf * (per + 1) + off; }
};

// 64-bit add as two 32-bit atomics (shared or distributed shared memory): 64-bit shared-memory
// atomics would be compare-and-swap loops.
__device__ __forceinline__ void add64(uint32_t* lo, uint32_t* hi, u64 v) {
  const uint32_t l = static_cast<uint32_t>(v), h = static_cast<uint32_t>(v >> 32);
  const uint32_t old = atomicAdd(lo, l);
  const uint32_t carry = old + l < old ? 1u : 0u;
  if (h + carry) atomicAdd(hi, h + carry);
}

__device__ __forceinline__ u64 join64(uint32_t lo, uint32_t hi) { return (static_cast<u64>(hi) << 32) | lo; }

__device__ __forceinline__ void better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__device__ __forceinline__ void merge_part(Part& p, const Part& o) {
  better(p.v, p.i, o.v, o.i);
  p.rmax = fmaxf(p.rmax, o.rmax);
  p.valid += o.valid;
  p.rnan |= o.rnan;
}

// Ascending key = descending logit (-0 as +0); NaN is never keyed.
__device__ __forceinline__ uint32_t raw_key(float l) {
  const uint32_t u = __float_as_uint(l == 0.0f ? 0.0f : l);
  return (u & 0x80000000u) ? u : ~(u | 0x80000000u);
}

// The fixed-point mass of a token at distance d (key = float bits of d): (uint64)(expf(-d) * 2^40),
// 0 from d = 28 on (expf(-28) * 2^40 < 1).
__device__ __forceinline__ u64 mass_of_key(uint32_t key) {
  if (key >= 0x41E00000u) return 0;  // 28.0f
  return static_cast<u64>(__fmul_rn(expf(-__uint_as_float(key)), 1099511627776.0f));
}

// Exclusive prefix sum over the block in thread order; `total` gets the block's sum.
__device__ u64 block_scan(u64 v, u64* ws, u64& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  u64 x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u64 y = __shfl_up_sync(0xFFFFFFFFu, x, o);
    if (lane >= o) x += y;
  }
  __syncthreads();  // ws may still be read by a previous call
  if (lane == 31) ws[warp] = x;
  __syncthreads();
  u64 before = 0, tot = 0;
#pragma unroll
  for (int k = 0; k < kWarps; ++k) {
    const u64 s = ws[k];
    if (k < warp) before += s;
    tot += s;
  }
  total = tot;
  return before + x - v;
}

struct SelectOut {
  bool found;    // false: fewer than `target` (count) in all
  uint32_t key;  // the smallest key t with weight(key <= t) >= target
  u64 resid;     // weight needed at t: target - weight(key < t)
  u64 cnt;       // weight at t (counts: the number of elements with key t)
};

// Cluster-wide radix select over the keys keyfn(j, &key) of this block's n elements (keyfn false:
// not an element): the smallest key t with weight(key <= t) >= target. Weights: 1 (kMass false)
// or mass_of_key(key). top_p >= 0: the target is (uint64)(top_p * total weight), set after level 0.
// Level 0 histograms only keys <= cut (the tail above is only summed, without atomics: most of a
// peaked row); when the target falls in the tail, level 0 is redone over every key. `lvl` counts
// levels for the buffer rotation. Every block reads the owners' buffers after each level's
// barrier: a later barrier must follow before any block leaves.
template <bool kMass, class KeyFn>
__device__ SelectOut cluster_select(const cg::cluster_group& cluster, Shared& sh, const Hist& h, int& lvl, int n,
                                    u64 target, float top_p, uint32_t cut, KeyFn keyfn) {
  SelectOut out{true, 0, 0, 0};
  uint32_t prefix = 0;
  for (int L = 0; L < 3; ++L) {
    const int shift = L == 0 ? 21 : (L == 1 ? 10 : 0);
    const int hi = L == 0 ? 32 : (L == 1 ? 21 : 10);  // bits above this level's (already decided)
    const int nb = 1 << (hi - shift);
    for (int b = threadIdx.x; b < nb; b += kThreads) {
      if constexpr (kMass) {
        h.mlo[b] = 0;
        h.mhi[b] = 0;
      } else {
        h.cnt[b] = 0;
      }
    }
    __syncthreads();
    u64 tail = 0;
    for (int j = threadIdx.x; j < n; j += kThreads) {
      uint32_t key;
      if (!keyfn(j, key)) continue;
      if (L > 0 && (key >> hi) != prefix) continue;
      const u64 wgt = kMass ? mass_of_key(key) : 1;
      if (L == 0 && key > cut) {
        tail += wgt;
        continue;
      }
      const int bin = static_cast<int>((key >> shift) & static_cast<uint32_t>(nb - 1));
      if constexpr (kMass) {
        if (wgt) add64(&h.mlo[bin], &h.mhi[bin], wgt);
      } else {
        atomicAdd(&h.cnt[bin], 1u);
      }
    }
    const int buf = lvl % 3;
    if (L == 0) {  // the tail's weight, into block 0's extra entry
      u64 tail_total;
      block_scan(tail, sh.scan, tail_total);
      if (threadIdx.x == 0 && tail_total)
        add64(cluster.map_shared_rank(h.rlo + h.at(buf, h.per), 0), cluster.map_shared_rank(h.rhi + h.at(buf, h.per), 0),
              tail_total);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < nb; b += kThreads) {
      const int owner = b / h.per, off = h.at(buf, b % h.per);
      if constexpr (kMass) {
        const u64 v = join64(h.mlo[b], h.mhi[b]);
        if (v) add64(cluster.map_shared_rank(h.rlo + off, owner), cluster.map_shared_rank(h.rhi + off, owner), v);
      } else {
        const uint32_t v = h.cnt[b];
        if (v) atomicAdd(cluster.map_shared_rank(h.rcnt + off, owner), v);
      }
    }
    cluster.sync();
    {  // the buffer of level lvl + 2 (last read at level lvl - 1, by now read by every block)
      const int zb = (lvl + 2) % 3;
      for (int b = threadIdx.x; b <= h.per; b += kThreads) {
        h.rcnt[h.at(zb, b)] = 0;
        h.rlo[h.at(zb, b)] = 0;
        h.rhi[h.at(zb, b)] = 0;
      }
    }
    ++lvl;
    // This thread's k consecutive bins of the reduced histogram, then the block prefix sum.
    const int k = nb / kThreads;  // 4 or 2
    u64 hv[4] = {0, 0, 0, 0}, mine = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      if (q >= k) break;
      const int b = threadIdx.x * k + q, owner = b / h.per, off = h.at(buf, b % h.per);
      if constexpr (kMass)
        hv[q] = join64(*cluster.map_shared_rank(h.rlo + off, owner), *cluster.map_shared_rank(h.rhi + off, owner));
      else
        hv[q] = *cluster.map_shared_rank(h.rcnt + off, owner);
      mine += hv[q];
    }
    if (L == 0 && threadIdx.x == 0) {  // read by the others after block_scan's barriers
      const int e = h.at(buf, h.per);
      sh.tail = join64(*cluster.map_shared_rank(h.rlo + e, 0), *cluster.map_shared_rank(h.rhi + e, 0));
    }
    u64 total;
    const u64 excl = block_scan(mine, sh.scan, total);
    if (L == 0) {
      const u64 full = total + sh.tail;
      if (top_p >= 0.0f) target = static_cast<u64>(static_cast<double>(top_p) * static_cast<double>(full));
      if (target > full) {  // same in every thread and block
        out.found = false;
        return out;
      }
      if (target > total) {  // the boundary lies in the tail: level 0 again over every key
        cut = kNoKey;
        L = -1;
        continue;
      }
    }
    if (target == 0) {
      if (threadIdx.x == 0) {
        sh.sel_bin = 0;
        sh.sel_resid = 0;
        sh.sel_cnt = hv[0];
      }
    } else if (excl < target && target <= excl + mine) {
      u64 cum = excl;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        if (q >= k) break;
        if (cum + hv[q] >= target) {
          sh.sel_bin = static_cast<uint32_t>(threadIdx.x * k + q);
          sh.sel_resid = target - cum;
          sh.sel_cnt = hv[q];
          break;
        }
        cum += hv[q];
      }
    }
    __syncthreads();
    prefix = (prefix << (hi - shift)) | sh.sel_bin;
    target = sh.sel_resid;
    out.cnt = sh.sel_cnt;
  }
  out.key = prefix;
  out.resid = target;
  return out;
}

__device__ __forceinline__ float penalize(float x, const SampleRow& r, bool fp, const int32_t* count) {
  if (r.repetition != 1.0f) x = x > 0.0f ? __fdiv_rn(x, r.repetition) : __fmul_rn(x, r.repetition);
  if (fp) {
    const int c = *count;
    if (c > 0) x = __fsub_rn(x, __fadd_rn(__fmul_rn(r.frequency, __int2float_rn(c)), r.presence));
  }
  return x;
}

// Phase 1's block reduction (warp shuffles, then thread 0 over the warps in order); every thread
// gets it. The warp maxima stay in sh.warp_part.
__device__ Part block_phase1(Part p, Shared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Part q;
    q.v = __shfl_xor_sync(0xFFFFFFFFu, p.v, o);
    q.i = __shfl_xor_sync(0xFFFFFFFFu, p.i, o);
    q.rmax = __shfl_xor_sync(0xFFFFFFFFu, p.rmax, o);
    q.valid = __shfl_xor_sync(0xFFFFFFFFu, p.valid, o);
    q.rnan = __shfl_xor_sync(0xFFFFFFFFu, p.rnan, o);
    merge_part(p, q);
  }
  if (lane == 0) sh.warp_part[warp] = p;
  __syncthreads();
  if (threadIdx.x == 0) {
    Part b = sh.warp_part[0];
    for (int k = 1; k < kWarps; ++k) merge_part(b, sh.warp_part[k]);
    sh.block_part = b;
  }
  __syncthreads();
  return sh.block_part;
}

// Float <-> uint32 keys that order like the floats (-0 below +0; no NaN here).
__device__ __forceinline__ uint32_t ord_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float from_ord_key(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

// The k-th largest of the nv <= 256 values v (no NaN), by one warp: a binary search over the
// ordered bits (the largest key x with at least k keys >= x). -inf when k is outside [1, nv].
__device__ float kth_largest_warp(const float* v, int nv, int k) {
  if (k < 1 || k > nv) return -INFINITY;
  const int lane = threadIdx.x & 31;
  uint32_t key[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) key[q] = lane + 32 * q < nv ? ord_key(v[lane + 32 * q]) : 0u;  // 0: below every key
  uint32_t x = 0;
  for (int b = 31; b >= 0; --b) {
    const uint32_t c = x | (1u << b);
    unsigned cnt = 0;
#pragma unroll
    for (int q = 0; q < 8; ++q) cnt += key[q] >= c;
    if (static_cast<int>(__reduce_add_sync(0xFFFFFFFFu, cnt)) >= k) x = c;
  }
  return from_ord_key(x);
}

// The bounds of phase 2 from the cluster's nv warp maxima (each above -inf is a logit of the row,
// so at least k logits are >= the k-th largest), one warp each.
__device__ void warp_max_bounds(Shared& sh, int nv, int k, int c, int nn) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (warp == 0) {
    const float b = kth_largest_warp(sh.wmax_s, nv, k);
    if (lane == 0) sh.bound_k = b;
  } else if (warp == 1) {
    const float b = kth_largest_warp(sh.wmax_s, nv, c);
    if (lane == 0) sh.bound_c = b;
  } else if (warp == 2) {
    const float b = kth_largest_warp(sh.wmax_r, nv, nn);
    if (lane == 0) sh.bound_n = b;
  }
  __syncthreads();
}

// Sum over the block; thread 0 gets it.
__device__ u64 block_sum64(u64 v, u64* ws) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  __syncthreads();
  if (lane == 0) ws[warp] = v;
  __syncthreads();
  u64 t = 0;
  if (threadIdx.x == 0)
    for (int k = 0; k < kWarps; ++k) t += ws[k];
  return t;
}

// Warp-collective: the lanes with c get consecutive positions from *pos (one atomic per warp);
// returns this lane's position (meaningful where c).
__device__ __forceinline__ uint32_t warp_claim(bool c, uint32_t* pos, uint32_t* block_count) {
  const unsigned bal = __ballot_sync(0xFFFFFFFFu, c);
  if (!bal) return 0;
  const int lane = threadIdx.x & 31, leader = __ffs(bal) - 1;
  uint32_t base = 0;
  if (lane == leader) {
    base = atomicAdd(pos, static_cast<uint32_t>(__popc(bal)));
    atomicAdd(block_count, static_cast<uint32_t>(__popc(bal)));
  }
  base = __shfl_sync(0xFFFFFFFFu, base, leader);
  return base + static_cast<uint32_t>(__popc(bal & ((1u << lane) - 1u)));
}

__global__ void __launch_bounds__(kThreads, kMinBlocks) sample_kernel(KernelArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Every block must have started before another writes into its shared memory: arrive now, wait
  // before the first remote write (the loads of phase 1 overlap the barrier).
  asm volatile("barrier.cluster.arrive.relaxed;" ::: "memory");
  __shared__ Shared sh;
  extern __shared__ __align__(16) unsigned char dsm[];
  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank()), cs = static_cast<int>(cluster.num_blocks());
  const int tid = threadIdx.x, lane = tid & 31;
  float* w = reinterpret_cast<float*>(dsm);
  Hist h;
  h.per = kBins / cs;
  h.cnt = reinterpret_cast<uint32_t*>(w + a.chunk);
  h.mlo = h.cnt + kBins;
  h.mhi = h.mlo + kBins;
  h.rcnt = h.mhi + kBins;
  h.rlo = h.rcnt + 3 * (h.per + 1);
  h.rhi = h.rlo + 3 * (h.per + 1);

  cuda::pdl_wait();
  cuda::pdl_trigger();
  const int r = blockIdx.y;
  const SampleRow row = a.rows[r];
  const int64_t V = a.V, base = static_cast<int64_t>(rank) * a.chunk;
  const int64_t left = V - base;
  const int n = left <= 0 ? 0 : (left < a.chunk ? static_cast<int>(left) : a.chunk);
  const int n4 = (n + 3) & ~3;
  const int slot = row.penalty_slot;
  if (row.logit_row < 0 || slot < -1 || slot >= a.penalty_slots || (slot >= 0 && (!a.counts || !a.seen))) {
    if (rank == 0 && tid < kMaxTopLogprobs) {  // a bad row: token -1, nothing else done
      if (tid == 0) {
        a.token[r] = -1;
        a.logprob[r] = 0.0f;
      }
      a.top_ids[static_cast<int64_t>(r) * kMaxTopLogprobs + tid] = -1;
      a.top_logprobs[static_cast<int64_t>(r) * kMaxTopLogprobs + tid] = -INFINITY;
    }
    asm volatile("barrier.cluster.wait;" ::: "memory");  // the same for the whole cluster
    return;
  }
  const float* lrow = a.logits + static_cast<int64_t>(row.logit_row) * V;
  const bool greedy = row.temperature == 0.0f;
  const float inv_t = greedy ? 1.0f : __fdiv_rn(1.0f, row.temperature);
  const bool fp = row.frequency != 0.0f || row.presence != 0.0f;
  const bool pen = slot >= 0 && (row.repetition != 1.0f || fp);
  const bool lp = row.logprobs >= 0;
  const int ntop = min(row.logprobs, kMaxTopLogprobs);
  const bool topk_on = !greedy && row.top_k > 0 && row.top_k < V, topp_on = !greedy && row.top_p < 1.0f;
  const bool keep_w = !greedy || (lp && !pen);  // later phases read w (raw logits: w when not penalized)
  const int64_t words = (V + 31) / 32;
  const int32_t* cnt = pen ? a.counts + static_cast<int64_t>(slot) * V : nullptr;
  const uint32_t* sn = pen ? a.seen + static_cast<int64_t>(slot) * words : nullptr;

  // Zero what other blocks push into (nothing is pushed before barrier S0).
  for (int b = tid; b < 2 * (h.per + 1); b += kThreads) {
    h.rcnt[b] = 0;
    h.rlo[b] = 0;
    h.rhi[b] = 0;
  }
  if (tid == 0) {
    sh.bound_k = sh.bound_c = sh.bound_n = -INFINITY;
    sh.dc_pos = sh.rc_pos = sh.top_n = 0;
    sh.dc_n = sh.rc_n = sh.tail_lo = sh.tail_hi = sh.lse_lo = sh.lse_hi = 0;
    sh.blk_dc = sh.blk_rc = 0;
  }

  // ---- Phase 1: load, penalize, block max / first argmax of s, raw max.
  Part p1{-INFINITY, INT_MAX, -INFINITY, 0, 0};
  auto take = [&](float l, int j, uint32_t word) {
    float x = l;
    if (pen && ((word >> ((base + j) & 31)) & 1u)) x = penalize(x, row, fp, cnt + base + j);
    if (keep_w) w[j] = x;
    if (lp) {
      if (l > p1.rmax) p1.rmax = l;
      p1.rnan |= isnan(l);
    }
    const float s = __fmul_rn(x, inv_t);
    p1.valid += !isnan(s);
    if (base + j == 0) sh.first_nan = isnan(s);
    if (s > p1.v) {  // NaN never; indices only grow per thread, so ties keep the first
      p1.v = s;
      p1.i = static_cast<int>(base + j);
    }
  };
  if (a.vec) {
    const float4* src = reinterpret_cast<const float4*>(lrow + base);
    const int ng = n / 4;
    for (int g0 = tid; g0 < ng; g0 += 4 * kThreads) {
      float4 v[4];
      uint32_t wd[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int g = g0 + u * kThreads;
        v[u] = g < ng ? __ldg(src + g) : make_float4(0.f, 0.f, 0.f, 0.f);
        wd[u] = (pen && g < ng) ? sn[(base + 4 * g) >> 5] : 0u;
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int g = g0 + u * kThreads;
        if (g < ng) {
          take(v[u].x, 4 * g, wd[u]);
          take(v[u].y, 4 * g + 1, wd[u]);
          take(v[u].z, 4 * g + 2, wd[u]);
          take(v[u].w, 4 * g + 3, wd[u]);
        }
      }
    }
  } else {
    for (int j = tid; j < n; j += kThreads) take(lrow[base + j], j, pen ? sn[(base + j) >> 5] : 0u);
  }
  if (keep_w)
    for (int j = n + tid; j < n4; j += kThreads) w[j] = __int_as_float(0x7FC00000);  // NaN padding
  p1 = block_phase1(p1, sh);
  asm volatile("barrier.cluster.wait;" ::: "memory");  // every block has started
  if (tid < cs) *cluster.map_shared_rank(&sh.parts[rank], tid) = p1;
  if (tid < cs * kWarps) {  // this block's warp maxima into block tid / kWarps
    const int wi = rank * kWarps + tid % kWarps;
    *cluster.map_shared_rank(&sh.wmax_s[wi], tid / kWarps) = sh.warp_part[tid % kWarps].v;
    *cluster.map_shared_rank(&sh.wmax_r[wi], tid / kWarps) = sh.warp_part[tid % kWarps].rmax;
  }
  cluster.sync();  // S0
  Part all = sh.parts[0];
  for (int k = 1; k < cs; ++k) merge_part(all, sh.parts[k]);
  const float M = all.v;
  // Greedy and degenerate rows: model::argmax of s (s = w when greedy); 0 when s[0] is NaN.
  int token = all.i == INT_MAX ? 0 : all.i;
  const bool sampled = !greedy && isfinite(M);

  // ---- Phase 2: candidates.
  const bool dsel = sampled && (topk_on || topp_on), rawsel = ntop > 0;
  bool dtry = dsel;  // thresholds from candidates (else the radix path)
  const bool lse_on = lp && isfinite(all.rmax) && !all.rnan;
  const bool need_tail = dsel && !topk_on;  // (read only where dtry)
  uint32_t dc_key = kInfKey;
  if (dsel || rawsel) {
    // top_k: at least top_k logits have s >= bound_k, so d <= M - bound_k holds K_k. top_p alone:
    // the kCandTarget-th largest warp maximum, a guess (its masses are checked: radix path else).
    const int nv = cs * kWarps;
    warp_max_bounds(sh, nv, topk_on ? row.top_k : 0, topk_on ? 0 : min(kCandTarget, nv), ntop);
    const float b = topk_on ? sh.bound_k : sh.bound_c;
    if (dsel && b > -INFINITY) dc_key = __float_as_uint(__fsub_rn(M, b));
    // top_p alone on a flat row (the kCandTarget-th warp maximum within kFlatGap of M): the
    // candidates cannot hold the mass; straight to the radix path.
    if (dsel && !topk_on && __fsub_rn(M, b) < kFlatGap) dtry = false;
  }
  const bool tail_on = need_tail && dtry;
  if (dtry || lse_on || rawsel) {
    const bool need_raw = lse_on || rawsel;
    u64 tail = 0, lsum = 0;
    const float4* w4 = reinterpret_cast<const float4*>(w);
    const int ng = n4 / 4, ngp = (ng + kThreads - 1) / kThreads * kThreads;  // warp-uniform trip count
    for (int g = tid; g < ngp; g += kThreads) {
      float xs[4], ls[4];
      const float4 x4 = g < ng && keep_w ? w4[g] : make_float4(NAN, NAN, NAN, NAN);
      xs[0] = x4.x;
      xs[1] = x4.y;
      xs[2] = x4.z;
      xs[3] = x4.w;
#pragma unroll
      for (int e = 0; e < 4; ++e) ls[e] = !need_raw ? NAN : (!pen ? xs[e] : (4 * g + e < n ? lrow[base + 4 * g + e] : NAN));
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int gi = static_cast<int>(base) + 4 * g + e;
        if (dtry) {
          const float d = __fsub_rn(M, __fmul_rn(xs[e], inv_t));
          const uint32_t key = __float_as_uint(d);
          const bool c = !isnan(d) && key <= dc_key;
          if (tail_on && !isnan(d) && !c) tail += mass_of_key(key);
          const uint32_t pos = warp_claim(c, cluster.map_shared_rank(&sh.dc_pos, 0), &sh.blk_dc);
          if (c && pos < kCandD)
            for (int b = 0; b < cs; ++b) *cluster.map_shared_rank(&sh.dc[pos], b) = DCand{key, gi};
        }
        if (lse_on && ls[e] > -INFINITY)
          lsum += static_cast<u64>(__fmul_rn(expf(__fsub_rn(ls[e], all.rmax)), 1099511627776.0f));
        if (rawsel) {
          const bool c = !isnan(ls[e]) && ls[e] >= sh.bound_n;
          const uint32_t pos = warp_claim(c, cluster.map_shared_rank(&sh.rc_pos, 0), &sh.blk_rc);
          if (c && pos < kCandRaw) *cluster.map_shared_rank(&sh.rc[pos], 0) = RawCand{raw_key(ls[e]), gi, ls[e]};
        }
      }
    }
    // Totals: candidate counts and the tail mass into every block, the lse sum into block 0.
    if (tail_on) tail = block_sum64(tail, sh.scan);
    if (lse_on) lsum = block_sum64(lsum, sh.scan);
    __syncthreads();  // blk_dc / blk_rc complete
    if (tail_on && tid == 0) sh.tail = tail;  // block_sum64 gave it to thread 0
    __syncthreads();
    if (tid < cs) {  // one remote block per thread (atomics with a result are round trips)
      if (dtry) atomicAdd(cluster.map_shared_rank(&sh.dc_n, tid), sh.blk_dc);
      if (rawsel) atomicAdd(cluster.map_shared_rank(&sh.rc_n, tid), sh.blk_rc);
      if (tail_on && sh.tail)
        add64(cluster.map_shared_rank(&sh.tail_lo, tid), cluster.map_shared_rank(&sh.tail_hi, tid), sh.tail);
    }
    if (tid == 0 && lse_on && lsum)
      add64(cluster.map_shared_rank(&sh.lse_lo, 0), cluster.map_shared_rank(&sh.lse_hi, 0), lsum);
    cluster.sync();  // S1
  }
  int lvl = 0;

  // ---- Phases 3-4: thresholds, Gumbel argmax (into block 0).
  if (sampled) {
    uint32_t thk = kInfKey, thp = kInfKey;
    bool fast = dtry && sh.dc_n <= kCandD;
    const int m = fast ? static_cast<int>(sh.dc_n) : 0;
    const int warp = tid >> 5;
    if (fast && topk_on && m >= row.top_k) {  // (m < top_k only when every candidate is one: theta_k = inf)
      // One warp per candidate: its rank range [#keys < key, #keys <= key) holds top_k - 1.
      if (tid == 0) sh.sel_k = kNoKey;
      __syncthreads();
      for (int c = warp; c < m; c += kWarps) {
        const uint32_t ki = sh.dc[c].key;
        unsigned lt = 0, le = 0;
        for (int j = lane; j < m; j += 32) {
          const uint32_t kj = sh.dc[j].key;
          lt += kj < ki;
          le += kj <= ki;
        }
        lt = __reduce_add_sync(0xFFFFFFFFu, lt);
        le = __reduce_add_sync(0xFFFFFFFFu, le);
        if (lane == 0 && static_cast<int>(lt) < row.top_k && row.top_k <= static_cast<int>(le)) sh.sel_k = ki;
      }
      __syncthreads();
      thk = sh.sel_k;
      if (thk == kNoKey) {  // (cannot happen: the bound guarantees top_k candidates)
        fast = false;
        thk = kInfKey;
      }
    }
    if (fast && topp_on) {
      // The masses of K_k (candidates with key <= thk), then one warp per candidate: the smallest
      // key whose cumulative mass (ties included) reaches the target.
      if (tid == 0) sh.sel_p = kNoKey;
      u64 mine = 0;
      for (int c = tid; c < m; c += kThreads) {
        const uint32_t kc = sh.dc[c].key;
        sh.dq[c] = kc <= thk ? mass_of_key(kc) : 0;
        mine += sh.dq[c];
      }
      const u64 tot = block_sum64(mine, sh.scan);  // thread 0
      if (tid == 0) sh.tail = tot;
      __syncthreads();
      const u64 full = sh.tail + (need_tail ? join64(sh.tail_lo, sh.tail_hi) : 0);
      const u64 target = static_cast<u64>(static_cast<double>(row.top_p) * static_cast<double>(full));
      if (target <= sh.tail) {  // else the boundary lies beyond the candidates: radix path
        for (int c = warp; c < m; c += kWarps) {
          const uint32_t ki = sh.dc[c].key;
          if (ki > thk) continue;
          u64 lt = 0, le = 0;
          for (int j = lane; j < m; j += 32) {
            const uint32_t kj = sh.dc[j].key;
            const u64 q = sh.dq[j];
            lt += kj < ki ? q : 0;
            le += kj <= ki ? q : 0;
          }
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) {
            lt += __shfl_xor_sync(0xFFFFFFFFu, lt, o);
            le += __shfl_xor_sync(0xFFFFFFFFu, le, o);
          }
          if (lane == 0 && (target == 0 ? ki == 0 : (lt < target && target <= le))) sh.sel_p = ki;
        }
      }
      __syncthreads();
      thp = sh.sel_p;
      fast = thp != kNoKey;
    }
    if (dsel && !fast) {  // radix path
      auto dkey = [&](int j, uint32_t& key) {
        const float d = __fsub_rn(M, __fmul_rn(w[j], inv_t));
        key = __float_as_uint(d);
        return !isnan(d);
      };
      thk = kInfKey;
      if (topk_on) {
        const SelectOut s =
            cluster_select<false>(cluster, sh, h, lvl, n, static_cast<u64>(row.top_k), -1.0f, 0x41800000u /* 16 */, dkey);
        if (s.found) thk = s.key;
      }
      if (topp_on) {
        const float D = fmaxf(16.0f, logf(__int2float_rn(all.valid) * 32.0f / (1.0f - row.top_p)));
        thp = cluster_select<true>(cluster, sh, h, lvl, n, 0, row.top_p, __float_as_uint(D),
                                   [&](int j, uint32_t& key) { return dkey(j, key) && key <= thk; })
                  .key;
      }
    }
    const float theta_m = row.min_p > 0.0f ? -logf(row.min_p) : INFINITY;
    const float theta = fminf(fminf(__uint_as_float(thk), __uint_as_float(thp)), theta_m);
    const int amax = all.i;  // d = 0: always kept
    const float lb =
        __fadd_rn(M, gumbel(sample_noise_block(row.seed, row.draw, static_cast<uint32_t>(amax >> 2)).v[amax & 3]));
    float thr = lb, bv = -INFINITY;
    int bi = INT_MAX;
    const float4* w4 = reinterpret_cast<const float4*>(w);
    for (int g = tid; g < n4 / 4; g += kThreads) {
      const float4 x4 = w4[g];
      const float xs[4] = {x4.x, x4.y, x4.z, x4.w};
      float s[4];
      bool in[4], any = false;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[e] = __fmul_rn(xs[e], inv_t);
        in[e] = __fsub_rn(M, s[e]) <= theta && __fadd_rn(s[e], kGumbelBound) >= thr;
        any |= in[e];
      }
      if (!any) continue;
      const int gi = static_cast<int>(base) + 4 * g;
      const Philox4 x = sample_noise_block(row.seed, row.draw, static_cast<uint32_t>(gi >> 2));
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (!in[e]) continue;
        const float v = __fadd_rn(s[e], gumbel(x.v[e]));
        if (v > bv) {
          bv = v;
          bi = gi + e;
          thr = fmaxf(thr, v);
        }
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      better(bv, bi, __shfl_xor_sync(0xFFFFFFFFu, bv, o), __shfl_xor_sync(0xFFFFFFFFu, bi, o));
    __syncthreads();  // warp_part is free
    if (lane == 0) {
      sh.warp_part[tid >> 5].v = bv;
      sh.warp_part[tid >> 5].i = bi;
    }
    __syncthreads();
    if (tid == 0) {
      for (int k = 0; k < kWarps; ++k) better(bv, bi, sh.warp_part[k].v, sh.warp_part[k].i);
      *cluster.map_shared_rank(&sh.best[rank], 0) = Best{bv, bi};
    }
  }

  // ---- Top-n when the raw candidates overflowed: radix select, winners pushed into block 0.
  const bool raw_fast = rawsel && sh.rc_n <= kCandRaw;
  if (rawsel && !raw_fast) {
    auto raw = [&](int j) { return pen ? lrow[base + j] : w[j]; };
    auto rkey = [&](int j, uint32_t& key) {
      const float l = raw(j);
      key = raw_key(l);
      return !isnan(l);
    };
    const SelectOut s = cluster_select<false>(cluster, sh, h, lvl, n, static_cast<u64>(ntop), -1.0f, kNoKey, rkey);
    const uint32_t t = s.found ? s.key : kNoKey;
    int it = INT_MAX;  // ties at t: indices <= it are listed
    if (s.found && s.resid < s.cnt) {
      const SelectOut si = cluster_select<false>(cluster, sh, h, lvl, n, s.resid, -1.0f, kNoKey, [&](int j, uint32_t& key) {
        uint32_t k;
        if (!rkey(j, k) || k != t) return false;
        key = static_cast<uint32_t>(base + j);
        return true;
      });
      it = static_cast<int>(si.key);
    }
    for (int j = tid; j < n; j += kThreads) {
      uint32_t k;
      if (!rkey(j, k)) continue;
      const int gi = static_cast<int>(base + j);
      if (k < t || (k == t && gi <= it)) {
        const uint32_t pos = atomicAdd(cluster.map_shared_rank(&sh.top_n, 0), 1u);
        if (pos < kMaxTopLogprobs) *cluster.map_shared_rank(&sh.top[pos], 0) = RawCand{k, gi, raw(j)};
      }
    }
  }

  // Everything block 0 needs is in its shared memory after this barrier; no block reads another's
  // shared memory after it, so blocks may leave.
  if (sampled || (rawsel && !raw_fast)) cluster.sync();  // S2
  if (rank != 0) return;

  // ---- Phase 5: block 0 writes the outputs.
  if (sampled) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int k = 0; k < cs; ++k) better(bv, bi, sh.best[k].v, sh.best[k].i);
    if (bi != INT_MAX) token = bi;
  } else if (sh.first_nan) {
    token = 0;
  }
  const float lse = lse_on ? all.rmax + logf(static_cast<float>(static_cast<double>(join64(sh.lse_lo, sh.lse_hi)) *
                                                                 9.094947017729282e-13))  // 2^-40
                           : NAN;
  int32_t* ids = a.top_ids + static_cast<int64_t>(r) * kMaxTopLogprobs;
  float* lps = a.top_logprobs + static_cast<int64_t>(r) * kMaxTopLogprobs;
  // The top-n list: ranks by (key, index) among the candidates (or the radix path's winners).
  const RawCand* list = raw_fast ? sh.rc : sh.top;
  const int m = rawsel ? static_cast<int>(raw_fast ? sh.rc_n : min(sh.top_n, static_cast<uint32_t>(kMaxTopLogprobs))) : 0;
  const int listed = min(m, ntop);
  if (tid < m) {
    const RawCand e = list[tid];
    int rk = 0;
    for (int j = 0; j < m; ++j) rk += list[j].key < e.key || (list[j].key == e.key && list[j].idx < e.idx);
    if (rk < ntop) {
      ids[rk] = e.idx;
      lps[rk] = __fsub_rn(e.l, lse);
    }
  }
  if (tid >= listed && tid < kMaxTopLogprobs) {
    ids[tid] = -1;
    lps[tid] = -INFINITY;
  }
  if (tid == 0) {
    a.token[r] = token;
    a.logprob[r] = lp ? __fsub_rn(lrow[token], lse) : 0.0f;
    if (slot >= 0) {  // every block has read the state (phase 1, before barrier S0)
      atomicAdd(a.counts + static_cast<int64_t>(slot) * V + token, 1);
      atomicOr(a.seen + static_cast<int64_t>(slot) * words + (token >> 5), 1u << (token & 31));
    }
  }
#endif
}

__global__ void mark_seen_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ slot_of_row, int64_t n,
                                 uint32_t* __restrict__ seen, int64_t V) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  const int64_t words = (V + 31) / 32;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t slot = slot_of_row[i], id = ids[i];
    if (slot >= 0 && id >= 0 && id < V) atomicOr(seen + slot * words + (id >> 5), 1u << (id & 31));
  }
}

__global__ void count_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ slot_of_row, int64_t n,
                             int32_t delta, int32_t* __restrict__ counts, int64_t V) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t slot = slot_of_row[i], id = ids[i];
    if (slot >= 0 && id >= 0 && id < V) atomicAdd(counts + slot * V + id, delta);
  }
}

// ---- Host: the launch plan (cluster size, chunk, shared memory) per (device, V, batch class), cached.

struct Plan {
  int cs = 0, chunk = 0;
  int64_t smem = 0;
};

int64_t smem_bytes(int cs, int64_t chunk) {
  const int64_t per = kBins / cs;
  return chunk * 4 + 3 * kBins * 4 + 3 * 3 * (per + 1) * 4;
}

bool cluster_fits(int cs, int64_t smem) {
  static int raised = 0;  // the largest dynamic shared-memory limit set so far (under the plan mutex)
  if (smem > raised) {
    if (cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) !=
        cudaSuccess)
      return false;
    raised = static_cast<int>(smem);
  }
  if (cs > 8 && cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(cs);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(cs), 1);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = static_cast<std::size_t>(smem);
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, sample_kernel, &cfg) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return clusters > 0;
}

// Clusters of up to 16 blocks for batches of up to kSmallBatch rows (latency), half that size
// beyond (more rows in flight). Tokens and logprobs do not depend on the cluster size.
constexpr int64_t kSmallBatch = 8;

Plan plan_for(int64_t V, int64_t n_rows) {
  static std::mutex mu;
  static std::map<std::tuple<int, int64_t, bool>, Plan> cache;
  const bool many = n_rows > kSmallBatch;
  int dev = 0;
  cuda::require(cudaGetDevice(&dev) == cudaSuccess, "sample_cuda: no current device");
  std::lock_guard<std::mutex> lock(mu);
  const auto it = cache.find({dev, V, many});
  if (it != cache.end()) return it->second;
  int cc_major = 0, smem_optin = 0;
  cuda::require(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess,
                "sample_cuda: device attributes unavailable");
  cuda::require(cc_major >= 9, "sample_cuda: needs an sm_90+ device (thread block clusters)");
  int cs0 = 1;
  while (cs0 < kMaxCluster && (V + cs0 - 1) / cs0 > kChunkTarget) cs0 *= 2;
  if (many && cs0 > 1) cs0 /= 2;
  // Preferred size first, then larger clusters (smaller chunks), then smaller ones.
  int order[8], no = 0;
  for (int cs = cs0; cs <= kMaxCluster; cs *= 2) order[no++] = cs;
  for (int cs = cs0 / 2; cs >= 1; cs /= 2) order[no++] = cs;
  for (int o = 0; o < no; ++o) {
    Plan p;
    p.cs = order[o];
    p.chunk = static_cast<int>(((V + p.cs - 1) / p.cs + 3) / 4 * 4);
    p.smem = smem_bytes(p.cs, p.chunk);
    if (p.smem > smem_optin || !cluster_fits(p.cs, p.smem)) continue;
    cache[{dev, V, many}] = p;
    return p;
  }
  throw Error("sample_cuda: V = " + std::to_string(V) + " does not fit the shared-memory plan (" +
              std::to_string(smem_optin) + " bytes per block, clusters of up to " + std::to_string(kMaxCluster) +
              " blocks)");
}

void check_shape(int64_t V, const char* what) {
  cuda::require(V >= 1 && V < (int64_t{1} << 31), std::string(what) + ": V must be in [1, 2^31), got " + std::to_string(V));
}

}  // namespace

int64_t sample_workspace_bytes(int64_t max_rows, int64_t V) {
  check_shape(V, "sample_workspace_bytes");
  cuda::require(max_rows >= 0 && max_rows < 65536,
                "sample_workspace_bytes: max_rows must be in [0, 65536), got " + std::to_string(max_rows));
  plan_for(V, 1);
  plan_for(V, max_rows);
  return 0;
}

void sample_cuda(const SampleCudaArgs& args, cudaStream_t stream) {
  check_shape(args.V, "sample_cuda");
  cuda::require(args.n_rows >= 0 && args.n_rows < 65536,
                "sample_cuda: n_rows must be in [0, 65536), got " + std::to_string(args.n_rows));
  if (args.n_rows == 0) return;
  cuda::require(args.logits && args.rows && args.token && args.logprob && args.top_ids && args.top_logprobs,
                "sample_cuda: null logits, rows or output pointer");
  cuda::require(args.penalty_slots >= 0, "sample_cuda: penalty_slots must be >= 0");
  cuda::require(args.penalty_slots == 0 || (args.counts && args.seen),
                "sample_cuda: penalty_slots > 0 needs the counts and seen arrays");
  const Plan p = plan_for(args.V, args.n_rows);
  KernelArgs k{args.logits, args.V, args.rows, args.counts, args.seen, args.counts && args.seen ? args.penalty_slots : 0,
               args.token, args.logprob, args.top_ids, args.top_logprobs, p.chunk,
               args.V % 4 == 0 && cuda::aligned16(args.logits)};
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(p.cs);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(p.cs), static_cast<unsigned>(args.n_rows));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = static_cast<std::size_t>(p.smem);
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = cuda::pdl_enabled() ? 2 : 1;
  cudaLaunchKernelEx(&cfg, sample_kernel, k);
  cuda::check_launch("sample_cuda");
}

void penalty_mark_seen_cuda(const int32_t* ids, const int32_t* slot_of_row, int64_t n, uint32_t* seen, int64_t V,
                            cudaStream_t stream) {
  check_shape(V, "penalty_mark_seen_cuda");
  cuda::require(n >= 0, "penalty_mark_seen_cuda: n must be >= 0");
  if (n == 0) return;
  cuda::require(ids && slot_of_row && seen, "penalty_mark_seen_cuda: null pointer");
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 1024);
  cuda::launch_pdl(mark_seen_kernel, dim3(static_cast<unsigned>(blocks)), dim3(threads), 0, stream, ids, slot_of_row, n,
                   seen, V);
  cuda::check_launch("penalty_mark_seen_cuda");
}

void penalty_count_cuda(const int32_t* ids, const int32_t* slot_of_row, int64_t n, int32_t delta, int32_t* counts,
                        int64_t V, cudaStream_t stream) {
  check_shape(V, "penalty_count_cuda");
  cuda::require(n >= 0, "penalty_count_cuda: n must be >= 0");
  if (n == 0) return;
  cuda::require(ids && slot_of_row && counts, "penalty_count_cuda: null pointer");
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 1024);
  cuda::launch_pdl(count_kernel, dim3(static_cast<unsigned>(blocks)), dim3(threads), 0, stream, ids, slot_of_row, n,
                   delta, counts, V);
  cuda::check_launch("penalty_count_cuda");
}

void penalty_reset_slot_cuda(int32_t* counts, uint32_t* seen, int64_t V, int slot, cudaStream_t stream) {
  check_shape(V, "penalty_reset_slot_cuda");
  cuda::require(slot >= 0, "penalty_reset_slot_cuda: slot must be >= 0, got " + std::to_string(slot));
  cuda::require(counts && seen, "penalty_reset_slot_cuda: null pointer");
  const int64_t words = (V + 31) / 32;
  cuda::require(cudaMemsetAsync(counts + static_cast<int64_t>(slot) * V, 0, static_cast<std::size_t>(V) * 4, stream) ==
                        cudaSuccess &&
                    cudaMemsetAsync(seen + static_cast<int64_t>(slot) * words, 0, static_cast<std::size_t>(words) * 4,
                                    stream) == cudaSuccess,
                "penalty_reset_slot_cuda: cudaMemsetAsync failed");
}

}  // namespace nemotron::kernels
