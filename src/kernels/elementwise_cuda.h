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

}  // namespace nemotron::kernels
