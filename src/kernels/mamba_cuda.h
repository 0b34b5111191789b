#pragma once
// Mamba-2 decode on the GPU (one new token per sequence), for a batch of sequences each with
// its own state slot (CPU references: mamba.h, run with T = 1).
#include <cstdint>
#include <limits>

#include "kernels/cuda_stream.h"
#include "kernels/state_round.h"

namespace nemotron::kernels {

// SSM state slots (every kernel below that updates one): `state` points at [slots, Hm, P, N]
// elements of type state_dtype (fp32, or 16-bit codes: kernels/state_round.h). A 16-bit state
// is decoded exactly, updated in fp32 and rounded when written back (state_stochastic: with
// the noise of (state_layer, the sequence's position after the write, element index)); then
// row_pos, device int32 [rows], each row's position in its sequence, must be given.
struct SsmStateSlots {
  void* state = nullptr;
  StateDType state_dtype = StateDType::F32;
  bool state_stochastic = true;
  uint32_t state_layer = 0;
  const int32_t* row_pos = nullptr;
};

// Causal depthwise conv1d state update + SiLU, for B sequences.
//   xbc     BF16 rows of stride xbc_stride: row b holds sequence b's C pre-conv channels
//           (the xBC slice of its in_proj output)
//   state   fp32 [slots, K-1, C]: the last K-1 pre-conv rows of each slot, oldest first;
//           slot slots_idx[b] is read and shifted by one row in place
//   slot    device int32 [B]; distinct slots within one call
//   w       BF16 [C, K] (conv1d.weight [C, 1, K]); bias BF16 [C] or nullptr
//   out     fp32 [B, C] = silu(bias + sum_k w[c, k] * window[k][c]) (window = state ++ x)
struct ConvOperands {  // shared with ConvPrefillArgs
  const uint16_t* xbc = nullptr;
  int64_t xbc_stride = 0;
  float* state = nullptr;
  const int32_t* slot = nullptr;
  const uint16_t* w = nullptr;
  const uint16_t* bias = nullptr;
  int64_t B = 0, C = 0, K = 4;
  float* out = nullptr;
};
struct ConvUpdateArgs : ConvOperands {};
void conv1d_update_silu_cuda(const ConvUpdateArgs& a, cudaStream_t stream);

// Selective state update (one step), per sequence b and head h (group g = h / (Hm / G)):
//   dt = clamp(softplus(dt_raw[b, h] + dt_bias[h]), dt_min, dt_max)   (no clamp: 0, +inf)
//   S = exp(dt * A[h]) * S + dt * x[b, h, :] (outer) B[b, g, :];   y = S C[b, g, :] + D[h] x
//   x, B, C fp32 rows of stride xbc_stride (the conv output: x at column 0, B at Hm*P,
//   C at Hm*P + G*N); dt_raw BF16 rows of stride dt_stride; dt_bias, A (= -exp(A_log)), D fp32 [Hm]
//   state [slots, Hm, P, N] (SsmStateSlots), slot slot[b] updated in place; y fp32 [B, Hm*P].
struct SsmOperands : SsmStateSlots {  // shared with SsmScanArgs
  const float* xbc = nullptr;
  int64_t xbc_stride = 0;
  const uint16_t* dt_raw = nullptr;
  int64_t dt_stride = 0;
  const float* dt_bias = nullptr;
  const float* A = nullptr;
  const float* D = nullptr;
  const int32_t* slot = nullptr;
  int64_t B = 0, heads = 0, head_dim = 0, state_dim = 0, groups = 1;
  float dt_min = 0.0f, dt_max = std::numeric_limits<float>::infinity();
  float* y = nullptr;
};
struct SsmUpdateArgs : SsmOperands {};
void ssm_state_update_cuda(const SsmUpdateArgs& a, cudaStream_t stream);

// Varlen prefill: sequences b = 0..B-1 own rows [cu_rows[b], cu_rows[b+1]) of the inputs
// (cu_rows device int32 [B+1], cu_rows[0] = 0) and state slot slot[b].
// Conv: like conv1d_update_silu_cuda but over each sequence's rows in order, starting from
// the slot's window and leaving the last K-1 pre-conv rows of (window ++ rows) in it.
//   xbc BF16 rows of stride xbc_stride; state fp32 [slots, K-1, C]; out fp32 [rows, C].
struct ConvPrefillArgs : ConvOperands {
  const int32_t* cu_rows = nullptr;
  int64_t rows = 0;
};
void conv1d_prefill_silu_cuda(const ConvPrefillArgs& a, cudaStream_t stream);
// Scan: ssm_state_update_cuda's math applied to each sequence's rows in order (row r of
// sequence b uses and updates slot[b]'s state); y fp32 [rows, Hm*P]. Same operands and
// strides as SsmUpdateArgs, with rows instead of B.
struct SsmScanArgs : SsmOperands {
  const int32_t* cu_rows = nullptr;
  int64_t rows = 0;
  // Algorithm: 1 sequential; 2 SSD chunked (chunk 128, tensor cores; (head_dim, state_dim) =
  // (64, 128) or (16, 16)); 0 each sequence by its own length: the chunked scan from
  // kSsmChunkedMinRows rows when a workspace is given, the dims are supported and
  // ssm_scan_chunked_default() holds, else the sequential one. Same up to rounding (the
  // chunked scan's products are TF32: ~1e-3 of the magnitudes summed, see mamba_prefill_ssd.cu).
  int algo = 0;
  // The chunked scan's scratch (device, 16-byte aligned): algo 0 needs
  // ssm_scan_workspace_bytes(rows, ...), algo 2 its own bound (cudaMallocAsync when null).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};
void ssm_scan_cuda(const SsmScanArgs& a, cudaStream_t stream);
// Whether algo 0 takes the chunked scan for long sequences: NEMOTRON_SSM_SCAN=chunked|sequential
// (A/B runs), else the built-in choice.
bool ssm_scan_chunked_default();

// The chunked scan's host arithmetic (also in CPU-only builds: the memory plan counts it).
inline constexpr int64_t kSsmChunk = 128;           // rows per chunk
inline constexpr int64_t kSsmChunkedMinRows = 128;  // algo 0 chunks sequences of this many rows or more
inline bool ssm_scan_chunked_supported(int64_t head_dim, int64_t state_dim) {
  return (head_dim == 64 && state_dim == 128) || (head_dim == 16 && state_dim == 16);
}
// Chunks of the sequences of at least `from` rows among `rows` rows in B sequences: each has
// ceil(len / Q) <= floor(len / Q) + 1, and there are at most min(B, rows / from) of them.
inline int64_t ssm_scan_chunk_bound(int64_t rows, int64_t B, int64_t from) {
  return rows / kSsmChunk + (B < rows / from ? B : rows / from);
}
// Workspace per chunk: S [heads, P, N], cumsums and dt [heads, Q], fp32.
inline int64_t ssm_scan_chunk_bytes(int64_t heads, int64_t head_dim, int64_t state_dim) {
  return heads * (head_dim * state_dim + 2 * kSsmChunk) * 4;
}
// Workspace bytes of algo 0 for calls of up to `rows` rows (0 where it never chunks).
inline int64_t ssm_scan_workspace_bytes(int64_t rows, int64_t heads, int64_t head_dim, int64_t state_dim) {
  if (!ssm_scan_chunked_supported(head_dim, state_dim) || rows < kSsmChunkedMinRows) return 0;
  return ssm_scan_chunk_bound(rows, rows, kSsmChunkedMinRows) * ssm_scan_chunk_bytes(heads, head_dim, state_dim);
}

// Fused Mamba-2 decode (mamba_decode.cu): one new token per row, row r its own state slot
// slot[r], from the in_proj output row [z | xBC | dt] to out_proj's BF16 input, in one kernel:
// conv1d state update + SiLU (as conv1d_update_silu_cuda), selective state update with the
// D skip (as ssm_state_update_cuda), and the gated group RMSNorm (as gated_rmsnorm_cuda with
// group = di / groups). Same fp32 state layouts and per-element arithmetic as those kernels;
// the group norm's sum of squares is reduced in a different (fixed) order, so `out` matches
// the three-kernel path up to float rounding, and each row depends on that row alone.
//   in_proj  BF16 rows of stride in_stride >= di + C + heads: z at 0, xBC at di, dt at di + C
//            (di = heads * head_dim, C = di + 2 * groups * state_dim)
//   conv_state fp32 [slots, K-1, C]; conv_w BF16 [C, K]; conv_b BF16 [C] or nullptr
//   ssm state [slots, heads, head_dim, state_dim] (SsmStateSlots: `state`); dt_bias, A, D fp32
//   [heads]; norm_w BF16 [di]; out BF16 [rows, di]; slot device int32 [rows], distinct.
// Runs on sm_90+ only (thread block clusters): check mamba_decode_fused_supported first.
struct MambaDecodeArgs : SsmStateSlots {
  const uint16_t* in_proj = nullptr;
  int64_t in_stride = 0;
  float* conv_state = nullptr;
  const uint16_t* conv_w = nullptr;
  const uint16_t* conv_b = nullptr;
  const float* dt_bias = nullptr;
  const float* A = nullptr;
  const float* D = nullptr;
  const uint16_t* norm_w = nullptr;
  const int32_t* slot = nullptr;
  int64_t rows = 0, heads = 0, head_dim = 0, state_dim = 0, groups = 1, K = 4;
  float dt_min = 0.0f, dt_max = std::numeric_limits<float>::infinity();
  float eps = 1e-5f;
  uint16_t* out = nullptr;
};
// True when the current device and these dimensions are supported: sm_90+, heads % groups
// == 0, state_dim in {16, 32, 64, 128, 256}, K in [1, 8], (heads / groups) * head_dim / (the
// blocks per group, up to 8) <= 1024.
bool mamba_decode_fused_supported(int64_t heads, int64_t head_dim, int64_t state_dim, int64_t groups, int64_t K);
// Throws Error on unsupported or inconsistent arguments.
void mamba_decode_fused_cuda(const MambaDecodeArgs& a, cudaStream_t stream);

}  // namespace nemotron::kernels
