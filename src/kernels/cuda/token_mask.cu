// mask_logits_cuda (kernels/token_mask_cuda.h): one thread per 32 tokens (one mask word) of a
// row; grid (words / 256 blocks, rows).
#include "kernels/cuda/common.cuh"
#include "kernels/token_mask_cuda.h"

namespace nemotron::kernels {
namespace {

__global__ void mask_logits_kernel(float* logits, int64_t V, const SampleRow* rows, const int32_t* mask_rows,
                                   const uint32_t* masks, int64_t words) {
  const int64_t r = blockIdx.y;
  const int32_t m = mask_rows[r];
  const int64_t w = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m < 0 || w >= words) return;
  const uint32_t bits = masks[static_cast<int64_t>(m) * words + w];
  if (bits == 0xffffffffu) return;
  float* row = logits + static_cast<int64_t>(rows[r].logit_row) * V;
  const int64_t t0 = w * 32;
  for (int b = 0; b < 32 && t0 + b < V; ++b)
    if (!(bits >> b & 1u)) row[t0 + b] = -INFINITY;
}

}  // namespace

void mask_logits_cuda(float* logits, int64_t V, const SampleRow* rows, const int32_t* mask_rows, const uint32_t* masks,
                      int64_t n_rows, cudaStream_t stream) {
  cuda::require(V > 0 && n_rows >= 0 && n_rows < 65536, "mask_logits_cuda: bad V or row count");
  if (n_rows == 0) return;
  cuda::require(logits && rows && mask_rows && masks, "mask_logits_cuda: null pointer");
  const int64_t words = (V + 31) / 32;
  const dim3 grid(static_cast<unsigned>((words + 255) / 256), static_cast<unsigned>(n_rows));
  mask_logits_kernel<<<grid, 256, 0, stream>>>(logits, V, rows, mask_rows, masks, words);
  cuda::check_launch("mask_logits_cuda");
}

}  // namespace nemotron::kernels
