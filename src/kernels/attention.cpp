#include "kernels/attention.h"

#include <cmath>
#include <vector>

#include "kernels/linear.h"
#include "util/parallel.h"

namespace nemotron::kernels {

void attention_cpu(const float* q, const float* k, const float* v, const AttentionDims& d,
                   int64_t T, int64_t pos0, float* out) {
  const int64_t Dh = d.head_dim, qw = d.q_heads * Dh, kw = d.kv_heads * Dh;
  const int64_t group = d.q_heads / d.kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  parallel_for(static_cast<std::size_t>(T * d.q_heads), [&](std::size_t i0, std::size_t i1) {
    std::vector<float> scores;
    for (std::size_t i = i0; i < i1; ++i) {
      const int64_t t = static_cast<int64_t>(i) / d.q_heads, h = static_cast<int64_t>(i) % d.q_heads;
      const int64_t kvh = h / group, len = pos0 + t + 1;
      const float* qh = q + t * qw + h * Dh;
      scores.resize(static_cast<std::size_t>(len));
      float mx = -INFINITY;
      for (int64_t s = 0; s < len; ++s) {
        scores[s] = dot_f32(qh, k + s * kw + kvh * Dh, Dh) * scale;
        mx = std::max(mx, scores[s]);
      }
      double sum = 0;
      for (int64_t s = 0; s < len; ++s) {
        scores[s] = std::exp(scores[s] - mx);
        sum += scores[s];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + t * qw + h * Dh;
      for (int64_t e = 0; e < Dh; ++e) o[e] = 0.0f;
      for (int64_t s = 0; s < len; ++s) {
        const float p = scores[s] * inv;
        const float* vs = v + s * kw + kvh * Dh;
        for (int64_t e = 0; e < Dh; ++e) o[e] += p * vs[e];
      }
    }
  });
}

}  // namespace nemotron::kernels
