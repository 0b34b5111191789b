#pragma once
// Small elementwise kernels the model composition needs (CPU equivalents are plain loops in
// model/cpu_forward.cpp).
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nemotron::kernels {

// out[i] = bf16(float(a[i]) + float(b[i])) for n BF16 values (out may alias a or b).
void add_bf16_cuda(const uint16_t* a, const uint16_t* b, int64_t n, uint16_t* out, cudaStream_t stream);

// out[r, :] = in[rows[r], :] for R rows of `width` BF16 values (rows: device int32 [R]).
void gather_rows_bf16_cuda(const uint16_t* in, const int32_t* rows, int64_t R, int64_t width, uint16_t* out,
                           cudaStream_t stream);

// out[r] = argmax of logits row r (fp32 [R, V]) with model::argmax's semantics: the first index
// of the largest value; NaN values are never chosen, except that a row whose first value is
// NaN gives 0 (as the host loop `if (v[i] > v[best]) best = i` starting at 0). out device int32 [R].
void argmax_rows_f32_cuda(const float* logits, int64_t R, int64_t V, int32_t* out, cudaStream_t stream);

// Holds the stream for `ns` nanoseconds (one thread spinning on the global timer): profiling
// puts it before a step so that the host has enqueued the whole step before its first kernel
// runs, and the events between kernels then time the kernels, not the host's launches.
void device_wait_cuda(uint64_t ns, cudaStream_t stream);

}  // namespace nemotron::kernels
