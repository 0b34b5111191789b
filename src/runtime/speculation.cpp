#include "runtime/speculation.h"

#include <algorithm>

namespace nemotron::runtime {
namespace {
constexpr double kTimeWeight = 0.2;    // weight of a new step time in its moving average
constexpr double kAcceptWeight = 0.05;  // weight of a new verify in the acceptance averages

// The weight of the n-th sample (n >= 1) in a moving average of weight w: 1 / n until that
// falls to w, so the first 1 / w samples are averaged evenly (the first one alone is not taken
// as the rate: a single rejected first draft would otherwise weigh 0.95^n on every later
// choice) and the later ones follow the moving average.
double sample_weight(int64_t n, double w) { return n > 0 && 1.0 / static_cast<double>(n) > w ? 1.0 / n : w; }
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

int SpecController::best(int64_t batch) const {
  int best = -1;
  double best_rate = 0.0;
  for (int k = 0; k <= K_; ++k) {
    if (!measured(batch, k)) return -1;
    const double rate = expected_tokens(k) / step_time(batch, k);
    if (best < 0 || rate > best_rate) {
      best_rate = rate;
      best = k;
    }
  }
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
  // Unmeasured k first: K (it also measures every acceptance rate), then 0, 1, ...
  if (!measured(batch, K_)) return K_;
  for (int k = 0; k < K_; ++k)
    if (!measured(batch, k)) return k;
  const int best = this->best(batch);
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
    probe_k_ = static_cast<int>((best + 1 + probes_++ % K_) % (K_ + 1));
    probe_left_ = kProbeSteps - 1;
    doublings_ = doublings_ < kMaxGapDoublings ? doublings_ + 1 : doublings_;
    next_probe_ = decisions_ + (static_cast<int64_t>(probe_every_) << doublings_);
    return probe_k_;
  }
  return best;
}

}  // namespace nemotron::runtime
