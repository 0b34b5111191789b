#pragma once
// MoE on the GPU without host synchronization: the router writes expert ids and weights to
// device memory, and the routed-expert GEMV reads them there (CPU references: moe_router.h,
// moe_mixer in model/cpu_forward.cpp).
#include <cstdint>

#include "kernels/cuda_stream.h"
#include "kernels/linear.h"
#include "kernels/moe_router.h"

namespace nemotron::kernels {

// Sigmoid router with correction bias and grouped top-k, exactly route_topk_cpu per token:
//   logits fp32 [T, E] (device; e.g. linear_cuda with fp32 output), bias fp32 [E] or nullptr,
//   ids int32 [T, k], weights fp32 [T, k] (device). One warp per token; E <= 1024.
void route_topk_cuda(const float* logits, const float* bias, const RouterParams& p, int64_t T, int32_t* ids,
                     float* weights, cudaStream_t stream);

// Router logits from unrounded rows: logits[t, e] = sum_i x[t, i] * w[e, i], fp32 accumulation.
//   x fp32 [T, H] (device, 16-byte aligned), w BF16 [E, H] (the gate), logits fp32 [T, E].
// H even. (CudaModelOptions::router_fp32: the router reads the fp32 normed rows.)
void router_logits_f32_cuda(const float* x, const uint16_t* w, int64_t T, int64_t E, int64_t H, float* logits,
                            cudaStream_t stream);

// Router logits of up to 8 BF16 rows (decode): logits[t, e] = sum_i x[t, i] * w[e, i], fp32
// accumulation in a fixed order (K split in four quarters, summed in order). x [T, H], w BF16
// [E, H] (both 16-byte aligned), logits fp32 [T, E]. H % 8 == 0.
void gate_logits_bf16_cuda(const uint16_t* x, const uint16_t* w, int64_t T, int64_t E, int64_t H, float* logits,
                           cudaStream_t stream);

// The routed experts of one projection, all of one format and shape [out, in]: device arrays
// of E entries (per expert: weight bytes, NVFP4 block scales (nullptr otherwise), scale).
struct ExpertTable {
  WeightFormat format = WeightFormat::NVFP4;
  int64_t experts = 0, out = 0, in = 0;
  const void* const* data = nullptr;
  const uint8_t* const* block_scale = nullptr;
  const float* scale = nullptr;
};

// Routed experts: for each (token t, slot s) pair i = t*k + s,
//   y[i, :] = act(x[x_row(i), :] W[ids[i]]^T)   with x_row(i) = t when x_per_slot is false
// (the up-projection reads the token's row) and i when true (the down-projection reads the
// pair's row). act = relu² when `relu2` (applied in fp32, one rounding). x BF16, y BF16
// [T*k, out], fp32 accumulation. An expert id outside [0, E) is not read; that pair's output
// row becomes NaN.
// Paths: the GEMV (decode; one pass over the pair's expert weights per pair; T*k < 65536);
// with a workspace, !warp_rows and T*k >= kExpertGroupedMinPairs, the grouped GEMM
// (prefill; moe_grouped.cu): the pairs are bucketed by expert on the device (no host sync),
// and each expert's weights are read once per 64 or 128 of its pairs, on the tensor cores
// (mma.sync BF16; FP8 / NVFP4 decoded exactly to BF16). E <= 4096 and T*k < 2^31 there. Each
// output row depends only on its own inputs (fixed K order): results do not depend on the
// routing of the other pairs; both paths agree within one BF16 rounding.
// Measured on an H100 at Nano's up projection (NVFP4, 128 experts, bench_gemm_cuda): the GEMV
// takes 232 us at 192 pairs and 470 us at 384, the grouped GEMM 317 and 399 us.
inline constexpr int64_t kExpertGroupedMinPairs = 256;

// Device scratch for the grouped path of expert_gemv_cuda (bucketing of T*k pairs by expert).
// Host arithmetic only (moe_workspace.cpp), so that the memory planner of a CPU-only build
// can count it; kExpertGroupedMaxExperts and kExpertGroupedMinTile are moe_grouped.cu's
// expert limit and smallest row tile, which the layout is sized for.
inline constexpr int64_t kExpertGroupedMaxExperts = 4096, kExpertGroupedMinTile = 64;
int64_t expert_gemv_workspace_bytes(int64_t T, int64_t k, int64_t experts);

struct ExpertGemvArgs {
  ExpertTable w;
  const int32_t* ids = nullptr;  // [T, k], device
  int64_t T = 0, k = 0;
  const uint16_t* x = nullptr;
  bool x_per_slot = false;
  bool relu2 = false;
  uint16_t* y = nullptr;
  // false: the tensor-core GEMV (16-row tiles, x in shared memory); true: one warp per output
  // row on the CUDA cores (the former kernel, kept for tests and benches).
  bool warp_rows = false;
  // Device scratch of expert_gemv_workspace_bytes(T, k, w.experts) bytes, 16-byte aligned
  // (nullptr: always the GEMV). Overwritten by every grouped call (stream-ordered).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};
void expert_gemv_cuda(const ExpertGemvArgs& a, cudaStream_t stream);

// out[t, :] = sum_s weights[t, s] * y[t*k + s, :] (fp32 sum in slot order), y BF16, out BF16.
void moe_combine_cuda(const uint16_t* y, const float* weights, int64_t T, int64_t k, int64_t D, uint16_t* out,
                      cudaStream_t stream);

}  // namespace nemotron::kernels
