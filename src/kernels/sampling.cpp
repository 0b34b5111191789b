#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include "kernels/philox.h"
#include "util/error.h"

namespace nemotron::kernels {

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

void penalty_observe_prompt(PenaltyState& state, const int32_t* ids, int64_t n) {
  for (int64_t i = 0; i < n; ++i) state.seen.insert(ids[i]);
}

void apply_penalties_cpu(float* w, int64_t V, const SamplingParams& p, const PenaltyState* state) {
  if (!state || !p.penalized()) return;
  const float r = p.repetition_penalty;
  if (r != 1.0f)
    for (const int32_t t : state->seen)
      if (t >= 0 && t < V) w[t] = w[t] > 0.0f ? w[t] / r : w[t] * r;
  const float f = p.frequency_penalty, pr = p.presence_penalty;
  if (f != 0.0f || pr != 0.0f)
    for (const auto& [t, c] : state->counts)
      if (c > 0 && t >= 0 && t < V) {
        const float sub = f * static_cast<float>(c) + pr;
        w[t] -= sub;
      }
}

namespace {

// model::argmax: the first index of the largest value, NaN never chosen, 0 when v[0] is NaN.
int32_t argmax_first(const std::vector<float>& v) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}

std::vector<float> scaled(const std::vector<float>& w, float inv_t) {
  std::vector<float> s(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) s[i] = w[i] * inv_t;
  return s;
}

uint64_t mass_of(float d) { return static_cast<uint64_t>(expf(-d) * 1099511627776.0f); }  // 2^40

// Step 4's theta_p over K_k = { (d, i) in d : d <= theta_k } without sorting all of it: the
// elements go to buckets by d (monotone: a lower bucket holds only smaller d, equal d share a
// bucket; d >= kMassFree, whose mass is 0, and +inf go to the last), the buckets' masses are
// summed in order up to the first bucket where the running sum reaches the target, and only that
// bucket is sorted to find the value. The sums are integers, so the order of addition changes
// nothing: the same theta_p as sorting K_k whole.
float top_p_threshold(const std::vector<std::pair<float, int64_t>>& d, float theta_k, float top_p) {
  constexpr int kBuckets = 4096;
  constexpr float kMassFree = 32.0f;  // expf(-32) * 2^40 < 1: every d from here has mass 0
  auto bucket = [](float x) {
    return x < kMassFree ? std::min(kBuckets - 1, static_cast<int>(x * (kBuckets / kMassFree))) : kBuckets;
  };
  std::vector<uint64_t> mass(kBuckets + 1, 0);
  uint64_t total = 0;
  for (const auto& e : d)
    if (e.first <= theta_k) {
      const uint64_t q = mass_of(e.first);
      mass[static_cast<std::size_t>(bucket(e.first))] += q;
      total += q;
    }
  const uint64_t target = static_cast<uint64_t>(static_cast<double>(top_p) * static_cast<double>(total));
  uint64_t cum = 0;
  int b = 0;
  for (; b < kBuckets; ++b) {  // the last bucket's mass is 0: the target is reached before it or never
    if (cum + mass[static_cast<std::size_t>(b)] >= target) break;
    cum += mass[static_cast<std::size_t>(b)];
  }
  std::vector<std::pair<float, uint64_t>> kk;  // (d, q) of bucket b
  for (const auto& e : d)
    if (e.first <= theta_k && bucket(e.first) == b) kk.push_back({e.first, mass_of(e.first)});
  std::sort(kk.begin(), kk.end());
  for (std::size_t a = 0; a < kk.size();) {
    std::size_t e = a;
    while (e < kk.size() && kk[e].first == kk[a].first) cum += kk[e++].second;
    if (cum >= target) return kk[a].first;
    a = e;
  }
  return INFINITY;  // nothing kept reaches the target (not reached: the largest token has d = 0)
}

// The penalized logits of one row.
std::vector<float> penalized(const float* logits, int64_t V, const SamplingParams& p, const PenaltyState* state) {
  std::vector<float> w(logits, logits + V);
  apply_penalties_cpu(w.data(), V, p, state);
  return w;
}

}  // namespace

SampleFilter sample_filter_cpu(const float* w, int64_t V, const SamplingParams& p) {
  SampleFilter f;
  f.inv_t = 1.0f / p.temperature;
  f.M = -INFINITY;
  std::vector<float> s(static_cast<std::size_t>(V));
  for (int64_t i = 0; i < V; ++i) {
    s[i] = w[i] * f.inv_t;
    if (s[i] > f.M) f.M = s[i];
  }
  if (!std::isfinite(f.M)) {
    f.degenerate = true;
    return f;
  }
  // d over the candidates (non-NaN s), with their indices.
  std::vector<std::pair<float, int64_t>> d;
  d.reserve(s.size());
  for (int64_t i = 0; i < V; ++i)
    if (!std::isnan(s[i])) d.push_back({f.M - s[i], i});
  if (p.min_p > 0.0f) f.theta_m = -logf(p.min_p);
  if (p.top_k > 0 && p.top_k < V && static_cast<int64_t>(d.size()) >= p.top_k) {
    std::vector<float> dv(d.size());
    for (std::size_t i = 0; i < d.size(); ++i) dv[i] = d[i].first;
    std::nth_element(dv.begin(), dv.begin() + (p.top_k - 1), dv.end());
    f.theta_k = dv[static_cast<std::size_t>(p.top_k - 1)];
  }
  if (p.top_p < 1.0f) f.theta_p = top_p_threshold(d, f.theta_k, p.top_p);
  f.theta = std::min({f.theta_k, f.theta_p, f.theta_m});
  for (const auto& [di, i] : d) f.kept += di <= f.theta;
  return f;
}

SampleResult sample_cpu(const float* logits, int64_t V, const SamplingParams& p, uint64_t seed, uint64_t draw,
                        PenaltyState* penalties) {
  SampleResult out;
  const std::vector<float> w = penalized(logits, V, p, penalties);
  if (p.greedy()) {
    out.token = argmax_first(w);
  } else {
    const SampleFilter f = sample_filter_cpu(w.data(), V, p);
    const std::vector<float> s = scaled(w, f.inv_t);
    if (f.degenerate) {
      out.token = argmax_first(s);
    } else {
      // A floor (reach) of the winning value: the largest token's s + its noise. A token with s +
      // kGumbelBound below it cannot win (its value is below the winner's), so its noise is
      // never drawn; the others are compared in index order as step 5 says. One Philox block
      // serves 4 consecutive tokens.
      auto noise_block = [&](int64_t i) { return sample_noise_block(seed, draw, static_cast<uint32_t>(i / 4)); };
      const int64_t top = argmax_first(s);
      const float reach = s[top] + gumbel(noise_block(top).v[top % 4]);
      float best = -INFINITY;
      int64_t bi = -1, block = -1;
      Philox4 x{};
      for (int64_t i = 0; i < V; ++i) {
        if (std::isnan(s[i]) || s[i] + kGumbelBound < reach) continue;
        const float d = f.M - s[i];
        if (!(d <= f.theta)) continue;
        if (i / 4 != block) {
          block = i / 4;
          x = noise_block(i);
        }
        const float v = s[i] + gumbel(x.v[i % 4]);
        if (bi < 0 || v > best) {
          best = v;
          bi = i;
        }
      }
      out.token = static_cast<int32_t>(bi);
    }
  }
  if (p.logprobs >= 0) {
    double mx = -INFINITY;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
    const double lse = mx + std::log(sum);
    out.logprob = static_cast<float>(static_cast<double>(logits[out.token]) - lse);
    if (p.logprobs > 0) {
      std::vector<int32_t> idx;
      idx.reserve(static_cast<std::size_t>(V));
      for (int64_t i = 0; i < V; ++i)
        if (!std::isnan(logits[i])) idx.push_back(static_cast<int32_t>(i));
      const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(p.logprobs), idx.size());
      std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(n), idx.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
      });
      for (std::size_t i = 0; i < n; ++i)
        out.top.push_back({idx[i], static_cast<float>(static_cast<double>(logits[idx[i]]) - lse)});
    }
  }
  if (penalties) {
    penalties->counts[out.token]++;
    penalties->seen.insert(out.token);
  }
  return out;
}

std::vector<double> sampling_distribution_cpu(const float* logits, int64_t V, const SamplingParams& p,
                                              const PenaltyState* penalties) {
  std::vector<double> prob(static_cast<std::size_t>(V), 0.0);
  const std::vector<float> w = penalized(logits, V, p, penalties);
  if (p.greedy()) {
    prob[argmax_first(w)] = 1.0;
    return prob;
  }
  const SampleFilter f = sample_filter_cpu(w.data(), V, p);
  const std::vector<float> s = scaled(w, f.inv_t);
  if (f.degenerate) {
    prob[argmax_first(s)] = 1.0;
    return prob;
  }
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (std::isnan(s[i]) || !(f.M - s[i] <= f.theta)) continue;
    prob[i] = std::exp(static_cast<double>(s[i]) - static_cast<double>(f.M));
    sum += prob[i];
  }
  for (auto& v : prob) v /= sum;
  return prob;
}

}  // namespace nemotron::kernels
