#pragma once
// Linear layer on the GPU: y[t, :] = x[t, :] W^T with W [out, in] in its checkpoint format
// (see linear.h: Dense BF16, FP8 per-tensor, NVFP4), BF16 activations in, fp32 accumulation,
// BF16 or fp32 out. Weights are never materialized in another format: FP8 and NVFP4 are
// dequantized in registers (GEMV) or per shared-memory tile (GEMM).
//
// Paths: GEMV for T <= kLinearGemvMaxRows (decode: 16-row tiles of W decoded to BF16 in
// registers and multiplied with all T rows of x (staged in shared memory) on the tensor cores,
// fp32 accumulation; every weight byte read once for the whole batch); GEMM for more rows
// (prefill: 128x128 or 64x128 tiles on the BF16 tensor cores, mma.sync with fp32 accumulation,
// gemm_core.cuh; FP8 and NVFP4 values, and NVFP4 element x block-scale products, are exact in
// BF16, so only the per-tensor scale is applied after accumulation).
#include <cstdint>

#include "kernels/cuda_stream.h"
#include "kernels/linear.h"

namespace nemotron::kernels {

inline constexpr int64_t kLinearGemvMaxRows = 8;

// Gemv: the tensor-core GEMV. GemvWarpRow: the CUDA-core GEMV (one warp per output row), also
// used when x does not fit in shared memory, and by Auto at T = 1 for BF16, FP8 and NVFP4
// weights under 4 MB, where it measured faster.
enum class LinearPath { Auto, Gemv, Gemm, GemvWarpRow };

struct LinearCudaArgs {
  LinearWeight w;               // data / block_scale are device pointers, 16-byte aligned
  const uint16_t* x = nullptr;  // [T, w.in] BF16, device, 16-byte aligned
  int64_t T = 0;
  void* y = nullptr;            // [T, w.out] BF16 or fp32 (y_type), device
  OutType y_type = OutType::BF16;
  LinearPath path = LinearPath::Auto;  // Gemv, GemvWarpRow only for T <= kLinearGemvMaxRows
  // y = relu(x W^T)^2: in the GEMV epilogue (fp32, one rounding to y's type); the GEMM path
  // stores BF16 and then squares the stored values (relu2_cuda, a second rounding).
  bool relu2 = false;
};

// Requirements (else nemotron::Error): Dense weights are BF16; w.in % 32 == 0 (every
// Nemotron 3 projection); pointers 16-byte aligned; T >= 1.
void linear_cuda(const LinearCudaArgs& args, cudaStream_t stream);

// n linears over the same x (attention q, k, v): exactly linear_cuda on each part (same bits),
// in one launch when every part takes the warp-per-row GEMV (same x, T, in, format and path;
// at most 4 parts), else one linear_cuda call each.
void linear_group_cuda(const LinearCudaArgs* parts, int n, cudaStream_t stream);

}  // namespace nemotron::kernels
