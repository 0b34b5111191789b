#pragma once
// mask_logits_cpu (token_mask.h) on the device for the rows of a sampling call: for sample row
// i with mask_rows[i] >= 0, the logits row rows[i].logit_row gets -inf where mask
// masks[mask_rows[i]] (ceil(V / 32) words) clears the token's bit. Rows with mask_rows[i] < 0
// are left alone. All pointers device; launch shape from n_rows and V only.
#include <cstdint>

#include "kernels/cuda_stream.h"
#include "kernels/sampling_cuda.h"

namespace nemotron::kernels {

void mask_logits_cuda(float* logits, int64_t V, const SampleRow* rows, const int32_t* mask_rows, const uint32_t* masks,
                      int64_t n_rows, cudaStream_t stream);

}  // namespace nemotron::kernels
