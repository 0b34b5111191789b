#pragma once
// Token sampling on the GPU: sampling.h's semantics (penalties, greedy, temperature, top_k, top_p,
// min_p, Gumbel-max with Philox noise, raw logprobs and top-n, penalty-state update) for a batch
// of rows in one launch, graph-capturable: launch shapes depend only on n_rows and V, per-row
// parameters are read from the device array `rows`, no host synchronization or allocation.
// Deterministic: the same inputs give the same bits in every run, and a row's outputs do not
// depend on the other rows of the batch. Tokens equal sample_cpu's except where a float
// expf/logf of the device and of the host differ by an ulp at a decision boundary (rare).
//
// Kernel (cuda/sampling.cu): one thread-block cluster per row (16 blocks for V = 131072 and up
// to 8 rows, 8 beyond), each block holding its share of the row's penalized logits in shared
// memory, so the row is read from memory once; the blocks exchange partial results through
// distributed shared memory. Phases per row: max / argmax (greedy rows stop here) -> top_k /
// top_p thresholds, exact, from a small candidate set bounded by the warp maxima (a cluster radix
// select over the float bits of d when it does not suffice) -> Gumbel argmax over the kept tokens
// -> logprobs (fixed-point log-sum-exp; top-n from candidates) -> the penalty update. Needs
// thread block clusters (sm_90+).
//
// H100, V = 131072, LM-like logits (bench/cuda/bench_sampling_cuda.cpp): about 6.5 us greedy,
// 9.5 us min_p, 19 us top_k = 50, 27 us temperature 0.7 + top_p 0.95 at 1 row.
#include <cstdint>

#include "kernels/cuda_stream.h"
#include "kernels/sampling.h"

namespace nemotron::kernels {

// One sampled row; POD, filled on the host (make_sample_row), passed as a device array.
struct SampleRow {
  int32_t logit_row;     // row of `logits` this samples from
  int32_t penalty_slot;  // -1: no penalty state; else index into the penalty arrays
  float temperature, top_p, min_p;
  int32_t top_k;
  float repetition, frequency, presence;
  int32_t logprobs;      // -1 none, 0..20
  uint64_t seed, draw;
};

// The row for validated params p (the seed is passed separately: params' optional seed or one
// the caller picked). Penalties apply only when slot >= 0 and p.penalized(); a row with a slot
// always updates that slot's state with its token.
inline SampleRow make_sample_row(const SamplingParams& p, int32_t logit_row, int32_t penalty_slot, uint64_t seed,
                                 uint64_t draw) {
  return SampleRow{logit_row,           penalty_slot,        p.temperature,      p.top_p,   p.min_p, p.top_k,
                   p.repetition_penalty, p.frequency_penalty, p.presence_penalty, p.logprobs, seed,    draw};
}

struct SampleCudaArgs {
  const float* logits = nullptr;  // [*, V] fp32, device
  int64_t V = 0;
  const SampleRow* rows = nullptr;  // [n_rows], device
  int64_t n_rows = 0;
  // Penalty state per slot: counts [slots, V] int32 (output-token counts), seen [slots, ceil(V/32)]
  // bitmask (prompt + output tokens; bit t % 32 of word t / 32). May be null when no row has a
  // slot. A slot must appear at most once per call (its update is not atomic across rows).
  int32_t* counts = nullptr;
  uint32_t* seen = nullptr;
  int64_t penalty_slots = 0;
  // Outputs, all written for every row: token [n_rows] (-1 for a row whose penalty_slot is out of
  // [-1, penalty_slots) or whose arrays are null, or whose logit_row is negative: nothing else is
  // done for it); logprob [n_rows] (0 without logprobs; within ~1e-6 of sample_cpu's, NaN where
  // it is: a NaN or +inf logit, or all -inf); top_ids / top_logprobs [n_rows, kMaxTopLogprobs]
  // (entries past the row's `logprobs`: id -1, logprob -inf).
  int32_t* token = nullptr;
  float* logprob = nullptr;
  int32_t* top_ids = nullptr;
  float* top_logprobs = nullptr;
  void* workspace = nullptr;  // sample_workspace_bytes(max rows, V) bytes, device (may be 0)
  int64_t workspace_bytes = 0;
};

// Device workspace sample_cuda needs for up to max_rows rows of V logits (0 today: everything
// lives in shared memory). Also prepares the kernel's launch attributes: call it before capture.
int64_t sample_workspace_bytes(int64_t max_rows, int64_t V);

// Samples every row (see the header comment). Throws nemotron::Error for bad arguments (shape,
// null pointers, V too large for the shared-memory plan, no cluster support).
void sample_cuda(const SampleCudaArgs& args, cudaStream_t stream);

// seen[slot_of_row[r]] |= bit ids[r] for the n rows r with slot_of_row[r] >= 0 (the prompt tokens
// of penalized sequences); ids outside [0, V) are skipped; slots must be below the array's slot
// count (not checked on the device). ids, slot_of_row: device int32 [n].
void penalty_mark_seen_cuda(const int32_t* ids, const int32_t* slot_of_row, int64_t n, uint32_t* seen, int64_t V,
                            cudaStream_t stream);

// counts[slot_of_row[r], ids[r]] += delta for the n rows r with slot_of_row[r] >= 0 and ids[r] in
// [0, V) (atomic: rows may repeat a (slot, id)); speculative decoding's roll-back takes the
// counts of dropped draws back with delta = -1. ids, slot_of_row: device int32 [n].
void penalty_count_cuda(const int32_t* ids, const int32_t* slot_of_row, int64_t n, int32_t delta, int32_t* counts,
                        int64_t V, cudaStream_t stream);

// Clears one slot's counts and seen words (a new sequence takes the slot).
void penalty_reset_slot_cuda(int32_t* counts, uint32_t* seen, int64_t V, int slot, cudaStream_t stream);

}  // namespace nemotron::kernels
