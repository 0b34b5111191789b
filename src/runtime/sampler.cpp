#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"

namespace nemotron::runtime {

void SamplingParams::validate() const {
  auto bad = [](const std::string& what) { throw Error(what); };
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) bad("temperature must be >= 0");
  if (!(top_p > 0.0f && top_p <= 1.0f)) bad("top_p must be in (0, 1]");
  if (top_k < -1) bad("top_k must be -1 (off) or >= 0");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("min_p must be in [0, 1]");
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) bad("presence_penalty must be in [-2, 2]");
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) bad("frequency_penalty must be in [-2, 2]");
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) bad("repetition_penalty must be > 0");
  if (logprobs > 20) bad("top_logprobs must be at most 20");
}

Sampler::Sampler(const SamplingParams& params, const std::vector<int32_t>& prompt) : params_(params) {
  params_.validate();
  rng_.seed(params_.seed ? *params_.seed : std::random_device{}());
  if (params_.repetition_penalty != 1.0f)
    for (int32_t t : prompt) seen_[t] = true;
}

SampleResult Sampler::sample(const float* logits, int64_t vocab) {
  SampleResult out;
  auto& w = work_;
  w.assign(logits, logits + vocab);

  // 1. Penalties.
  if (params_.repetition_penalty != 1.0f)
    for (const auto& [t, _] : seen_)
      if (t >= 0 && t < vocab) w[t] = w[t] > 0 ? w[t] / params_.repetition_penalty : w[t] * params_.repetition_penalty;
  if (params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f)
    for (const auto& [t, n] : output_counts_)
      if (t >= 0 && t < vocab) w[t] -= params_.frequency_penalty * static_cast<float>(n) + params_.presence_penalty;

  // 2-3. Choose.
  int32_t chosen;
  if (params_.temperature == 0.0f) {
    chosen = static_cast<int32_t>(std::max_element(w.begin(), w.end()) - w.begin());
  } else {
    const float inv_t = 1.0f / params_.temperature;
    auto& ord = order_;
    ord.resize(static_cast<std::size_t>(vocab));
    std::iota(ord.begin(), ord.end(), 0);
    // Candidates sorted by logit (descending, lower id first on ties).
    int64_t keep = vocab;
    if (params_.top_k > 0 && params_.top_k < vocab) keep = params_.top_k;
    auto cmp = [&](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
    if (keep < vocab) {
      std::partial_sort(ord.begin(), ord.begin() + keep, ord.end(), cmp);
      ord.resize(static_cast<std::size_t>(keep));
    } else {
      std::sort(ord.begin(), ord.end(), cmp);
    }
    std::vector<double> p(ord.size());
    const double mx = w[ord[0]] * inv_t;
    double sum = 0;
    for (std::size_t i = 0; i < ord.size(); ++i) sum += p[i] = std::exp(w[ord[i]] * inv_t - mx);
    for (auto& v : p) v /= sum;
    std::size_t n = p.size();
    if (params_.top_p < 1.0f) {
      double mass = 0;
      std::size_t i = 0;
      for (; i < n; ++i) {
        mass += p[i];
        if (mass >= params_.top_p) break;
      }
      n = std::min(n, i + 1);
    }
    if (params_.min_p > 0.0f) {
      const double floor = params_.min_p * p[0];
      std::size_t i = 1;
      while (i < n && p[i] >= floor) ++i;
      n = i;
    }
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) total += p[i];
    const double u = std::uniform_real_distribution<double>(0.0, total)(rng_);
    double acc = 0;
    chosen = ord[n - 1];
    for (std::size_t i = 0; i < n; ++i) {
      acc += p[i];
      if (u < acc) {
        chosen = ord[i];
        break;
      }
    }
  }
  out.token = chosen;

  // Logprobs of the raw logits.
  if (params_.logprobs >= 0) {
    const float mx = *std::max_element(logits, logits + vocab);
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    out.logprob = logits[chosen] - lse;
    if (params_.logprobs > 0) {
      std::vector<int32_t> idx(static_cast<std::size_t>(vocab));
      std::iota(idx.begin(), idx.end(), 0);
      const int64_t k = std::min<int64_t>(params_.logprobs, vocab);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
      });
      for (int64_t i = 0; i < k; ++i) out.top.push_back({idx[i], logits[idx[i]] - lse});
    }
  }
  output_counts_[chosen]++;
  if (params_.repetition_penalty != 1.0f) seen_[chosen] = true;
  return out;
}

}  // namespace nemotron::runtime
