#pragma once
// Per-tensor FP8 (E4M3) quantization of a BF16 matrix, ModelOpt's FP8 weight convention
// (LinearWeight FP8: stored e4m3(W / scale), read back as e4m3 * scale, scale = amax / 448).
// The CUDA backend keeps such a copy of the BF16 lm_head for the MTP head's drafts (half the
// bytes per draft; drafts only steer speculation, the target's own lm_head verifies them).
// Both functions work on a range, so callers can split a large matrix over threads.
#include <cstdint>

namespace nemotron::kernels {

// max |w[i]| over the finite elements of w[0, n) (BF16 bits); 0 for none.
float bf16_abs_max(const uint16_t* w, int64_t n);

// The per-tensor scale for a tensor whose finite elements have max magnitude `amax`: amax /
// 448 (e4m3's largest finite value), 1 when amax is 0 (an all-zero tensor).
float fp8_tensor_scale(float amax);

// out[i] = e4m3(w[i] / scale) for i < n: round to nearest even, saturating at +-448.
void quantize_fp8(const uint16_t* w, int64_t n, float scale, uint8_t* out);

}  // namespace nemotron::kernels
