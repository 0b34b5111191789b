#include "runtime/speculation.h"

#include <algorithm>
#include <cmath>

namespace nemotron::runtime {
namespace {
constexpr double kTimeWeight = 0.2;    // weight of a new step time in its moving average
constexpr double kAcceptWeight = 0.05;  // weight of a new verify in the acceptance averages

// The weight of the n-th sample (n >= 1) in a moving average of weight w: 1 / n until that
// falls to w, so the first 1 / w samples are averaged evenly (the first one alone is not taken
// as the rate: a single rejected first draft would otherwise weigh 0.95^n on every later
// choice) and the later ones follow the moving average.
double sample_weight(int64_t n, double w) { return n > 0 && 1.0 / static_cast<double>(n) > w ? 1.0 / n : w; }

// The upper end of the Wilson score interval (z = 2, ~97.7% one-sided) of a rate measured as
// p over n samples. An estimate from few verifies is noisy (0 of 4 draws happens at a true
// rate of 0.5 once in 16), so a k is ruled out only when even this end cannot pay for it.
double rate_upper_bound(double p, int64_t n) {
  if (n <= 0) return 1.0;
  constexpr double z2 = 4.0;
  const double nn = static_cast<double>(n);
  const double centre = p + z2 / (2 * nn);
  const double spread = 2.0 * std::sqrt(std::max(0.0, p * (1 - p)) / nn + z2 / (4 * nn * nn));
  return std::min(1.0, (centre + spread) / (1 + z2 / nn));
}

}  // namespace

int64_t SpecController::bucket(int64_t batch) {
  int64_t b = 1;
  while (b < batch) b *= 2;
  return b;
}

double SpecController::step_time(int64_t batch, int k) const {
  const auto it = time_.find({bucket(batch), k});
  return it == time_.end() ? -1.0 : it->second.first;
}

bool SpecController::measured(int64_t batch, int k) const {
  const auto it = time_.find({bucket(batch), k});
  return it != time_.end() && it->second.second >= min_samples_;
}

double SpecController::expected_tokens(int k) const {
  double e = 1.0;
  for (int j = 0; j < k && j < K_; ++j) e += accepted_[static_cast<std::size_t>(j)];
  return e;
}

void SpecController::record_step(int64_t batch, int k, double seconds) {
  const bool steady = last_mode_ == k;
  last_mode_ = k;
  if (!steady || batch <= 0 || k < 0 || k > K_ || !(seconds > 0)) return;
  auto& [mean, n] = time_[{bucket(batch), k}];
  ++n;
  mean += sample_weight(n, kTimeWeight) * (seconds - mean);
}

void SpecController::record_accept(int accepted, int k) {
  for (int j = 0; j < k && j < K_; ++j) {
    const double hit = j < accepted ? 1.0 : 0.0;
    double& a = accepted_[static_cast<std::size_t>(j)];
    const int64_t n = ++accept_samples_[static_cast<std::size_t>(j)];
    a += sample_weight(n, kAcceptWeight) * (hit - a);
  }
}

double SpecController::expected_tokens_bound(int k) const {
  // A moving average of weight w has the variance of a mean of (2 - w) / w samples (39): it
  // counts as that many at most.
  const auto cap = static_cast<int64_t>((2.0 - kAcceptWeight) / kAcceptWeight);
  double e = 1.0, a = 1.0;
  for (int j = 0; j < k && j < K_; ++j) {
    // A_j <= A_i for i < j (drafts 1..j+1 all accepted implies drafts 1..i+1 too): the
    // smallest bound so far holds for j as well.
    const int64_t n = accept_samples_[static_cast<std::size_t>(j)];
    if (n > 0) a = std::min(a, rate_upper_bound(accepted_[static_cast<std::size_t>(j)], std::min(n, cap)));
    e += a;
  }
  return e;
}

double SpecController::best_measured_rate(int64_t batch, int* best_k) const {
  double best_rate = -1.0;
  for (int k = 0; k <= K_; ++k) {
    if (!measured(batch, k)) continue;
    const double rate = expected_tokens(k) / step_time(batch, k);
    if (rate > best_rate) {
      best_rate = rate;
      if (best_k) *best_k = k;
    }
  }
  return best_rate;
}

bool SpecController::worth_measuring(int64_t batch, int k) const {
  if (measured(batch, k)) return false;
  if (k == K_) return true;  // measured first: its verifies sample every draft position
  double t_low = -1.0;  // t_k >= t_j for every j < k: more rows, more drafting
  for (int j = 0; j < k; ++j)
    if (measured(batch, j)) t_low = std::max(t_low, step_time(batch, j));
  if (!(t_low > 0)) return true;
  return expected_tokens_bound(k) / t_low > best_measured_rate(batch, nullptr);
}

int SpecController::best(int64_t batch) const {
  for (int k = 0; k <= K_; ++k)
    if (worth_measuring(batch, k)) return -1;
  int best = -1;
  best_measured_rate(batch, &best);
  return best;
}

int SpecController::choose(int64_t batch, bool explore) {
  if (K_ <= 0 || batch <= 0) return 0;
  if (!explore) return std::max(0, best(batch));
  if (probe_left_ > 0) {
    --probe_left_;
    return probe_k_;
  }
  ++decisions_;
  // Unmeasured k that could still win: K first (it also samples every acceptance rate, and
  // a head that is never right reaches the retiring count soonest), then 0, 1, ...
  if (worth_measuring(batch, K_)) return K_;
  for (int k = 0; k < K_; ++k)
    if (worth_measuring(batch, k)) return k;
  int best = 0;  // every k that could win is measured: the fastest of them
  best_measured_rate(batch, &best);
  // Keep the others measured, in turn: the gap between probes starts at probe_every and
  // doubles after each probe that left the choice as it was (up to 2^kMaxGapDoublings times);
  // a new choice or batch bucket starts over.
  if (best != last_best_ || bucket(batch) != last_bucket_) {
    last_best_ = best;
    last_bucket_ = bucket(batch);
    doublings_ = 0;
    next_probe_ = decisions_ + probe_every_;
  }
  if (probe_every_ > 0 && decisions_ >= next_probe_) {
    doublings_ = doublings_ < kMaxGapDoublings ? doublings_ + 1 : doublings_;
    next_probe_ = decisions_ + (static_cast<int64_t>(probe_every_) << doublings_);
    // The next other k in turn that has been measured here (one left unmeasured cannot win).
    for (int i = 0; i < K_; ++i) {
      const int k = static_cast<int>((best + 1 + probes_++ % K_) % (K_ + 1));
      if (!measured(batch, k)) continue;
      probe_k_ = k;
      probe_left_ = kProbeSteps - 1;
      return probe_k_;
    }
  }
  return best;
}

}  // namespace nemotron::runtime
