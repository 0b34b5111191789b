#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "runtime/sampler.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::runtime;

namespace {

std::vector<float> logits_of_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double v : p) l.push_back(static_cast<float>(std::log(v)));
  return l;
}

std::map<int32_t, int> histogram(SamplingParams sp, const std::vector<float>& logits, int n) {
  sp.seed = 1234;
  Sampler s(sp, {});
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) {
    // Fresh sampler state per draw would reset the RNG; penalties are off here, so reuse.
    h[s.sample(logits.data(), static_cast<int64_t>(logits.size())).token]++;
  }
  return h;
}

TEST(Sampler, GreedyIsArgmaxFirstOnTies) {
  SamplingParams sp;
  sp.temperature = 0;
  Sampler s(sp, {});
  std::vector<float> l{0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.sample(l.data(), 4).token, 1);
}

TEST(Sampler, SampledFrequenciesFollowTheDistribution) {
  const std::vector<double> p{0.5, 0.3, 0.15, 0.05};
  const auto h = histogram({}, logits_of_probs(p), 40000);
  for (int i = 0; i < 4; ++i) {
    const double f = h.count(i) ? h.at(i) / 40000.0 : 0.0;
    EXPECT_NEAR(f, p[i], 4 * std::sqrt(p[i] * (1 - p[i]) / 40000.0) + 1e-3) << "token " << i;
  }
}

TEST(Sampler, TemperatureSharpens) {
  SamplingParams sp;
  sp.temperature = 0.5f;  // p ∝ p^2: 0.25, 0.09, ... normalized
  const std::vector<double> p{0.5, 0.3, 0.2};
  const auto h = histogram(sp, logits_of_probs(p), 40000);
  const double z = 0.25 + 0.09 + 0.04;
  EXPECT_NEAR(h.at(0) / 40000.0, 0.25 / z, 0.015);
  EXPECT_NEAR(h.at(2) / 40000.0, 0.04 / z, 0.01);
}

TEST(Sampler, TopKTopPMinPRestrictTheCandidates) {
  const auto l = logits_of_probs({0.4, 0.3, 0.2, 0.1});
  SamplingParams k2;
  k2.top_k = 2;
  auto h = histogram(k2, l, 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_NEAR(h[0] / 5000.0, 0.4 / 0.7, 0.03);
  SamplingParams p;
  p.top_p = 0.65f;  // 0.4 + 0.3 >= 0.65 -> tokens 0, 1
  h = histogram(p, l, 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_GT(h[1], 0);
  SamplingParams m;
  m.min_p = 0.6f;  // keep p >= 0.24 -> tokens 0, 1
  h = histogram(m, l, 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  SamplingParams k1;
  k1.top_k = 1;
  h = histogram(k1, l, 100);
  EXPECT_EQ(h[0], 100);
}

TEST(Sampler, SameSeedSameTokensOtherSeedDiffers) {
  const auto l = logits_of_probs({0.25, 0.25, 0.25, 0.25});
  auto run = [&](uint64_t seed) {
    SamplingParams sp;
    sp.seed = seed;
    Sampler s(sp, {});
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(l.data(), 4).token);
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Sampler, FrequencyAndPresencePenalties) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.frequency_penalty = 0.6f;
  Sampler s(sp, {});
  std::vector<float> l{1.0f, 0.5f, 0.0f};
  // 1st: token 0 (1.0). 2nd: 1.0-0.6=0.4 < 0.5 -> token 1. 3rd: 0.4 vs 0.5-0.6 -> token 0.
  EXPECT_EQ(s.sample(l.data(), 3).token, 0);
  EXPECT_EQ(s.sample(l.data(), 3).token, 1);
  EXPECT_EQ(s.sample(l.data(), 3).token, 0);
  // 4th: token 0 seen twice: 1.0-1.2=-0.2, token 1: -0.1, token 2: 0.0 -> token 2.
  EXPECT_EQ(s.sample(l.data(), 3).token, 2);
  SamplingParams pp;
  pp.temperature = 0;
  pp.presence_penalty = 0.6f;
  Sampler s2(pp, {});
  EXPECT_EQ(s2.sample(l.data(), 3).token, 0);
  EXPECT_EQ(s2.sample(l.data(), 3).token, 1);
  // Presence does not grow with the count: 0.4, -0.1, 0.0 -> token 0, again and again.
  EXPECT_EQ(s2.sample(l.data(), 3).token, 0);
  EXPECT_EQ(s2.sample(l.data(), 3).token, 0);
}

TEST(Sampler, RepetitionPenaltyCoversPromptTokens) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.repetition_penalty = 2.0f;
  Sampler s(sp, {0});
  std::vector<float> l{1.0f, 0.6f, -1.0f};
  EXPECT_EQ(s.sample(l.data(), 3).token, 1);  // 1.0 / 2 = 0.5 < 0.6
}

TEST(Sampler, LogprobsAreLogSoftmaxOfRawLogits) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.logprobs = 2;
  sp.frequency_penalty = 1.0f;  // penalties must not change reported logprobs
  Sampler s(sp, {});
  std::vector<float> l{2.0f, 1.0f, 0.0f};
  const double lse = std::log(std::exp(2.0) + std::exp(1.0) + 1.0);
  auto r = s.sample(l.data(), 3);
  EXPECT_NEAR(r.logprob, 2.0 - lse, 1e-5);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[0].token, 0);
  EXPECT_EQ(r.top[1].token, 1);
  EXPECT_NEAR(r.top[1].logprob, 1.0 - lse, 1e-5);
}

TEST(Sampler, InvalidParametersAreErrors) {
  auto err = [](auto patch) {
    SamplingParams sp;
    patch(sp);
    try {
      sp.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(valid)");
  };
  EXPECT_THAT(err([](SamplingParams& s) { s.temperature = -1; }), ::testing::HasSubstr("temperature"));
  EXPECT_THAT(err([](SamplingParams& s) { s.top_p = 0; }), ::testing::HasSubstr("top_p"));
  EXPECT_THAT(err([](SamplingParams& s) { s.top_k = -5; }), ::testing::HasSubstr("top_k"));
  EXPECT_THAT(err([](SamplingParams& s) { s.min_p = 2; }), ::testing::HasSubstr("min_p"));
  EXPECT_THAT(err([](SamplingParams& s) { s.presence_penalty = 3; }), ::testing::HasSubstr("presence_penalty"));
  EXPECT_THAT(err([](SamplingParams& s) { s.frequency_penalty = -3; }), ::testing::HasSubstr("frequency_penalty"));
  EXPECT_THAT(err([](SamplingParams& s) { s.repetition_penalty = 0; }), ::testing::HasSubstr("repetition_penalty"));
  EXPECT_THAT(err([](SamplingParams& s) { s.logprobs = 21; }), ::testing::HasSubstr("top_logprobs"));
  EXPECT_EQ(err([](SamplingParams&) {}), "(valid)");
}

}  // namespace
