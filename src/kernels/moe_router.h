#pragma once
// Sigmoid MoE router with correction bias and grouped top-k (DeepSeek-V3 style), fp32.
#include <cstdint>

namespace nemotron::kernels {

struct RouterParams {
  int64_t experts = 0;     // E
  int64_t top_k = 0;       // k
  int64_t n_group = 1;     // groups of E/n_group contiguous experts
  int64_t topk_group = 1;  // groups kept
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
};

// logits [E] (router logits, fp32), bias [E] (e_score_correction_bias, may be nullptr).
// s = sigmoid(logits); selection uses s + bias (group score = sum of the top-2 biased
// scores in the group; experts outside the best topk_group groups are excluded);
// weights are the unbiased s of the selected experts, renormalized when norm_topk_prob
// (w / (sum + 1e-20)), times routed_scaling_factor.
// Writes k expert ids (in descending order of biased score; ties -> lower id) and weights.
void route_topk_cpu(const float* logits, const float* bias, const RouterParams& p,
                    int32_t* expert_ids, float* weights);

}  // namespace nemotron::kernels
