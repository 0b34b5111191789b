#pragma once
// Bytes one decode step reads, by the engine's accounting (accounting.h; bench's roofline and achieved
// GB/s): every weight once per step (the GEMV/GEMM reads a weight once for all rows), except
// the embedding (one row per token) and the routed experts, of which a step reads the
// distinct ones its rows selected. That count is estimated, per MoE layer, as
// E (1 - (1 - k/E)^R) for R rows: the expected number of distinct experts when each row picks
// k of E uniformly and independently (an estimate: a trained router's choices for
// neighbouring tokens overlap more). State (read + write) and KV are per row.
//
// Speculative decoding (spec_step): a step of B sequences verifying k drafts each reads the
// trunk's weights for B (k + 1) rows, every state once plus the copy the verify keeps for the
// roll-back (read + write), and before it k MTP head steps over B rows (the head's weights,
// its experts' distinct ones, and the lm_head the head shares with the trunk, or its FP8 copy).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/accounting.h"

namespace nemotron::model {

struct StepBytes {
  int64_t fixed_weights = 0;     // weight_bytes_per_token without the embedding row and routed experts
  int64_t embedding_row = 0;
  struct MoeLayer {
    int64_t E = 0;
    int64_t mean_expert_bytes = 0;  // up + down of one expert, mean over the layer's experts
  };
  std::vector<MoeLayer> moe, mtp_moe;  // trunk, MTP head
  int64_t k = 0;                  // experts per token
  int64_t state_per_row = 0;
  int64_t kv_per_position = 0;    // K+V of every attention layer
  int64_t mtp_fixed = 0;          // one MTP head step: eh_proj, its blocks' dense weights, the lm_head

  // fp8_draft_head: the drafts read an FP8 copy of a BF16 lm_head (the CUDA backend's
  // CudaModelOptions::fp8_draft_head), one byte per weight.
  StepBytes(const Model& m, const ModelAccounting& acc, bool fp8_draft_head = false) {
    const auto& w = m.weights;
    embedding_row = w.embeddings.stored_bytes() / std::max<int64_t>(1, w.embeddings.out);
    k = m.config.num_experts_per_tok;
    int64_t routed_k = 0;  // accounting.cpp's "routed experts (active)" row, computed the same way
    for (const auto& b : w.blocks) {
      const MoeLayer l = experts_of(b);
      if (l.E == 0) continue;
      moe.push_back(l);
      routed_k += l.mean_expert_bytes * k;
    }
    fixed_weights = acc.weight_bytes_per_token - embedding_row - routed_k;
    state_per_row = acc.state_bytes_per_token;
    kv_per_position = acc.kv_bytes_per_token_per_position;
    if (w.has_mtp) {
      const auto& lm = w.lm_head.w;
      const bool fp8 = fp8_draft_head && lm.format == kernels::WeightFormat::Dense &&
                       lm.dense_type == kernels::ElementType::BF16 && lm.in % 32 == 0;
      mtp_fixed = w.mtp.eh_proj.w.stored_bytes() + (fp8 ? lm.out * lm.in : lm.stored_bytes());
      for (const auto& b : w.mtp.blocks) {
        for (const Linear* L : {&b.mamba.in_proj, &b.mamba.out_proj, &b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o,
                                       &b.moe.gate, &b.moe.shared_up, &b.moe.shared_down, &b.moe.fc1_latent,
                                       &b.moe.fc2_latent, &b.mlp.up, &b.mlp.down})
          if (L->w.data) mtp_fixed += L->w.stored_bytes();
        const MoeLayer l = experts_of(b);
        if (l.E > 0) mtp_moe.push_back(l);
      }
    }
  }
  static MoeLayer experts_of(const BlockWeights& b) {
    if (b.kind != LayerKind::MoE || b.moe.up.empty()) return {};
    int64_t by = 0;
    for (std::size_t e = 0; e < b.moe.up.size(); ++e) by += b.moe.up[e].w.stored_bytes() + b.moe.down[e].w.stored_bytes();
    const auto E = static_cast<int64_t>(b.moe.up.size());
    return {E, by / E};
  }
  // Expected distinct experts of one MoE layer with E experts for B rows.
  double experts(int64_t E, int64_t B) const {
    const double p = std::min(1.0, static_cast<double>(k) / static_cast<double>(E));
    return static_cast<double>(E) * (1.0 - std::pow(1.0 - p, static_cast<double>(B)));
  }
  double mean_experts(int64_t B) const {
    double s = 0;
    for (const auto& l : moe) s += experts(l.E, B);
    return moe.empty() ? 0.0 : s / static_cast<double>(moe.size());
  }
  double routed(const std::vector<MoeLayer>& layers, int64_t rows) const {
    double r = 0;
    for (const auto& l : layers) r += static_cast<double>(l.mean_expert_bytes) * experts(l.E, rows);
    return r;
  }
  // Trunk weights read by a step of B rows.
  double weights(int64_t B) const {
    return static_cast<double>(fixed_weights) + static_cast<double>(B * embedding_row) + routed(moe, B);
  }
  // A decode step of B sequences at depth 0 verifying kd drafts each (kd = 0: plain decoding).
  double spec_step(int64_t B, int64_t kd) const {
    const double state = static_cast<double>(B * state_per_row) * (kd > 0 ? 2.0 : 1.0);
    const double head = kd > 0 ? static_cast<double>(kd) * (static_cast<double>(mtp_fixed) +
                                                             static_cast<double>(B * embedding_row) + routed(mtp_moe, B))
                               : 0.0;
    return weights(B * (kd + 1)) + state + head;
  }
};

}  // namespace nemotron::model
