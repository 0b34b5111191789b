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
  // y = relu(x W^T)^2, in the epilogue (fp32, one rounding to y's type).
  bool relu2 = false;
  // Split-K scratch for the GEMM path, device memory of at least
  // linear_split_workspace_bytes(SMs) bytes whose first linear_split_counter_bytes are zero
  // before the first call (every call leaves them zero); nullptr: no split. With it, a call
  // whose 64-row tiles fill less than half the device's block slots (9..~64-row steps of
  // narrow weights) splits K over several blocks per tile. Not shared by calls that may run
  // at the same time (one per stream).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  // The tensor-core GEMV's 16-row tiles per block: 0 = the default (1, or
  // NEMOTRON_GEMV_TILES_PER_BLOCK=2|4 from 2 rows of x, for A/B runs), else 1..4 (tests); a
  // block of several tiles stages x once for all of them (measured slower for NVFP4 at 4-8
  // rows on an H100, faster only for BF16's widest weights: bench/RESULTS.md, 27th session).
  int tiles_per_block = 0;
};

// The split-K GEMM (linear_gemm.cu): the blocks per SM it aims for and its tile.
inline constexpr int kLinearSplitBlocksPerSm = 2;
inline constexpr int64_t kLinearSplitTileRows = 64, kLinearSplitTileCols = 128;
// The workspace: an int32 counter per block slot (kLinearSplitBlocksPerSm x sms, rounded up to
// 256 bytes), then fp32 partial tiles for every block slot (splits x tiles <= block slots).
inline int64_t linear_split_counter_bytes(int sms) {
  return (4 * int64_t{kLinearSplitBlocksPerSm} * sms + 255) / 256 * 256;
}
inline int64_t linear_split_workspace_bytes(int sms) {
  return linear_split_counter_bytes(sms) +
         int64_t{kLinearSplitBlocksPerSm} * sms * kLinearSplitTileRows * kLinearSplitTileCols * 4;
}

// Requirements (else nemotron::Error): Dense weights are BF16; w.in % 32 == 0 (every
// Nemotron 3 projection); pointers 16-byte aligned; T >= 1; relu2 with fp32 output only on
// the GEMV path.
void linear_cuda(const LinearCudaArgs& args, cudaStream_t stream);

// n linears over the same x (attention q, k, v): exactly linear_cuda on each part (same bits),
// in one launch when every part takes the warp-per-row GEMV (same x, T, in, format and path;
// at most 4 parts), else one linear_cuda call each.
void linear_group_cuda(const LinearCudaArgs* parts, int n, cudaStream_t stream);

}  // namespace nemotron::kernels
