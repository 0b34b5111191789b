// Tensor-core paged attention for runs of query rows of one sequence (prefill chunks); API in
// attention_cuda.h (paged_attention_runs_cuda), results as paged_attention_cuda's.
//
// run_attn_kernel: block = (tile of kBM = 64 query rows of one run, kHeads q heads of one kv
// head); 4 warps per head, warp w: head w / 4, rows 16 (w % 4)..+15 of the tile. kHeads = 2
// where the GQA group is even (the two heads share every K/V tile), else 1. Blocks take tiles
// last first: a run's later tiles walk more keys (causal), so the long blocks start in the first
// wave. The block walks its sequence's keys 0 .. kv_len-1 (kv_len = the tile's largest position
// + 1) in tiles of kBN = 64 keys, each through the block table by cp.async into a 2-stage ring
// (tile t + 1 in flight while tile t is multiplied):
//   ring    BF16: the rows as the mma reads them ([kBN][D + 8] per K and per V); FP8: the stored
//           e4m3 rows ([kBN][D + 16] bytes), converted once arrived to one BF16 K and V tile
//           ([kBN][D + 8], the e4m3 values exactly; scales applied to the scores and the output)
//   scores  S = Q K^T on mma.sync m16n8k16 (BF16 in, fp32 out): per warp 16 x 64, Q fragments
//           held in registers for the whole walk, K fragments read from shared memory
//   softmax S * scale * log2(e), keys past a row's position masked (tiles wholly at or before
//           every row of the warp skip the mask); running max m and per-lane partial sums l per
//           row in fp32 (the four lanes of a row share m)
//   PV      O = O * 2^(m_old - m_new) + P V: P (rounded to BF16) is the A operand straight from
//           the score registers; V fragments by ldmatrix.trans from row-major shared rows.
// Per key tile: issue t + 1, wait for t, barrier, (FP8: convert, barrier), multiply, barrier
// (the stage is free for the issue of t + 2). Then O / l (times the FP8 v scale) is written as
// BF16. Shared BF16 rows are padded by 8 elements (16 bytes) so that the 32-bit fragment loads
// and the ldmatrix rows of one access hit distinct banks (D = 128, 2 heads: 102 KB BF16).
// Rows whose sequence differs from the run's first row, or whose position is out of range, and
// every row of a tile that meets a page id outside [0, num_pages), come out NaN (never an
// out-of-bounds read), as in paged_attention_cuda.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "kernels/attention_cuda.h"
#include "kernels/cuda/attention_args.cuh"
#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dequant.cuh"

namespace nemotron::kernels {
namespace {

constexpr int kBM = 64, kBN = 64, kThreads = 128;
constexpr int kMaxRuns = 16;  // runs per launch (more: several launches)
constexpr float kLog2e = 1.4426950408889634f;

struct RunParams : cuda::PagedParams {
  float score_scale;  // scale * log2(e) (* k_scale for FP8)
  float out_scale;    // 1 (v_scale for FP8)
  int n_runs;
  int64_t row0[kMaxRuns];
  int count[kMaxRuns];
  int tile0[kMaxRuns + 1];  // first tile of each run; tile0[n_runs] = tiles in all
};

// Shared memory of one block (bytes): q rows of every head, the 2-stage ring, FP8 tiles.
template <int D, bool kFp8>
struct RunLayout {
  static constexpr int S = D + 8;                       // BF16 row stride of q and of mma tiles (elements)
  static constexpr int kEsz = kFp8 ? 1 : 2;             // stored bytes per K or V element
  static constexpr int RB = D * kEsz;                   // stored bytes per K or V row
  static constexpr int CH = RB / 16;                    // 16-byte chunks per row
  static constexpr int RS = kFp8 ? D + 16 : 2 * S;      // ring row stride (bytes)
  static constexpr int kStage = 2 * kBN * RS;           // one stage: K rows, then V rows (bytes)
  static constexpr int kTile = kBN * S * 2;             // one converted BF16 tile (bytes; FP8 only)
  static std::size_t bytes(int heads) {
    return static_cast<std::size_t>(heads) * kBM * S * 2 + 2 * static_cast<std::size_t>(kStage) +
           (kFp8 ? 2 * static_cast<std::size_t>(kTile) : 0);
  }
};

template <int D, bool kFp8, int kHeads>
__global__ void __launch_bounds__(kThreads * kHeads, 2 / kHeads) run_attn_kernel(const RunParams p) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  using L = RunLayout<D, kFp8>;
  constexpr int S = L::S;
  constexpr int KS = D / 16;       // k-steps of the score mma
  constexpr int DT = D / 8;        // n-tiles of the output
  constexpr int NT = kBN / 8;      // n-tiles of the scores
  constexpr int C8 = D / 8;        // 16-byte BF16 chunks per q row
  constexpr int NTH = kThreads * kHeads;
  constexpr int kChunks = kBN * L::CH;                  // 16-byte chunks of K (and of V) per tile
  constexpr int kIssue = (kChunks + NTH - 1) / NTH;     // issue rounds per thread
  extern __shared__ uint4 smem_raw[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem_raw);
  char* ring = reinterpret_cast<char*>(q_s + kHeads * kBM * S);
  uint16_t* kc_s = reinterpret_cast<uint16_t*>(ring + 2 * L::kStage);  // FP8: converted tiles
  uint16_t* vc_s = kc_s + kBN * S;
  __shared__ int pos_s[kBM];
  __shared__ int kv_len_s, bad_s;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
  const int hh = warp >> 2, wr = warp & 3;  // this warp's head in the block, its 16-row slice
  const int h0 = blockIdx.y * kHeads, kvh = h0 / p.group, h = h0 + hh;
  // Last tiles first: a run's later tiles walk more keys (causal), so the long blocks start in
  // the first wave and the short ones fill the tail.
  const int tile = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  int r = 0;
  while (r + 1 < p.n_runs && tile >= p.tile0[r + 1]) ++r;
  const int first = (tile - p.tile0[r]) * kBM;
  const int rows = min(kBM, p.count[r] - first);
  const int64_t row_base = p.row0[r] + first;
  const int seq = p.query_seq[p.row0[r]];
  const int64_t qw = static_cast<int64_t>(p.q_heads) * D;
  const int64_t max_pos = p.max_pages * p.page_size;

  if (tid == 0) {
    kv_len_s = 0;
    bad_s = 0;
  }
  __syncthreads();
  if (tid < kBM) {
    int pos = -1;
    if (tid < rows) {
      const int sq = p.query_seq[row_base + tid], x = p.query_pos[row_base + tid];
      if (sq == seq && sq >= 0 && x >= 0 && x < max_pos) pos = x;
    }
    pos_s[tid] = pos;
    if (pos >= 0) atomicMax(&kv_len_s, pos + 1);
  }
  // Q tiles of the block's heads (rows past the tile's end: zeros).
  for (int i = tid; i < kHeads * kBM * C8; i += NTH) {
    const int hd = i / (kBM * C8), row = i / C8 % kBM, ch = i % C8;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (row < rows)
      x = *reinterpret_cast<const uint4*>(p.q + (row_base + row) * qw + static_cast<int64_t>(h0 + hd) * D + ch * 8);
    *reinterpret_cast<uint4*>(q_s + (hd * kBM + row) * S + ch * 8) = x;
  }
  __syncthreads();
  const int kv_len = kv_len_s;
  const int32_t* bt = p.block_tables + static_cast<int64_t>(seq) * p.max_pages;
  // cp.async of key tile j0 into ring stage `st`; keys past kv_len and pages outside the cache
  // are zero-filled (the latter flag the block's rows NaN).
  // Thread tid: chunk tid % CH of keys tid / CH, + kStep, ... (kIssue of them), walked through
  // the pages (cp_async_kv_keys); with fewer chunks than threads the threads past them idle.
  static_assert(NTH % L::CH == 0 && (kChunks % NTH == 0 || kChunks < NTH), "a thread's chunks are one column");
  auto issue = [&](int j0, int st) {
    char* kd = ring + st * L::kStage;
    char* vd = kd + kBN * L::RS;
    constexpr int kStep = NTH / L::CH;
    const int ch = tid % L::CH, key0 = tid / L::CH;
    if (kChunks < NTH && key0 >= kBN) return;
    cuda::cp_async_kv_keys<kIssue>(p, bt, j0 + key0, kStep, kv_len, kvh, L::RB, ch, kd + key0 * L::RS + ch * 16,
                                   vd + key0 * L::RS + ch * 16, kStep * L::RS, &bad_s);
  };

  uint32_t qa[KS][4];
  cuda::load_a_fragments(qa, q_s + (hh * kBM + 16 * wr + g) * S + 2 * c, S);
  const int pos_lo = pos_s[16 * wr + g], pos_hi = pos_s[16 * wr + g + 8];
  // Key tiles wholly at or before every row of the warp need no mask.
  const int warp_min_pos = __reduce_min_sync(0xFFFFFFFFu, min(pos_lo, pos_hi));
  float o[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;

  const int n_tiles = (kv_len + kBN - 1) / kBN;
  if (n_tiles > 0) issue(0, 0);
  cuda::cp_async_commit();
  for (int t = 0; t < n_tiles; ++t) {
    if (t + 1 < n_tiles) issue((t + 1) * kBN, (t + 1) & 1);
    cuda::cp_async_commit();  // empty at the last tile: the wait count stays uniform
    cuda::cp_async_wait<1>();
    __syncthreads();
    const uint16_t* k_s;
    const uint16_t* v_s;
    if constexpr (kFp8) {
      const char* kr = ring + (t & 1) * L::kStage;
      cuda::e4m3_kv_to_bf16<D>(kr, kr + kBN * L::RS, L::RS, kBN, kc_s, vc_s, S, tid, NTH);
      __syncthreads();
      k_s = kc_s;
      v_s = vc_s;
    } else {
      k_s = reinterpret_cast<const uint16_t*>(ring + (t & 1) * L::kStage);
      v_s = k_s + kBN * S;
    }
    const int j0 = t * kBN;

    // S = Q K^T: 16 rows x 64 keys per warp.
    float s[NT][4];
    cuda::scores_tile(s, qa, k_s, S, g, c);
    // Mask and scale (log2 domain).
    const bool unmasked = j0 + kBN - 1 <= warp_min_pos;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = j0 + nt * 8 + 2 * c + (i & 1);
        const bool ok = unmasked || key <= (i >= 2 ? pos_hi : pos_lo);
        s[nt][i] = ok ? s[nt][i] * p.score_scale : -INFINITY;
      }
    cuda::online_softmax_tile(s, m_lo, m_hi, l_lo, l_hi, o);
    // O += P V, 16 keys per k-step.
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) cuda::pv_kstep(o, s, kk, v_s, S, lane);
    __syncthreads();  // this stage (and the FP8 tiles) are free for the next issue
  }
  cuda::cp_async_wait<0>();
  __syncthreads();
  const bool bad = bad_s != 0;
#pragma unroll
  for (int o2 = 1; o2 <= 2; o2 <<= 1) {
    l_lo += __shfl_xor_sync(0xFFFFFFFFu, l_lo, o2);
    l_hi += __shfl_xor_sync(0xFFFFFFFFu, l_hi, o2);
  }
  const int row_lo = 16 * wr + g, row_hi = row_lo + 8;
  const float inv_lo = p.out_scale / l_lo, inv_hi = p.out_scale / l_hi;
  const bool nan_lo = bad || pos_lo < 0, nan_hi = bad || pos_hi < 0;
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) {
    const int col = h * D + dt * 8 + 2 * c;
    if (row_lo < rows)
      *reinterpret_cast<uint32_t*>(p.out + (row_base + row_lo) * qw + col) =
          nan_lo ? cuda::kAttnBf16NaN2 : cuda::pack_bf16x2(o[dt][0] * inv_lo, o[dt][1] * inv_lo);
    if (row_hi < rows)
      *reinterpret_cast<uint32_t*>(p.out + (row_base + row_hi) * qw + col) =
          nan_hi ? cuda::kAttnBf16NaN2 : cuda::pack_bf16x2(o[dt][2] * inv_hi, o[dt][3] * inv_hi);
  }
}

template <int D, bool kFp8, int kHeads>
void launch_heads(const RunParams& p, int tiles, cudaStream_t stream) {
  const std::size_t smem = RunLayout<D, kFp8>::bytes(kHeads);
  // Per call: the opt-in is a property of the current device.
  const cudaError_t attr = cudaFuncSetAttribute(run_attn_kernel<D, kFp8, kHeads>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  cuda::require(attr == cudaSuccess, std::string("paged_attention_runs_cuda: shared memory opt-in failed: ") +
                                         cudaGetErrorString(attr));
  cuda::launch_pdl(run_attn_kernel<D, kFp8, kHeads>,
                   dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(p.q_heads / kHeads)),
                   dim3(kThreads * kHeads), smem, stream, p);
  cuda::check_launch("paged_attention_runs_cuda");
}

template <int D, bool kFp8>
void launch(const RunParams& p, int tiles, cudaStream_t stream) {
  if (p.group % 2 == 0) launch_heads<D, kFp8, 2>(p, tiles, stream);
  else launch_heads<D, kFp8, 1>(p, tiles, stream);
}

}  // namespace

bool paged_attention_runs_supported(const PagedAttentionArgs& a) {
  const int64_t d = a.cache.head_dim;
  return d == 32 || d == 64 || d == 128;
}

void paged_attention_runs_cuda(const PagedAttentionArgs& a, const AttentionRun* runs, int64_t n_runs,
                               cudaStream_t stream) {
  using cuda::require;
  const PagedKvCache& c = a.cache;
  const std::string name = "paged_attention_runs_cuda: ";
  require(paged_attention_runs_supported(a), name + "head_dim must be 32, 64 or 128, got " + std::to_string(c.head_dim));
  require(a.q_heads <= 65535, name + "at most 65535 q heads");
  cuda::check_paged_shape(a, name);
  require(n_runs >= 0 && (n_runs == 0 || runs), name + "runs must be given");
  for (int64_t i = 0; i < n_runs; ++i)
    require(runs[i].row0 >= 0 && runs[i].count >= 0 && runs[i].row0 + runs[i].count <= a.T,
            name + "run " + std::to_string(i) + " [" + std::to_string(runs[i].row0) + ", +" +
                std::to_string(runs[i].count) + ") is outside the " + std::to_string(a.T) + " rows");
  if (n_runs == 0) return;
  cuda::check_paged_pointers(a, name);

  RunParams p{};
  static_cast<cuda::PagedParams&>(p) = cuda::paged_params(a);
  const int D = static_cast<int>(c.head_dim);
  const bool fp8 = c.dtype == KvDType::FP8_E4M3;
  const float scale = a.scale > 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(D));
  p.score_scale = scale * kLog2e * (fp8 ? c.k_scale : 1.0f);
  p.out_scale = fp8 ? c.v_scale : 1.0f;
  for (int64_t i0 = 0; i0 < n_runs; i0 += kMaxRuns) {
    p.n_runs = 0;
    int64_t tiles = 0;
    for (int64_t i = i0; i < std::min(n_runs, i0 + kMaxRuns); ++i) {
      if (runs[i].count == 0) continue;
      p.row0[p.n_runs] = runs[i].row0;
      p.count[p.n_runs] = static_cast<int>(runs[i].count);
      p.tile0[p.n_runs] = static_cast<int>(tiles);
      tiles += (runs[i].count + kBM - 1) / kBM;
      ++p.n_runs;
    }
    if (p.n_runs == 0) continue;
    require(tiles <= std::numeric_limits<int32_t>::max(), name + "too many rows");
    p.tile0[p.n_runs] = static_cast<int>(tiles);
    const int t = static_cast<int>(tiles);
    switch (D) {
      case 32: fp8 ? launch<32, true>(p, t, stream) : launch<32, false>(p, t, stream); break;
      case 64: fp8 ? launch<64, true>(p, t, stream) : launch<64, false>(p, t, stream); break;
      default: fp8 ? launch<128, true>(p, t, stream) : launch<128, false>(p, t, stream); break;
    }
  }
}

}  // namespace nemotron::kernels
