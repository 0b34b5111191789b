#pragma once
// Shared pieces of the Mamba-2 prefill kernels (mamba_prefill*.cu): varlen row ranges,
// argument validation and the two scan implementations that ssm_scan_cuda dispatches to.
#include <cstdint>

#include "kernels/mamba_cuda.h"

namespace nemotron::kernels::mamba_prefill {

// Rows [start, start + len) of sequence b. cu_rows is clamped into [0, rows] and a decreasing
// pair gives len 0, so malformed offsets skip rows instead of reading or writing out of range.
struct SeqRange {
  int64_t start, len;
};
__device__ __forceinline__ SeqRange seq_range(const int32_t* cu_rows, int64_t b, int64_t rows) {
  int64_t s = cu_rows[b], e = cu_rows[b + 1];
  s = s < 0 ? 0 : (s > rows ? rows : s);
  e = e < s ? s : (e > rows ? rows : e);
  return {s, e - s};
}

void validate_scan(const SsmScanArgs& a);  // throws Error
// Each scans the sequences on its side of chunked_from rows: the sequential kernel those
// shorter, the chunked one those of chunked_from rows or more (each sequence by its own length,
// so a batch gives every sequence the bits it would get alone).
void ssm_scan_sequential(const SsmScanArgs& a, int64_t chunked_from, cudaStream_t stream);  // mamba_prefill.cu
void ssm_scan_chunked(const SsmScanArgs& a, int64_t chunked_from, cudaStream_t stream);     // mamba_prefill_ssd.cu

}  // namespace nemotron::kernels::mamba_prefill
