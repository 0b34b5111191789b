#pragma once
// Constrained decoding's allowed-token masks: bits [ceil(V / 32)] uint32 per row, bit t % 32 of
// word t / 32 set when token t is allowed. Disallowed tokens' logits become -inf, so that the
// sampler (sampling.h) never draws them and logprobs are over the allowed tokens.
#include <cstdint>

namespace nemotron::kernels {

inline int64_t token_mask_words(int64_t V) { return (V + 31) / 32; }

// logits [V] in place.
void mask_logits_cpu(float* logits, int64_t V, const uint32_t* bits);

}  // namespace nemotron::kernels
