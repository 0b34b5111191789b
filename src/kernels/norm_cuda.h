#pragma once
// Norms and small elementwise ops on the GPU (CPU references: norm.h, model/cpu_forward.cpp).
// The add+norm kernels are launched with programmatic dependent launch (common.cuh): they
// read only the norm weights before waiting on the previous kernel.
// Layouts: the residual stream is fp32 [T, H] (the CPU reference's precision); activations
// that feed a linear layer are BF16; norm weights are the checkpoint's BF16 vectors.
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nemotron::kernels {

// x[t] += y[t] (y may be nullptr: no add); u[t] = rmsnorm(x[t]) * w, for T rows of width H.
//   x fp32 [T, H] (updated in place), y BF16 [T, H], w BF16 [H], u BF16 [T, H].
void add_rmsnorm_cuda(float* x, const uint16_t* y, const uint16_t* w, int64_t T, int64_t H, float eps,
                      uint16_t* u, cudaStream_t stream);

// As add_rmsnorm_cuda, and also writes the normed rows before BF16 rounding to uf fp32 [T, H]
// (uf may be nullptr): the MoE router's input and the hidden rows the MTP head reads.
void add_rmsnorm_f32_cuda(float* x, const uint16_t* y, const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* u,
                          float* uf, cudaStream_t stream);

// As add_rmsnorm_f32_cuda with a second BF16 addend: x[t] += bf16(y[t] + y2[t]), the sum
// rounded to BF16 first exactly as add_bf16_cuda(y, y2) followed by add_rmsnorm_f32_cuda
// (bit-identical), in one kernel. y2 may be nullptr (then as add_rmsnorm_f32_cuda); y2 needs y.
void add2_rmsnorm_f32_cuda(float* x, const uint16_t* y, const uint16_t* y2, const uint16_t* w, int64_t T, int64_t H,
                           float eps, uint16_t* u, float* uf, cudaStream_t stream);

// As add2_rmsnorm_f32_cuda with the MoE combine folded in: the addend of row t is
// bf16(sum_s rw[t, s] * yk[t, s, :]) exactly as moe_combine_cuda computes it (fp32 sum in slot
// order, one BF16 rounding), so this equals moe_combine_cuda(yk, rw, T, k, H, y) followed by
// add2_rmsnorm_f32_cuda(x, y, y2, ...) bit for bit, in one kernel.
//   yk BF16 [T, k, H] (the routed experts' down outputs), rw fp32 [T, k], y2 BF16 [T, H] or nullptr.
void combine_add2_rmsnorm_f32_cuda(float* x, const uint16_t* yk, const float* rw, int64_t k, const uint16_t* y2,
                                   const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* u, float* uf,
                                   cudaStream_t stream);

// out[t * out_stride + i] = bf16(rmsnorm(x[t]) * w) for i < H: x fp32 [T, H] (read only),
// out BF16 rows of stride out_stride >= H (e.g. one half of the MTP head's [T, 2H] input).
void rmsnorm_strided_cuda(const float* x, const uint16_t* w, int64_t T, int64_t H, float eps, uint16_t* out,
                          int64_t out_stride, cudaStream_t stream);

// x[t, :] = table[ids[t], :] (BF16 [V, H] table) as fp32. ids are device int32 [T]. An id outside
// [0, V) is never read: its row becomes NaN, so the error shows (the host validates ids).
void embed_cuda(const int32_t* ids, const uint16_t* table, int64_t V, int64_t H, int64_t T, float* x,
                cudaStream_t stream);
// A vocab shard (tensor parallel): `table` holds rows [v0, v1) of the vocabulary; an id in [0, V)
// outside them gives a zero row (the TP group's all-reduce adds the rank that holds it).
void embed_range_cuda(const int32_t* ids, const uint16_t* table, int64_t v0, int64_t v1, int64_t V, int64_t H,
                      int64_t T, float* x, cudaStream_t stream);

// Mamba-2 gated group RMSNorm (norm_before_gate = False), as gated_rmsnorm_cpu:
//   g = y * silu(z); each group of `group` channels is RMS-normalized; out = g_normed * w.
//   y fp32 [T, D] (row stride D), z BF16 rows of stride z_stride (a slice of the in_proj
//   output), w BF16 [D], out BF16 [T, D]. D % group == 0.
void gated_rmsnorm_cuda(const float* y, const uint16_t* z, int64_t z_stride, const uint16_t* w, int64_t T,
                        int64_t D, int64_t group, float eps, uint16_t* out, cudaStream_t stream);

}  // namespace nemotron::kernels
