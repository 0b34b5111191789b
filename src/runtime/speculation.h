#pragma once
// When to speculate. Each decode step either verifies K MTP drafts per sequence (B (K + 1)
// rows, 1 + accepted tokens per sequence) or decodes one token per sequence (B rows). The
// controller measures both and picks the one with more tokens per second:
//   tokens/s with drafts  = B (1 + sum_k A_k) / t(B (K + 1))
//   tokens/s without      = B / t(B)
// where A_k is the measured rate at which drafts 1..k were all accepted (cumulative per draft
// position, an exponential moving average over verify steps), and t(rows) the measured time
// of a decode-only step of that many rows (a moving average per power-of-two bucket of rows).
// Until both times of a batch size are measured it tries the unmeasured mode; afterwards it
// re-measures the mode it is not using every `probe_every` decisions, so that it follows a
// change of load or of acceptance. Speculation pays at small batches (a step is bound by
// reading the weights, so verifying K + 1 rows costs little more than 1) and stops paying as
// the batch grows (the verify rows make the step compute- or expert-bound).
#include <cstdint>
#include <map>
#include <vector>

namespace nemotron::runtime {

class SpecController {
 public:
  // K = 0: never speculate.
  explicit SpecController(int K, int probe_every = 64) : K_(K), probe_every_(probe_every), accepted_(K, 0.0) {}

  int K() const { return K_; }
  // Speculate in the next decode-only step of `batch` sequences?
  bool choose(int64_t batch);
  // A decode-only step of `rows` rows took `seconds` (speculative or not).
  void record_step(int64_t rows, double seconds);
  // A verify of K drafts accepted the first `accepted` (0..K).
  void record_accept(int accepted);

  double acceptance(int k) const { return accepted_.at(static_cast<std::size_t>(k)); }  // A_{k+1}
  double expected_tokens() const;  // 1 + sum_k A_k
  // Measured step time of a bucket of rows, or -1.
  double step_time(int64_t rows) const;

 private:
  static int64_t bucket(int64_t rows);
  int K_;
  int probe_every_;
  std::vector<double> accepted_;  // EMA of [drafts 1..k accepted], k = 1..K
  bool any_accept_ = false;
  std::map<int64_t, double> time_;  // bucket -> EMA seconds
  int64_t decisions_ = 0;
};

}  // namespace nemotron::runtime
