#include "kernels/moe_router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace nemotron::kernels {

void route_topk_cpu(const float* logits, const float* bias, const RouterParams& p,
                    int32_t* expert_ids, float* weights) {
  const int64_t E = p.experts;
  std::vector<float> s(static_cast<std::size_t>(E)), sel(static_cast<std::size_t>(E));
  for (int64_t e = 0; e < E; ++e) {
    s[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    sel[e] = s[e] + (bias ? bias[e] : 0.0f);
  }
  if (p.n_group > 1) {
    const int64_t per = E / p.n_group;
    std::vector<float> group_score(static_cast<std::size_t>(p.n_group));
    for (int64_t g = 0; g < p.n_group; ++g) {
      float a = -INFINITY, b = -INFINITY;  // top two
      for (int64_t e = g * per; e < (g + 1) * per; ++e) {
        if (sel[e] > a) { b = a; a = sel[e]; }
        else if (sel[e] > b) b = sel[e];
      }
      group_score[g] = a + b;
    }
    std::vector<int64_t> order(static_cast<std::size_t>(p.n_group));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return group_score[x] > group_score[y]; });
    std::vector<bool> keep(static_cast<std::size_t>(p.n_group), false);
    for (int64_t i = 0; i < p.topk_group; ++i) keep[order[i]] = true;
    for (int64_t e = 0; e < E; ++e)
      if (!keep[e / per]) sel[e] = -INFINITY;
  }
  std::vector<int32_t> idx(static_cast<std::size_t>(E));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + p.top_k, idx.end(), [&](int32_t x, int32_t y) {
    return sel[x] > sel[y] || (sel[x] == sel[y] && x < y);
  });
  float sum = 0.0f;
  for (int64_t i = 0; i < p.top_k; ++i) {
    expert_ids[i] = idx[i];
    weights[i] = s[idx[i]];
    sum += weights[i];
  }
  for (int64_t i = 0; i < p.top_k; ++i) {
    if (p.norm_topk_prob) weights[i] /= (sum + 1e-20f);
    weights[i] *= p.routed_scaling_factor;
  }
}

}  // namespace nemotron::kernels
