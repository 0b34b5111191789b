// The speculation controller (runtime/speculation.h) on its own: which k it measures first,
// how it picks and probes, how it averages, how it keys times by batch size, and its rules for
// steps it cannot time (steps with prompt rows) and for the samples a k needs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "runtime/speculation.h"

using namespace nemotron::runtime;

namespace {

TEST(Speculative, ControllerPicksTheFasterModeAndProbes) {
  SpecController c(1, 8, 1);  // a k is measured after one steady step
  EXPECT_EQ(c.choose(1), 1);  // nothing measured: try verifying first
  c.record_step(1, 1, 0.004);  // the first step of a mode is a transition: not measured
  EXPECT_LT(c.step_time(1, 1), 0);
  EXPECT_EQ(c.choose(1), 1);
  c.record_step(1, 1, 0.004);
  EXPECT_DOUBLE_EQ(c.step_time(1, 1), 0.004);
  c.record_accept(1, 1);
  EXPECT_EQ(c.choose(1), 0);  // then plain
  c.record_step(1, 0, 0.009);  // the transition (it pays the verify's roll-back)
  EXPECT_EQ(c.choose(1), 0);
  c.record_step(1, 0, 0.003);
  EXPECT_DOUBLE_EQ(c.step_time(1, 0), 0.003);
  // 2 tokens per verify in 4 ms vs 1 in 3 ms: speculate, except for the probes (two plain
  // steps every 8 decisions).
  int spec = 0;
  for (int i = 0; i < 64; ++i) spec += c.choose(1);
  EXPECT_GE(spec, 48);
  EXPECT_LT(spec, 64);
  // Acceptance collapses: plain wins.
  for (int i = 0; i < 200; ++i) c.record_accept(0, 1);
  EXPECT_NEAR(c.expected_tokens(1), 1.0, 0.01);
  spec = 0;
  for (int i = 0; i < 64; ++i) spec += c.choose(1);
  EXPECT_LE(spec, 16);
  SpecController off(0);
  EXPECT_EQ(off.choose(4), 0);
}

// Every k is measured (K first, then 0, 1, ...), the one with the most tokens per second wins,
// and the others are probed in turn.
TEST(Speculative, ControllerShrinksKWhereLongerVerifiesDoNotPay) {
  SpecController c(3, 8, 1);  // measured after one steady step (the default's three: below)
  // Acceptance 0.9 / 0.7 / 0.5 for drafts 1 / 2 / 3: E(k) = 1, 1.9, 2.6, 3.1.
  for (int i = 0; i < 400; ++i) c.record_accept(i % 10 < 9 ? (i % 10 < 7 ? (i % 10 < 5 ? 3 : 2) : 1) : 0, 3);
  EXPECT_NEAR(c.expected_tokens(3), 3.1, 0.15);
  // Step times at B = 1 as a mixture-of-experts model has them (every verified row reads its
  // own experts): 2.0, 2.9, 4.2, 5.6 ms -> 500, 655, 619, 554 tokens/s: k = 1 wins.
  const double t[] = {0.0020, 0.0029, 0.0042, 0.0056};
  std::vector<int> order;
  for (int n = 0; n < 8; ++n) {  // two steps per unmeasured k
    const int k = c.choose(1);
    order.push_back(k);
    c.record_step(1, k, t[k]);
  }
  EXPECT_EQ(order, (std::vector<int>{3, 3, 0, 0, 1, 1, 2, 2}));
  std::vector<int> count(4, 0);
  int last = -1;
  for (int n = 0; n < 80; ++n) {
    const int k = c.choose(1);
    ++count[static_cast<std::size_t>(k)];
    c.record_step(1, k, t[k]);
    if (k != 1) {
      EXPECT_TRUE(last == 1 || last == k) << "probes are two steps of one k";
    }
    last = k;
  }
  EXPECT_GE(count[1], 56);
  EXPECT_GT(count[0], 0);  // every other k re-measured
  EXPECT_GT(count[2], 0);
  EXPECT_GT(count[3], 0);
  // At B = 64 verifying costs little more than decoding (the experts are read anyway): k = 3.
  const double t64[] = {0.021, 0.025, 0.030, 0.035};  // 3048, 4864, 5541, 5667 tokens/s
  for (int n = 0; n < 8; ++n) {
    const int k = c.choose(64);
    c.record_step(64, k, t64[k]);
  }
  int k3 = 0;
  for (int n = 0; n < 40; ++n) {
    const int k = c.choose(64);
    k3 += k == 3;
    c.record_step(64, k, t64[k]);
  }
  EXPECT_GE(k3, 28);
  // A verify of fewer drafts updates only the positions it drafted.
  const double a3 = c.acceptance(2);
  c.record_accept(1, 1);
  EXPECT_DOUBLE_EQ(c.acceptance(2), a3);
}

// While the probes confirm the choice, the gap between them doubles up to 16 x probe_every; a
// change of the choice starts it over.
TEST(Speculative, ControllerProbesLessWhileTheChoiceHolds) {
  SpecController c(1, 8, 1);
  const double t[] = {0.003, 0.006};  // verifying never pays (no draft is accepted)
  for (int i = 0; i < 100; ++i) c.record_accept(0, 1);
  std::vector<int64_t> probes;
  for (int64_t n = 0; n < 1200; ++n) {
    const int k = c.choose(1);
    if (k == 1 && (probes.empty() || probes.back() < n - 1)) probes.push_back(n);
    c.record_step(1, k, t[k]);
  }
  // Measuring (k = 1 twice, k = 0 twice), then probes 8, 16, 32, 64, 128, 128, ... decisions apart.
  ASSERT_GE(probes.size(), 8u);
  std::vector<int64_t> gaps;
  for (std::size_t i = 2; i < probes.size(); ++i) gaps.push_back(probes[i] - probes[i - 1]);
  EXPECT_EQ(gaps[0], 16 + 1);  // a probe takes two steps: the gap counts decisions, not steps
  EXPECT_EQ(gaps[1], 32 + 1);
  EXPECT_EQ(gaps[2], 64 + 1);
  EXPECT_EQ(gaps[3], 128 + 1);
  EXPECT_EQ(gaps[4], 128 + 1);
  // Acceptance comes back: the choice changes at the next probe, and the gaps start over.
  for (int i = 0; i < 200; ++i) c.record_accept(1, 1);
  int64_t first_k1 = -1, later_plain = 0;
  for (int64_t n = 0; n < 300; ++n) {
    const int k = c.choose(1);
    if (k == 1 && first_k1 < 0) first_k1 = n;
    if (first_k1 >= 0 && n > first_k1 + 2 && k == 0) ++later_plain;
    c.record_step(1, k, k == 1 ? 0.0035 : 0.003);
  }
  EXPECT_GE(first_k1, 0);
  EXPECT_LE(first_k1, 130);
  EXPECT_GT(later_plain, 0);  // probes of k = 0 again
}

// The first verifies are averaged evenly: a first draft rejected does not stand for the rate
// (with the plain moving average, one miss then nine hits would leave 0.37 instead of 0.9).
TEST(Speculative, ControllerAveragesTheFirstVerifiesEvenly) {
  SpecController c(3, 8);
  c.record_accept(0, 3);
  EXPECT_DOUBLE_EQ(c.acceptance(0), 0.0);
  for (int i = 0; i < 9; ++i) c.record_accept(3, 3);
  EXPECT_NEAR(c.acceptance(0), 0.9, 1e-12);
  EXPECT_NEAR(c.acceptance(2), 0.9, 1e-12);
  for (int i = 0; i < 10; ++i) c.record_accept(1, 3);  // twenty samples: 19 / 20 and 9 / 20
  EXPECT_NEAR(c.acceptance(0), 0.95, 1e-12);
  EXPECT_NEAR(c.acceptance(1), 0.45, 1e-12);
  c.record_accept(0, 3);  // the 21st moves it by 0.05 of the difference
  EXPECT_NEAR(c.acceptance(0), 0.95 - 0.05 * 0.95, 1e-12);
  // Only the positions a verify drafted count it.
  const double a1 = c.acceptance(1);
  c.record_accept(1, 1);
  EXPECT_DOUBLE_EQ(c.acceptance(1), a1);
  EXPECT_NEAR(c.acceptance(0), 0.95 - 0.05 * 0.95 + 0.05 * (1 - (0.95 - 0.05 * 0.95)), 1e-12);
}

// One short request (64 decisions, a fresh controller as `bench --spec-auto` has) at the
// demo model's acceptance (0.91 / 0.77 / 0.74 per draft, given the ones before) with Super's
// B = 1 step times as measured on an H100 (k = 0 and 3; k = 1 and 2 between: bench/RESULTS.md,
// twentieth session): true rates 157, 194, 223, 231 tokens/s, so k = 3 (or 2) should win. The
// first verify accepts all three drafts only 52% of the time; when a single first outcome stood
// for the rates (the earlier moving average), the rule often settled on k <= 1 after such a
// start: over these 400 seeded requests it reached 92.8% of the best k's tokens per second on
// average; averaging the first samples evenly reaches 96.6%. The bound is 95%.
TEST(Speculative, ControllerFindsTheBestKWithinAShortRequest) {
  const double t[] = {0.00638, 0.00986, 0.0117, 0.01357};
  const double cond[] = {0.91, 0.77, 0.74};
  double best = 0.0;
  for (int k = 0; k <= 3; ++k) {
    double e = 1.0, all = 1.0;
    for (int j = 0; j < k; ++j) e += (all *= cond[j]);
    best = std::max(best, e / t[k]);
  }
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  double sum_share = 0.0, worst = 1.0;
  const int requests = 400;
  for (int r = 0; r < requests; ++r) {
    SpecController c(3, 64);
    double tokens = 0.0, seconds = 0.0;
    for (int n = 0; n < 64; ++n) {
      const int k = c.choose(1);
      const double dt = t[k] * (0.97 + 0.06 * u(rng));
      c.record_step(1, k, dt);
      int accepted = 0;
      while (accepted < k && u(rng) < cond[accepted]) ++accepted;
      if (k > 0) c.record_accept(accepted, k);
      tokens += 1 + accepted;
      seconds += dt;
    }
    const double share = tokens / seconds / best;
    sum_share += share;
    worst = std::min(worst, share);
  }
  std::printf("short requests: %.3f of the best k's tokens/s on average, %.3f at worst\n", sum_share / requests,
              worst);
  EXPECT_GE(sum_share / requests, 0.95);
}

TEST(Speculative, ControllerKeysTimesByBatchAndModeAndSkipsTransitions) {
  SpecController c(1, 0);
  // Two plain sequences and one verifying sequence both run 2 rows: separate entries.
  c.record_step(2, 0, 0.001);
  c.record_step(2, 0, 0.002);
  c.record_step(1, 1, 0.005);  // transition
  c.record_step(1, 1, 0.006);
  EXPECT_DOUBLE_EQ(c.step_time(2, 0), 0.002);
  EXPECT_DOUBLE_EQ(c.step_time(1, 1), 0.006);
  EXPECT_LT(c.step_time(1, 0), 0);
  EXPECT_LT(c.step_time(2, 1), 0);
  // A prefill step in between: the next decode-only step is a transition again.
  c.record_other_step();
  c.record_step(1, 1, 0.1);
  EXPECT_DOUBLE_EQ(c.step_time(1, 1), 0.006);
  c.record_step(1, 1, 0.016);  // the first five samples are averaged evenly: (0.006 + 0.016) / 2
  EXPECT_NEAR(c.step_time(1, 1), 0.011, 1e-12);
  for (double t : {0.011, 0.011, 0.011}) c.record_step(1, 1, t);
  EXPECT_NEAR(c.step_time(1, 1), 0.011, 1e-12);
  c.record_step(1, 1, 0.021);  // sixth: the moving average, 0.011 + 0.2 (0.021 - 0.011)
  EXPECT_NEAR(c.step_time(1, 1), 0.013, 1e-12);
  // Batches of 3 and 4 share the bucket of 4.
  c.record_step(3, 1, 0.010);
  EXPECT_DOUBLE_EQ(c.step_time(4, 1), 0.010);
}

// A k counts as measured after three steady steps (the default): a first plain step slowed
// by a cold start does not stand for plain decoding; the three samples are averaged evenly.
TEST(Speculative, ControllerMeasuresEveryKThreeTimes) {
  SpecController c(1, 1000);
  for (int i = 0; i < 40; ++i) c.record_accept(i % 4 != 0, 1);  // E(1) = 1.75
  const double t[2] = {0.00166, 0.0038};  // plain 1.66 ms, verify 3.8 ms: plain wins
  int steps[2] = {0, 0};
  for (int i = 0; i < 8; ++i) {
    const int k = c.choose(1);
    // Plain steps: a transition, then the first steady one slowed to 2.4 ms.
    c.record_step(1, k, k == 0 && steps[0] == 1 ? 0.0024 : t[k]);
    ++steps[k];
  }
  EXPECT_TRUE(c.measured(1, 0));
  EXPECT_TRUE(c.measured(1, 1));
  EXPECT_NEAR(c.step_time(1, 0), (0.0024 + 2 * 0.00166) / 3, 1e-9);
  EXPECT_EQ(c.choose(1), 0);  // with the first sample alone (2.4 ms) verifying would have won
  EXPECT_EQ(steps[0], 4);     // a transition and three measured steps each
  EXPECT_EQ(steps[1], 4);
}

// A step with prompt rows (explore = false) is never measured: it does not try an unmeasured
// k or probe. It decodes plainly until every k of its batch size is measured, then takes the
// best one; the decode-only steps explore as before.
TEST(Speculative, ControllerDoesNotExploreInStepsWithPrompts) {
  SpecController c(2, 4, 1);
  for (int i = 0; i < 40; ++i) c.record_accept(2, 2);  // every draft accepted: E(k) = 1 + k
  for (int i = 0; i < 10; ++i) EXPECT_EQ(c.choose(64, false), 0);
  EXPECT_EQ(c.choose(64), 2);  // a decode-only step explores: K first
  c.record_step(64, 2, 0.020);
  c.record_step(64, 2, 0.020);
  EXPECT_EQ(c.choose(64, false), 0);  // k = 0 and 1 still unmeasured
  EXPECT_EQ(c.choose(64), 0);
  c.record_step(64, 0, 0.010);
  c.record_step(64, 0, 0.010);
  EXPECT_EQ(c.choose(64), 1);
  c.record_step(64, 1, 0.020);
  c.record_step(64, 1, 0.020);
  // 3 tokens in 20 ms beats 1 in 10 and 2 in 20: k = 2, in mixed steps too, without probes.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(c.choose(64, false), 2) << i;
  // Another batch size is measured on its own.
  EXPECT_EQ(c.choose(8, false), 0);
}

// A k below K is measured only while its best case can beat the best measured k: the
// acceptance at the upper end of its confidence interval (a position never drafted at the bound
// of the one before it), and a step no faster than the slowest measured one with fewer drafts.
// From a few verifies the interval is wide and every k is measured; once many verifies accepted
// nothing, a k whose best case cannot pay is skipped at the next batch size, and measured once
// acceptance rises.
TEST(Speculative, ControllerSkipsTheKThatCannotWin) {
  SpecController c(3, 1 << 20, 1);  // no probes in this test
  auto run = [&](int64_t B, const double* t, int steps, std::vector<int>& order, int accepted) {
    for (int n = 0; n < steps; ++n) {
      const int k = c.choose(B);
      order.push_back(k);
      c.record_step(B, k, t[k]);
      if (k > 0)
        for (int64_t s = 0; s < B; ++s) c.record_accept(std::min(accepted, k), k);
    }
  };
  // B = 1, a head that is never right: K's two verifies bound the rates by 0.67 and one
  // draft's two more by 0.5, so one and then two drafts (at most 1.67 in >= 2 ms, 2.0 in >= 2.9
  // ms) could beat plain (1 in 2 ms): every k is measured.
  const double t1[] = {0.0020, 0.0029, 0.0042, 0.0056};
  std::vector<int> order;
  run(1, t1, 10, order, 0);
  EXPECT_EQ(order, (std::vector<int>{3, 3, 0, 0, 1, 1, 2, 2, 0, 0}));
  // B = 64: after K's 128 more rejected first drafts the bound is 0.093 (the moving average
  // counts as 39 samples): one draft is measured (1.09 in >= 21 ms vs 1 in 21 ms); after its
  // 25 ms, two drafts (at most 1.19 in >= 25 ms) cannot pay and are skipped.
  const double t64[] = {0.021, 0.025, 0.030, 0.035};
  order.clear();
  run(64, t64, 8, order, 0);
  EXPECT_EQ(order, (std::vector<int>{3, 3, 0, 0, 1, 1, 0, 0}));
  EXPECT_FALSE(c.measured(64, 2));
  EXPECT_EQ(c.choose(64, false), 0);  // the skipped k does not hold back the choice of mixed steps
  // Acceptance rises (every draft accepted): the skipped k is measured, and k = 3 wins.
  for (int i = 0; i < 60; ++i) c.record_accept(3, 3);
  order.clear();
  run(64, t64, 6, order, 3);
  EXPECT_EQ(order, (std::vector<int>{2, 2, 3, 3, 3, 3}));
}

}  // namespace
