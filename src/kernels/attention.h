#pragma once
// Causal GQA attention without positional encoding (NoPE), CPU reference, fp32.
#include <cstdint>

namespace nemotron::kernels {

struct AttentionDims {
  int64_t q_heads = 0;   // Hq
  int64_t kv_heads = 0;  // Hkv; q head h uses kv head h / (Hq / Hkv)
  int64_t head_dim = 0;  // Dh
};

// q [T, Hq*Dh] are the queries of absolute positions pos0 .. pos0+T-1; k, v [S, Hkv*Dh]
// hold every cached position 0 .. S-1 (S >= pos0 + T). Query t sees keys 0 .. pos0+t.
// out [T, Hq*Dh]. softmax(q k^T / sqrt(Dh)) v in fp32.
void attention_cpu(const float* q, const float* k, const float* v, const AttentionDims& dims,
                   int64_t T, int64_t pos0, float* out);

}  // namespace nemotron::kernels
