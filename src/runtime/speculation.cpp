#include "runtime/speculation.h"

namespace nemotron::runtime {
namespace {
constexpr double kTimeWeight = 0.2;    // weight of a new step time in its moving average
constexpr double kAcceptWeight = 0.05;  // weight of a new verify in the acceptance averages
}  // namespace

int64_t SpecController::bucket(int64_t rows) {
  int64_t b = 1;
  while (b < rows) b *= 2;
  return b;
}

double SpecController::step_time(int64_t rows) const {
  const auto it = time_.find(bucket(rows));
  return it == time_.end() ? -1.0 : it->second;
}

double SpecController::expected_tokens() const {
  double e = 1.0;
  for (double a : accepted_) e += a;
  return e;
}

void SpecController::record_step(int64_t rows, double seconds) {
  if (rows <= 0 || !(seconds > 0)) return;
  auto [it, fresh] = time_.emplace(bucket(rows), seconds);
  if (!fresh) it->second += kTimeWeight * (seconds - it->second);
}

void SpecController::record_accept(int accepted) {
  for (int k = 0; k < K_; ++k) {
    const double hit = k < accepted ? 1.0 : 0.0;
    double& a = accepted_[static_cast<std::size_t>(k)];
    a = any_accept_ ? a + kAcceptWeight * (hit - a) : hit;
  }
  any_accept_ = true;
}

bool SpecController::choose(int64_t batch) {
  if (K_ <= 0 || batch <= 0) return false;
  ++decisions_;
  const double t_spec = step_time(batch * (K_ + 1)), t_plain = step_time(batch);
  if (t_spec < 0) return true;    // measure the verify step first
  if (t_plain < 0) return false;  // then the plain one
  // tokens per second: B * E / t_spec against B / t_plain.
  const bool spec = expected_tokens() * t_plain > t_spec;
  if (probe_every_ > 0 && decisions_ % probe_every_ == 0) return !spec;  // keep the other measured
  return spec;
}

}  // namespace nemotron::runtime
