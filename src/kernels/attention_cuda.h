#pragma once
// Paged-KV causal GQA attention without positional encoding (NoPE) on the GPU; CPU reference:
// attention.h (attention_cpu over contiguous K/V rows).
//
// Cache layout (one attention layer): k and v are [num_pages, page_size, kv_heads, head_dim],
// element type `dtype`; the row of physical slot s = page * page_size + offset holds one
// position's kv_heads * head_dim values. BF16 values are stored as is; FP8 (e4m3, OCP,
// saturating) values are stored as e4m3(value / scale) and read back as e4m3 * scale.
// A sequence's logical page j is block_tables[seq * max_pages + j].
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nemotron::kernels {

enum class KvDType { BF16, FP8_E4M3 };

// Paged KV cache of one attention layer: k and v are [num_pages, page_size, kv_heads, head_dim]
// (element type `dtype`). FP8 values are stored as e4m3(value / scale) and read back * scale.
struct PagedKvCache {
  void* k = nullptr;
  void* v = nullptr;
  KvDType dtype = KvDType::BF16;
  int64_t num_pages = 0, page_size = 16, kv_heads = 0, head_dim = 0;
  float k_scale = 1.0f, v_scale = 1.0f;
};

// Writes T new rows: k_new, v_new BF16 [T, kv_heads*head_dim]; row t goes to physical slot
// slot_mapping[t] = page * page_size + offset (device int32 [T]); a slot < 0 is skipped.
// A slot >= num_pages * page_size is skipped too (never written out of bounds).
void kv_cache_write_cuda(const PagedKvCache& cache, const uint16_t* k_new, const uint16_t* v_new,
                         const int32_t* slot_mapping, int64_t T, cudaStream_t stream);

// Attention for T query rows from any mix of sequences (decode rows and prefill chunks):
// query row t belongs to sequence query_seq[t] (row of block_tables, [num_seqs, max_pages]
// page ids) and sits at absolute position query_pos[t]; it attends to that sequence's
// positions 0..query_pos[t] (causal; the rows for them must already be in the cache, so call
// kv_cache_write_cuda first). q BF16 [T, q_heads*head_dim]; out BF16 [T, q_heads*head_dim];
// q head h uses kv head h / (q_heads / kv_heads); softmax(q k^T * scale) v in fp32.
// Requirements (else nemotron::Error): head_dim % 8 == 0 and <= 256; q_heads % kv_heads == 0;
// pointers non-null and 16-byte aligned (q, out, k, v). A row whose sequence, position or page
// ids are out of range on the device (seq < 0, pos < 0, pos >= max_pages * page_size, page id
// outside [0, num_pages)) never reads out of bounds: its output row becomes NaN. (query_seq is
// not checked against the number of sequences, which the call does not know.)
//
// Kernel: one block per (query row, kv head, group of up to 16 q heads sharing it, split);
// K/V tiles are staged in shared memory as fp32 (FP8 dequantized there), online softmax in
// fp32. For small batches the context is split over several blocks (flash-decoding) whose
// partial results are merged by a second kernel; that path needs a temporary buffer: the
// caller's `workspace` (paged_attention_workspace_bytes) or else a stream-ordered one
// (cudaMallocAsync / cudaFreeAsync on `stream`).
//
// Graph capture: the launch configuration (grid, number of splits) depends only on the
// host-side shape (T, heads, max_pages * page_size or max_context), never on the positions.
// Every block reads its row's context length (query_pos[t] + 1) from device memory and picks
// the row's split length there (the context spread over as many of the splits as keep at
// least 2 tiles each); splits starting past the context exit at once. So a launch captured
// once for T rows with max_context = 0 stays valid for any positions, and short contexts use
// few splits while long ones use all of them.
struct PagedAttentionArgs {
  const uint16_t* q = nullptr;
  int64_t T = 0, q_heads = 0;
  const int32_t* query_seq = nullptr;
  const int32_t* query_pos = nullptr;
  const int32_t* block_tables = nullptr;
  int64_t max_pages = 0;
  PagedKvCache cache;
  float scale = 0.0f;  // 0 = 1/sqrt(head_dim)
  uint16_t* out = nullptr;
  // Optional host-side upper bound on query_pos[t] + 1 over the batch (0 = max_pages *
  // page_size). Only sizes the split-K partition: a wrong bound costs speed, never results.
  int64_t max_context = 0;
  // Split-K: 0 = automatic, 1 = single pass (no temporary buffer), n > 1 = at most n splits.
  int64_t num_splits = 0;
  // Optional temporary buffer for the split-K partials (device, 16-byte aligned) of at least
  // paged_attention_workspace_bytes(args) bytes; nullptr = stream-ordered allocation.
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  // Every row on the tensor-core kernel (attention_decode.cu: the block's q heads as the 16 rows
  // of m16n8k16 mmas, K/V tiles by cp.async per warp) instead of the CUDA-core one, where head_dim
  // is 32, 64 or 128; same grid, splits and partials. -1 = on unless
  // NEMOTRON_DECODE_ATTENTION=cuda-core (A/B runs), 0 = off, 1 = on. Its results
  // differ from the CUDA-core kernel's by the BF16 rounding of the probabilities in P V.
  int tensor_cores = -1;
  // With tensor_cores and FP8 K/V: convert the E4M3 bytes in registers into f16 mma operands (Q
  // and P in f16; attention_mma.cuh) instead of into BF16 tiles in shared memory. -1 = on unless
  // NEMOTRON_DECODE_FP8=tiles (A/B runs), 0 = off, 1 = on.
  int fp8_direct = -1;
};
void paged_attention_cuda(const PagedAttentionArgs& args, cudaStream_t stream);
// Tensor-core attention (mma.sync, BF16 operands, fp32 softmax and accumulation) for RUNS of
// query rows: run i is rows [row0, row0 + count) of `args` (q, out, query_seq, query_pos
// indexed as in paged_attention_cuda), all of one sequence (that of its first row), e.g. a
// prefill chunk. Same cache, masking, scale and results as paged_attention_cuda up to
// rounding: the probabilities enter the P V product rounded to BF16. Rows outside every run
// are not touched. A row whose sequence differs from its run's first row, or whose position
// is out of range, and every row of a 64-row tile whose keys meet a page id outside
// [0, num_pages), are written as NaN. Blocks: (64 rows of a run, q head); K/V tiles of 64
// positions in shared memory; launch shape from the host-side runs (not for graph capture
// across different runs). Requirements (else nemotron::Error): paged_attention_runs_supported
// (head_dim 32, 64 or 128), the runs inside [0, T), those of paged_attention_cuda otherwise.
struct AttentionRun {
  int64_t row0 = 0, count = 0;
};
bool paged_attention_runs_supported(const PagedAttentionArgs& args);
void paged_attention_runs_cuda(const PagedAttentionArgs& args, const AttentionRun* runs, int64_t n_runs,
                               cudaStream_t stream);

// Bytes of split-K partials paged_attention_cuda needs for these arguments (0 = single pass).
// Depends only on T, q_heads, the cache shape, max_pages, max_context and num_splits.
int64_t paged_attention_workspace_bytes(const PagedAttentionArgs& args);

}  // namespace nemotron::kernels
