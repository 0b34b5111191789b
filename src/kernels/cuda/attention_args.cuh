#pragma once
// What the paged attention launchers (attention.cu, attention_prefill.cu) share: the argument
// checks (host-only; each throws nemotron::Error prefixed with `name`, the launcher's name) and
// the kernel parameters both kernels read the same way.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/attention_cuda.h"
#include "kernels/attention_splits.h"
#include "kernels/cuda/common.cuh"

namespace nemotron::kernels::cuda {

// Head counts, cache and block-table shape, scale and FP8 scales.
inline void check_paged_shape(const PagedAttentionArgs& a, const std::string& name) {
  const PagedKvCache& c = a.cache;
  require(c.kv_heads > 0 && a.q_heads > 0 && a.q_heads % c.kv_heads == 0,
          name + "q_heads (" + std::to_string(a.q_heads) + ") must be a positive multiple of kv_heads (" +
              std::to_string(c.kv_heads) + ")");
  require(c.num_pages > 0 && c.page_size > 0 && a.max_pages > 0, name + "num_pages, page_size and max_pages must be > 0");
  require(a.max_pages * c.page_size <= std::numeric_limits<int32_t>::max() &&
              c.num_pages <= std::numeric_limits<int32_t>::max(),
          name + "max_pages * page_size and num_pages must fit int32");
  require(std::isfinite(a.scale) && a.scale >= 0.0f, name + "scale must be finite and >= 0 (0 = 1/sqrt(head_dim))");
  if (c.dtype == KvDType::FP8_E4M3)
    require(std::isfinite(c.k_scale) && std::isfinite(c.v_scale) && c.k_scale > 0 && c.v_scale > 0,
            name + "FP8 k_scale and v_scale must be finite and > 0");
}

// Pointers present and 16-byte aligned (checked only when there is work).
inline void check_paged_pointers(const PagedAttentionArgs& a, const std::string& name) {
  const PagedKvCache& c = a.cache;
  require(a.q && a.out && a.query_seq && a.query_pos && a.block_tables && c.k && c.v, name + "null pointer");
  require(aligned16(a.q) && aligned16(a.out) && aligned16(c.k) && aligned16(c.v),
          name + "q, out and the cache's k and v must be 16-byte aligned");
}

// The part of both kernels' parameters taken as is from the arguments (each kernel's Params
// derives from it and adds its own launch shape).
struct PagedParams {
  const uint16_t* q;             // [T, q_heads, D] BF16
  uint16_t* out;                 // [T, q_heads, D] BF16
  const int32_t* query_seq;      // [T] block-table row of each query row
  const int32_t* query_pos;      // [T] position of each query row (it sees positions <= this)
  const int32_t* block_tables;   // [rows, max_pages] page ids
  const void* k;                 // [num_pages, page_size, kv_heads, D] BF16 or FP8
  const void* v;
  int64_t max_pages, num_pages;
  int page_size, kv_heads, q_heads, group;  // group = q_heads / kv_heads
};

inline PagedParams paged_params(const PagedAttentionArgs& a) {
  const PagedKvCache& c = a.cache;
  PagedParams p{};
  p.q = a.q;
  p.out = a.out;
  p.query_seq = a.query_seq;
  p.query_pos = a.query_pos;
  p.block_tables = a.block_tables;
  p.k = c.k;
  p.v = c.v;
  p.max_pages = a.max_pages;
  p.num_pages = c.num_pages;
  p.page_size = static_cast<int>(c.page_size);
  p.kv_heads = static_cast<int>(c.kv_heads);
  p.q_heads = static_cast<int>(a.q_heads);
  p.group = p.q_heads / p.kv_heads;
  return p;
}

inline constexpr uint16_t kAttnBf16NaN = 0x7FC0;        // the rows of a bad block or row
inline constexpr uint32_t kAttnBf16NaN2 = 0x7FC07FC0u;  // two of them

// paged_attention_cuda's parameters: one block per (query row, kv head, chunk of HG q heads,
// split), shared by the CUDA-core kernel (attention.cu), the tensor-core decode kernel
// (attention_decode.cu) and the merge of the splits (attention.cu).
struct SplitParams : PagedParams {
  int D;
  int HG, chunks;     // q heads per block (<= group); chunks = ceil(group / HG)
  int pr_rows;        // CUDA-core kernel: rows of the P and alpha arrays, kMaxAcc * (128 / (D / 4))
  int splits, tile;   // split-K blocks per (row, head chunk); positions per tile (P)
  float score_scale;  // scale * log2(e)
  float k_scale, v_scale;
  float* part_acc;   // [T, q_heads, splits, D] unnormalized sum of P * v (v_scale applied)
  float2* part_ml;   // [T, q_heads, splits] (m, l), m in the log2 domain; l = NaN when a page id was bad
};

// Positions per split for a row of context length len, chosen on the device so that one
// launch shape (fixed `splits`, sized on the host for the largest context) fits every step of
// a captured graph: the context is spread over as many of the splits as keep at least
// kMinTilesPerSplit tiles each; splits past the context exit at once. Always a multiple of
// the tile, and ceil(len / split_len) <= splits.
__device__ __forceinline__ int split_len_for(const SplitParams& p, int len) {
  const int tiles = (len + p.tile - 1) / p.tile;
  return max(attention_splits::kMinTilesPerSplit, (tiles + p.splits - 1) / p.splits) * p.tile;
}

// Sequence and length (query_pos + 1) of row t; false for ids that would read out of bounds.
__device__ __forceinline__ bool row_ok(const SplitParams& p, int64_t t, int* seq, int* len) {
  const int s = p.query_seq[t], pos = p.query_pos[t];
  *seq = s;
  *len = pos + 1;
  return s >= 0 && pos >= 0 && pos < p.max_pages * p.page_size;
}

// The cp.async of 16-byte chunk `ch` of N keys j, j + step, ... (one thread's keys of a tile):
// their K and V rows (kv head kvh, rows of row_bytes bytes; cache [num_pages, page_size,
// kv_heads, row]) through the block table bt into kd and vd, rows dst_step bytes apart. A key
// at or past `end` is zero-filled (not read); so is one on a page id outside [0, num_pages),
// which also sets *bad (its block's rows come out NaN). The page and offset are divided out
// once and then walked, and a page id is read once per page (a division and a table read per
// chunk were a large share of a decode tile's instructions).
template <int N>
__device__ __forceinline__ void cp_async_kv_keys(const PagedParams& p, const int32_t* bt, int j, int step, int end,
                                                 int kvh, int row_bytes, int ch, char* kd, char* vd, int dst_step,
                                                 int* bad) {
  const char* k0 = static_cast<const char*>(p.k);
  const char* v0 = static_cast<const char*>(p.v);
  const int64_t slot_bytes = static_cast<int64_t>(p.kv_heads) * row_bytes;
  const int64_t head_off = static_cast<int64_t>(kvh) * row_bytes + ch * 16;
  int pg = j / p.page_size, sl = j - pg * p.page_size, read_pg = -1, page = -1;
#pragma unroll
  for (int r = 0; r < N; ++r) {
    const char* ks = k0;
    const char* vs = v0;
    int n = 0;
    if (j < end) {
      if (pg != read_pg) {
        page = bt[pg];
        read_pg = pg;
      }
      if (page >= 0 && page < p.num_pages) {
        const int64_t off = (static_cast<int64_t>(page) * p.page_size + sl) * slot_bytes + head_off;
        ks += off;
        vs += off;
        n = 16;
      } else {
        *bad = 1;
      }
    }
    cp_async16(kd + r * dst_step, ks, n);
    cp_async16(vd + r * dst_step, vs, n);
    j += step;
    sl += step;
    while (sl >= p.page_size) {
      sl -= p.page_size;
      ++pg;
    }
  }
}

// A block of paged_attention_cuda's grid (blockIdx.x = row t x kv head x head chunk, z =
// split): its query row, kv head, first q head and head count, and the split's positions
// [s0, s1) of the row's context (len = position + 1; ok = row_ok).
struct SplitBlock {
  int64_t t;
  int kvh, nh, qh0, split, seq, len, s0, s1;
  bool ok;
};
__device__ __forceinline__ SplitBlock split_block(const SplitParams& p) {
  SplitBlock b;
  const int hc_total = p.kv_heads * p.chunks;
  b.t = blockIdx.x / hc_total;
  const int hc = static_cast<int>(blockIdx.x % hc_total);
  b.kvh = hc / p.chunks;
  const int h0 = (hc % p.chunks) * p.HG;  // the chunk's first head within the kv head's group
  b.nh = min(p.HG, p.group - h0);
  b.qh0 = b.kvh * p.group + h0;
  b.split = static_cast<int>(blockIdx.z);
  b.seq = 0;
  b.len = 0;
  b.ok = row_ok(p, b.t, &b.seq, &b.len);
  const int split_len = split_len_for(p, b.len);
  b.s0 = b.split * split_len;
  b.s1 = b.split == p.splits - 1 ? b.len : min(b.len, b.s0 + split_len);
  return b;
}

// A block with nothing to compute, before it touches shared memory: with several splits a bad
// row or an idle split (merge_kernel covers both); with one, a bad row, whose outputs it writes
// NaN here.
__device__ __forceinline__ bool split_block_done(const SplitParams& p, const SplitBlock& b) {
  if (p.splits > 1 && (!b.ok || b.s0 >= b.len)) return true;
  if (b.ok) return false;
  uint16_t* out = p.out + (b.t * p.q_heads + b.qh0) * p.D;
  for (int i = threadIdx.x; i < b.nh * p.D; i += blockDim.x) out[i] = kAttnBf16NaN;
  return true;
}

// The tensor-core decode kernel (attention_decode.cu): head_dim 32, 64 or 128 with at most 16
// q heads per block (HG), where its shared memory fits the device; it takes
// paged_attention_cuda's grid, split partition and partials. fp8_direct (with fp8): E4M3 K/V
// straight into f16 mmas instead of converted BF16 tiles.
bool decode_tensor_cores_supported(int head_dim, int heads_per_block, bool fp8, bool fp8_direct);
void launch_decode_tensor_cores(const SplitParams& p, int64_t base_blocks, bool fp8, bool fp8_direct,
                                cudaStream_t stream);

}  // namespace nemotron::kernels::cuda
