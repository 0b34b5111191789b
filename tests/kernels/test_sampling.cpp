// The CPU sampling reference (kernels/sampling.h, kernels/philox.h): Philox known answers, the
// noise maps, validate() messages, each filter and penalty on hand-made rows, logprobs, the
// penalty-state update, reproducibility, and a chi-square of sample_cpu over many draws against
// sampling_distribution_cpu (which must also reject samples drawn with the wrong parameters).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "kernels/philox.h"
#include "kernels/sampling.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::kernels;

namespace {

std::vector<float> logits_of_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double v : p) l.push_back(static_cast<float>(std::log(v)));
  return l;
}

SamplingParams sampled(float temperature = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  return p;
}

int64_t kept(const std::vector<float>& w, const SamplingParams& p) {
  return sample_filter_cpu(w.data(), static_cast<int64_t>(w.size()), p).kept;
}

TEST(Philox, KnownAnswers) {
  // Random123's kat_vectors for philox4x32-10: counter, key -> output.
  struct Kat {
    uint32_t c[4], k[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& t : kats) {
    const Philox4 x = philox4x32_10(t.c[0], t.c[1], t.c[2], t.c[3], t.k[0], t.k[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(x.v[i], t.out[i]) << "word " << i;
  }
  // The sampler's layout: counter {j, lo(draw), hi(draw), 0}, key {lo(seed), hi(seed)}.
  const uint64_t seed = 0x0123456789ABCDEFull, draw = 0xFEDCBA9876543210ull;
  const Philox4 a = sample_noise_block(seed, draw, 7);
  const Philox4 b = philox4x32_10(7, 0x76543210u, 0xFEDCBA98u, 0, 0x89ABCDEFu, 0x01234567u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.v[i], b.v[i]);
}

TEST(Philox, UniformAndGumbelStayFinite) {
  EXPECT_EQ(uniform_open01(0), 0.5f * 5.9604644775390625e-8f);
  EXPECT_EQ(uniform_open01(0x100u), 1.5f * 5.9604644775390625e-8f);
  EXPECT_LT(uniform_open01(0xFFFFFFFFu), 1.0f);
  EXPECT_GT(uniform_open01(0), 0.0f);
  const float gmax = gumbel(0xFFFFFFFFu), gmin = gumbel(0);
  EXPECT_TRUE(std::isfinite(gmax));
  EXPECT_TRUE(std::isfinite(gmin));
  EXPECT_LT(gmax, kGumbelBound);
  EXPECT_GT(gmax, 16.0f);
  EXPECT_LT(gmin, -2.0f);
  // Monotone over a sweep of the 2^24 levels (the kernel's skip bound relies on the maximum).
  float prev = -INFINITY;
  for (uint32_t k = 0; k < (1u << 24); k += 4099) {
    const float g = gumbel(k << 8);
    EXPECT_GE(g, prev);
    prev = g;
  }
}

TEST(SamplingParams, ValidateMessages) {
  auto message = [](SamplingParams p) -> std::string {
    try {
      p.validate();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  SamplingParams p;
  EXPECT_EQ(message(p), "");
  p.temperature = -1;
  EXPECT_EQ(message(p), "temperature must be >= 0");
  p = {};
  p.temperature = INFINITY;
  EXPECT_EQ(message(p), "temperature must be >= 0");
  p = {};
  p.top_p = 0;
  EXPECT_EQ(message(p), "top_p must be in (0, 1]");
  p = {};
  p.top_k = -2;
  EXPECT_EQ(message(p), "top_k must be -1 (off) or >= 0");
  p = {};
  p.min_p = 1.5f;
  EXPECT_EQ(message(p), "min_p must be in [0, 1]");
  p = {};
  p.presence_penalty = 3;
  EXPECT_EQ(message(p), "presence_penalty must be in [-2, 2]");
  p = {};
  p.frequency_penalty = -3;
  EXPECT_EQ(message(p), "frequency_penalty must be in [-2, 2]");
  p = {};
  p.repetition_penalty = 0;
  EXPECT_EQ(message(p), "repetition_penalty must be > 0");
  p = {};
  p.logprobs = 21;
  EXPECT_EQ(message(p), "top_logprobs must be at most 20");
  p = {};
  EXPECT_FALSE(p.greedy());
  EXPECT_FALSE(p.penalized());
  p.temperature = 0;
  EXPECT_TRUE(p.greedy());
  p.presence_penalty = 0.1f;
  EXPECT_TRUE(p.penalized());
}

TEST(Sampling, GreedyIsArgmaxFirstOnTies) {
  SamplingParams p;
  p.temperature = 0;
  const std::vector<float> l{0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(sample_cpu(l.data(), 4, p, 1, 0, nullptr).token, 1);
  const std::vector<float> nan_first{NAN, 5.0f, 1.0f};
  EXPECT_EQ(sample_cpu(nan_first.data(), 3, p, 1, 0, nullptr).token, 0);
  const std::vector<float> nan_mid{1.0f, NAN, 2.0f};
  EXPECT_EQ(sample_cpu(nan_mid.data(), 3, p, 1, 0, nullptr).token, 2);
  const std::vector<float> all_ninf{-INFINITY, -INFINITY};
  EXPECT_EQ(sample_cpu(all_ninf.data(), 2, p, 1, 0, nullptr).token, 0);
  // Degenerate sampled rows take the same rule on s: the first +inf.
  const std::vector<float> pinf{1.0f, INFINITY, 2.0f, INFINITY};
  for (uint64_t d = 0; d < 8; ++d) EXPECT_EQ(sample_cpu(pinf.data(), 4, sampled(), 3, d, nullptr).token, 1);
  EXPECT_TRUE(sample_filter_cpu(pinf.data(), 4, sampled()).degenerate);
}

TEST(Sampling, TopKKeepsTiesAtTheBoundary) {
  const std::vector<float> l{1.0f, 3.0f, 3.0f, 2.0f, 3.0f, -INFINITY};
  SamplingParams p = sampled();
  p.top_k = 2;
  EXPECT_EQ(kept(l, p), 3);  // the three 3.0s
  p.top_k = 4;
  EXPECT_EQ(kept(l, p), 4);
  p.top_k = 5;
  EXPECT_EQ(kept(l, p), 5);
  p.top_k = 6;  // = V: off; -inf stays a (never winning) candidate
  EXPECT_EQ(kept(l, p), 6);
  const auto dist = sampling_distribution_cpu(l.data(), 6, [] {
    SamplingParams q = sampled();
    q.top_k = 1;
    return q;
  }(), nullptr);
  for (int i : {1, 2, 4}) EXPECT_NEAR(dist[i], 1.0 / 3, 1e-12);
  for (int i : {0, 3, 5}) EXPECT_EQ(dist[i], 0.0);
  // All equal: every token ties with the maximum.
  const std::vector<float> eq(100, 0.25f);
  p.top_k = 5;
  EXPECT_EQ(kept(eq, p), 100);
  // top_k over the non-NaN candidates: fewer than k of them -> off.
  const std::vector<float> nan_row{1.0f, NAN, NAN, 0.0f};
  p.top_k = 3;
  EXPECT_EQ(kept(nan_row, p), 2);
}

TEST(Sampling, TopPBoundaryAndTies) {
  const auto l = logits_of_probs({0.4, 0.3, 0.2, 0.1});
  SamplingParams p = sampled();
  for (const auto& [top_p, k] : std::vector<std::pair<float, int64_t>>{{0.3f, 1}, {0.65f, 2}, {0.75f, 3}, {0.95f, 4}}) {
    p.top_p = top_p;
    EXPECT_EQ(kept(l, p), k) << "top_p " << top_p;
  }
  const auto tied = logits_of_probs({0.4, 0.2, 0.2, 0.2});
  p.top_p = 0.5f;
  EXPECT_EQ(kept(tied, p), 4);
  // top_p is taken over K_k (renormalized): 0.4 / 0.7 >= 0.55 keeps one token, 0.6 keeps two.
  p.top_k = 2;
  p.top_p = 0.55f;
  EXPECT_EQ(kept(l, p), 1);
  p.top_p = 0.6f;
  EXPECT_EQ(kept(l, p), 2);
  // Temperature sharpens before top_p: at t = 0.5 the masses are 16:9:4:1 / 30.
  p = sampled(0.5f);
  p.top_p = 0.8f;  // 16/30 = 0.53, 25/30 = 0.83
  EXPECT_EQ(kept(l, p), 2);
}

TEST(Sampling, MinP) {
  const auto l = logits_of_probs({0.4, 0.3, 0.2, 0.1});
  SamplingParams p = sampled();
  p.min_p = 0.6f;  // p >= 0.24
  EXPECT_EQ(kept(l, p), 2);
  p.min_p = 0.45f;  // p >= 0.18
  EXPECT_EQ(kept(l, p), 3);
  p.min_p = 1.0f;  // the maximum only
  EXPECT_EQ(kept(l, p), 1);
  const auto f = sample_filter_cpu(l.data(), 4, p);
  EXPECT_EQ(f.theta_m, -logf(1.0f));
}

TEST(Sampling, PenaltiesByHand) {
  const std::vector<float> l{2.0f, -1.0f, 0.5f, 3.0f, 1.0f};
  PenaltyState st;
  const int32_t prompt[] = {0, 1, 1, 99, -4};  // out-of-range ids are ignored
  penalty_observe_prompt(st, prompt, 5);
  st.counts[3] = 2;
  st.seen.insert(3);
  SamplingParams p = sampled();
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  std::vector<float> w = l;
  apply_penalties_cpu(w.data(), 5, p, &st);
  EXPECT_EQ(w[0], 1.0f);                  // seen, > 0: / 2
  EXPECT_EQ(w[1], -2.0f);                 // seen, <= 0: * 2
  EXPECT_EQ(w[2], 0.5f);                  // unseen
  EXPECT_EQ(w[3], 1.5f - (0.5f * 2 + 0.25f));  // / 2, then - (f * 2 + p)
  EXPECT_EQ(w[4], 1.0f);
  // Frequency / presence only: the prompt-only tokens are untouched.
  SamplingParams q = sampled();
  q.presence_penalty = -1.5f;
  w = l;
  apply_penalties_cpu(w.data(), 5, q, &st);
  EXPECT_EQ(w[0], 2.0f);
  EXPECT_EQ(w[3], 3.0f + 1.5f);
  // Not penalized or no state: unchanged.
  w = l;
  apply_penalties_cpu(w.data(), 5, sampled(), &st);
  EXPECT_EQ(w, l);
  apply_penalties_cpu(w.data(), 5, p, nullptr);
  EXPECT_EQ(w, l);
  // Greedy follows the penalized logits: 3 -> 0.25 leaves token 0 (1.0) ... and token 4 (1.0):
  // the first of the tie.
  p.temperature = 0;
  EXPECT_EQ(sample_cpu(l.data(), 5, p, 0, 0, &st).token, 0);
  EXPECT_EQ(st.counts.at(0), 1);
  EXPECT_EQ(st.counts.at(3), 2);
  EXPECT_TRUE(st.seen.count(0));
  // Now token 0 has count 1 and is seen: 2 / 2 - (0.5 + 0.25) = 0.25, so token 4 wins.
  EXPECT_EQ(sample_cpu(l.data(), 5, p, 0, 0, &st).token, 4);
  EXPECT_EQ(st.counts.at(4), 1);
}

TEST(Sampling, LogprobsOfTheRawLogits) {
  const std::vector<float> l{1.0f, 3.0f, 3.0f, 2.0f, -INFINITY, 0.5f};
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = 3;
  PenaltyState st;
  st.seen.insert(1);
  st.counts[1] = 5;
  p.frequency_penalty = 2.0f;  // greedy now picks token 2 (token 1 is penalized)
  const SampleResult r = sample_cpu(l.data(), 6, p, 0, 0, &st);
  double sum = 0;
  for (float v : l) sum += std::exp(static_cast<double>(v) - 3.0);
  const double lse = 3.0 + std::log(sum);
  EXPECT_EQ(r.token, 2);
  EXPECT_NEAR(r.logprob, 3.0 - lse, 1e-6);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].token, 1);  // raw logits: the penalty does not move the list
  EXPECT_EQ(r.top[1].token, 2);
  EXPECT_EQ(r.top[2].token, 3);
  EXPECT_NEAR(r.top[2].logprob, 2.0 - lse, 1e-6);
  p.logprobs = 0;
  EXPECT_TRUE(sample_cpu(l.data(), 6, p, 0, 0, nullptr).top.empty());
  p.logprobs = -1;
  EXPECT_EQ(sample_cpu(l.data(), 6, p, 0, 0, nullptr).logprob, 0.0f);
  // More requested than there are non-NaN logits: the NaN is never listed.
  const std::vector<float> small{0.0f, NAN, 1.0f};
  p.logprobs = 5;
  const SampleResult s = sample_cpu(small.data(), 3, p, 0, 0, nullptr);
  ASSERT_EQ(s.top.size(), 2u);
  EXPECT_EQ(s.top[0].token, 2);
  EXPECT_EQ(s.top[1].token, 0);
}

TEST(Sampling, ReproducibleBySeedAndDraw) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> l(1000);
  for (auto& v : l) v = nd(rng);
  SamplingParams p = sampled(0.8f);
  p.top_p = 0.95f;
  std::map<int32_t, int> seen_tokens;
  for (uint64_t d = 0; d < 50; ++d) {
    const int32_t a = sample_cpu(l.data(), 1000, p, 42, d, nullptr).token;
    EXPECT_EQ(a, sample_cpu(l.data(), 1000, p, 42, d, nullptr).token);
    seen_tokens[a]++;
  }
  EXPECT_GT(seen_tokens.size(), 5u);  // the draws differ
  int differ = 0;
  for (uint64_t d = 0; d < 50; ++d)
    differ += sample_cpu(l.data(), 1000, p, 42, d, nullptr).token != sample_cpu(l.data(), 1000, p, 43, d, nullptr).token;
  EXPECT_GT(differ, 25);
}

// Step 4's theta_p and step 5's token exactly as sampling.h words them (sort K_k whole; draw
// every kept token's noise): sample_cpu's bucketed selection and its skip of tokens that cannot
// win must give the same bits.
float top_p_by_sorting(const std::vector<float>& w, const SamplingParams& p, float theta_k) {
  const float inv_t = 1.0f / p.temperature;
  float M = -INFINITY;
  for (float v : w) M = std::max(M, v * inv_t);
  std::vector<std::pair<float, uint64_t>> kk;
  uint64_t total = 0;
  for (float v : w) {
    const float s = v * inv_t;
    if (std::isnan(s) || !(M - s <= theta_k)) continue;
    const uint64_t q = static_cast<uint64_t>(expf(-(M - s)) * 1099511627776.0f);
    kk.push_back({M - s, q});
    total += q;
  }
  const uint64_t target = static_cast<uint64_t>(static_cast<double>(p.top_p) * static_cast<double>(total));
  std::sort(kk.begin(), kk.end());
  uint64_t cum = 0;
  for (std::size_t a = 0; a < kk.size();) {
    std::size_t b = a;
    while (b < kk.size() && kk[b].first == kk[a].first) cum += kk[b++].second;
    if (cum >= target) return kk[a].first;
    a = b;
  }
  return INFINITY;
}

int32_t token_drawing_every_noise(const std::vector<float>& w, const SamplingParams& p, uint64_t seed, uint64_t draw) {
  const SampleFilter f = sample_filter_cpu(w.data(), static_cast<int64_t>(w.size()), p);
  float best = -INFINITY;
  int32_t bi = -1;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const float s = w[i] * f.inv_t;
    if (std::isnan(s) || !(f.M - s <= f.theta)) continue;
    const float v = s + gumbel(sample_noise_block(seed, draw, static_cast<uint32_t>(i / 4)).v[i % 4]);
    if (bi < 0 || v > best) {
      best = v;
      bi = static_cast<int32_t>(i);
    }
  }
  return bi;
}

TEST(Sampling, TopPSelectionEqualsSortingAtRealVocabularies) {
  // Spreads from flat (most of the vocabulary kept) to peaked (a few tokens), rounded logits
  // (ties everywhere, also across the selection's buckets), -inf entries (masked tokens), a
  // NaN, top_k with it, and Nano's 131,072 tokens.
  std::mt19937 rng(11);
  int cases = 0;
  for (int64_t V : {int64_t{7}, int64_t{1000}, int64_t{131072}}) {
    for (float spread : {0.01f, 1.0f, 4.0f, 20.0f}) {
      for (int variant = 0; variant < 4; ++variant) {
        std::normal_distribution<float> nd(0.0f, spread);
        std::vector<float> w(static_cast<std::size_t>(V));
        for (auto& v : w) v = nd(rng);
        if (variant == 1)
          for (auto& v : w) v = std::round(v * 4.0f) / 4.0f;
        if (variant == 2)
          for (std::size_t i = 0; i < w.size(); i += 3) w[i] = -INFINITY;
        if (variant == 3) w[w.size() / 2] = NAN;
        for (float top_p : {0.05f, 0.5f, 0.9f, 0.95f, 0.999f}) {
          for (int top_k : {0, 50}) {
            SamplingParams p = sampled(variant == 0 ? 0.7f : 1.0f);
            p.top_p = top_p;
            p.top_k = top_k;
            const SampleFilter f = sample_filter_cpu(w.data(), V, p);
            ASSERT_EQ(f.theta_p, top_p_by_sorting(w, p, f.theta_k))
                << "V " << V << " spread " << spread << " variant " << variant << " top_p " << top_p << " top_k " << top_k;
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 3 * 4 * 4 * 5 * 2);
}

TEST(Sampling, TopPTargetReachedExactlyAtABucketsEnd) {
  // Masses 2^40 (the largest token) and 2^39 twice (d with expf(-d) exactly 0.5): total 2^41,
  // top_p 0.5 -> target 2^40, reached exactly by the largest token alone, whose bucket must
  // then end the search (theta_p = 0: only it is kept).
  float d = 0.69f;
  while (expf(-d) != 0.5f && d < 0.70f) d = std::nextafter(d, 1.0f);
  ASSERT_EQ(expf(-d), 0.5f);
  const std::vector<float> w = {-d, 0.0f, -d};
  SamplingParams p = sampled(1.0f);
  p.top_p = 0.5f;
  const SampleFilter f = sample_filter_cpu(w.data(), 3, p);
  EXPECT_EQ(f.theta_p, 0.0f);
  EXPECT_EQ(f.theta_p, top_p_by_sorting(w, p, f.theta_k));
  EXPECT_EQ(f.kept, 1);
}

TEST(Sampling, SkippingTokensThatCannotWinDrawsTheSameToken) {
  // Flat rows (every token within the noise bound of the largest: nothing skipped) to peaked ones
  // (nearly everything skipped), with and without filters.
  std::mt19937 rng(12);
  for (float spread : {0.5f, 3.0f, 12.0f}) {
    std::normal_distribution<float> nd(0.0f, spread);
    std::vector<float> w(4099);
    for (auto& v : w) v = nd(rng);
    for (float top_p : {1.0f, 0.9f}) {
      SamplingParams p = sampled(0.8f);
      p.top_p = top_p;
      for (uint64_t d = 0; d < 40; ++d)
        ASSERT_EQ(sample_cpu(w.data(), 4099, p, 77, d, nullptr).token, token_drawing_every_noise(w, p, 77, d))
            << "spread " << spread << " top_p " << top_p << " draw " << d;
    }
  }
}

// Chi-square of `n` draws (draw = 0 .. n-1) against `expected` (probabilities); bins with an
// expected count below 5 are merged (in index order) into one. Returns (statistic, dof).
std::pair<double, int> chi_square(const std::vector<int>& counts, const std::vector<double>& expected, int n) {
  double stat = 0, rest_obs = 0, rest_exp = 0;
  int bins = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const double e = expected[i] * n;
    if (e >= 5) {
      stat += (counts[i] - e) * (counts[i] - e) / e;
      ++bins;
    } else {
      rest_obs += counts[i];
      rest_exp += e;
    }
  }
  if (rest_exp > 0 || rest_obs > 0) {  // observed where nothing is expected: an infinite statistic
    stat += (rest_obs - rest_exp) * (rest_obs - rest_exp) / std::max(rest_exp, 1e-300);
    ++bins;
  }
  return {stat, bins - 1};
}

// The chi-square quantile with upper tail ~1e-6 (Wilson-Hilferty, z = 4.75).
double chi_square_limit(int dof) {
  const double k = dof, z = 4.75, a = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

TEST(Sampling, ChiSquareAgainstTheExactDistribution) {
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  const int64_t V = 96;
  std::vector<float> l(V);
  for (auto& v : l) v = nd(rng);
  PenaltyState st;
  for (int32_t t : {3, 7, 11, 50}) st.seen.insert(t);
  st.counts[7] = 2;
  struct Case {
    const char* name;
    SamplingParams p;
    bool use_state;
  };
  std::vector<Case> cases;
  cases.push_back({"t=1", sampled(1.0f), false});
  cases.push_back({"t=0.7 top_p=0.9", [] { auto p = sampled(0.7f); p.top_p = 0.9f; return p; }(), false});
  cases.push_back({"t=1.3 top_k=12", [] { auto p = sampled(1.3f); p.top_k = 12; return p; }(), false});
  cases.push_back({"t=0.9 min_p=0.05", [] { auto p = sampled(0.9f); p.min_p = 0.05f; return p; }(), false});
  cases.push_back({"penalties", [] {
                     auto p = sampled(1.0f);
                     p.repetition_penalty = 1.5f;
                     p.frequency_penalty = 0.4f;
                     p.presence_penalty = 0.3f;
                     return p;
                   }(),
                   true});
  const int n = 40000;
  for (const Case& c : cases) {
    const PenaltyState* ps = c.use_state ? &st : nullptr;
    const auto expected = sampling_distribution_cpu(l.data(), V, c.p, ps);
    std::vector<int> counts(V, 0);
    for (int d = 0; d < n; ++d) {
      PenaltyState copy = st;  // the state must not drift between draws here
      counts[sample_cpu(l.data(), V, c.p, 2024, static_cast<uint64_t>(d), c.use_state ? &copy : nullptr).token]++;
    }
    for (int64_t i = 0; i < V; ++i) {
      if (expected[i] == 0) {
        EXPECT_EQ(counts[i], 0) << c.name << ": token " << i << " was filtered out";
      }
    }
    const auto [stat, dof] = chi_square(counts, expected, n);
    std::printf("[ chi2 ] %-20s stat %.1f dof %d limit %.1f\n", c.name, stat, dof, chi_square_limit(dof));
    EXPECT_LT(stat, chi_square_limit(dof)) << c.name;
    // The same samples against a wrong distribution (temperature ignored / filters off / penalties off) fail.
    SamplingParams wrong = c.p;
    if (c.use_state) {
      wrong.repetition_penalty = 1.0f;
      wrong.frequency_penalty = wrong.presence_penalty = 0.0f;
    } else if (c.p.temperature != 1.0f && c.p.top_p == 1.0f) {
      wrong.temperature = 1.0f;
    } else if (c.p.temperature == 1.0f && c.p.top_k < 0) {
      wrong.temperature = 0.8f;
    } else {
      wrong.top_p = 1.0f;
      wrong.top_k = -1;
      wrong.min_p = 0.0f;
    }
    const auto bad = sampling_distribution_cpu(l.data(), V, wrong, ps);
    const auto [bstat, bdof] = chi_square(counts, bad, n);
    std::printf("[ chi2 ] %-20s wrong-params stat %.1f dof %d\n", c.name, bstat, bdof);
    EXPECT_GT(bstat, chi_square_limit(bdof)) << c.name << ": the test cannot tell a wrong distribution";
  }
}

TEST(Sampling, PenaltyStateUpdates) {
  const std::vector<float> l{0.0f, 0.1f, 0.2f};
  PenaltyState st;
  SamplingParams p = sampled();
  for (uint64_t d = 0; d < 10; ++d) sample_cpu(l.data(), 3, p, 9, d, &st);
  int total = 0;
  for (const auto& [t, c] : st.counts) {
    total += c;
    EXPECT_TRUE(st.seen.count(t));
  }
  EXPECT_EQ(total, 10);
}

}  // namespace
