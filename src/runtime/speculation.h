#pragma once
// How many drafts to verify. Each decode step verifies k MTP drafts per sequence (k = 1..K:
// B (k + 1) rows, 1 + accepted tokens per sequence) or decodes one token per sequence (k = 0,
// B rows). The controller measures every k and picks the one with the most tokens per second:
//   tokens/s at k = B (1 + sum_{j < k} A_j) / t_k(B)
// where A_j is the measured rate at which drafts 1..j+1 were all accepted (cumulative per draft
// position, an exponential moving average over the verify steps that drafted that far), and
// t_k(B) the measured time of a decode-only step of B sequences at k (a moving average per
// power-of-two bucket of B; the drafting is part of it). Both averages weigh their first
// samples evenly (the mean of the first 20 verifies, of the first 5 step times) before moving
// on, so that one early outlier does not steer the choices that follow; a k counts as measured
// at a batch size after `min_samples` steady steps (3: a first step slowed by cold caches or a
// lazily built graph once stood for plain decoding until the third probe, ~450 steps later).
// Only steady steps are measured: a step whose previous step had another k (or was not
// decode-only) pays work the previous one left (the roll-back replays after a verify, the MTP
// head's piled-up inputs after plain steps) and is not recorded. At each batch size it measures
// K first (its verifies sample every draft position's acceptance), then 0, 1, ..., K - 1, but
// only those that could still win: an unmeasured k is skipped while even its best case,
// E+(k) / t_j, is no faster than the best measured k, where t_j is the slowest measured step
// with fewer drafts (more rows and more drafting cannot be faster) and E+(k) = 1 + sum_{j < k}
// of the upper end of A_j's confidence interval (Wilson, z = 2; a position never drafted at the
// bound of the one before it, since drafts 1..j+1 are all accepted no more often than drafts
// 1..j). From a few verifies the interval is wide and every k is measured; once many verifies
// accepted little, the k that cannot pay are not tried. The bound is re-evaluated with every
// decision, so a k skipped while acceptance was low is measured once it rises.
// Afterwards it re-measures one of the other measured k (in
// turn) for two steps (the first a transition), so that it follows a change of load or of
// acceptance: `probe_every` decisions after the choice last changed, then at gaps doubling up
// to 16 x probe_every while the probes leave the choice as it is (a head that is never right
// costs a probe's verify step every 1,024 steps, not every 64). Speculation pays at small
// batches (a step is bound by reading the weights, so verifying k + 1 rows costs little more
// than 1); as the batch grows the verify rows make the step expert- or compute-bound and k
// shrinks to 0. With a mixture-of-experts model even B = 1 can prefer a small k: each verified
// row reads its own experts (bench/RESULTS.md, eleventh session).
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace nemotron::runtime {

class SpecController {
 public:
  // K = 0: never speculate.
  explicit SpecController(int K, int probe_every = 64, int min_samples = 3)
      : K_(K > 0 ? K : 0),
        probe_every_(probe_every),
        min_samples_(min_samples > 0 ? min_samples : 1),
        accepted_(static_cast<std::size_t>(K_), 0.0),
        accept_samples_(static_cast<std::size_t>(K_), 0) {}

  int K() const { return K_; }
  // Drafts per sequence (0..K) in the next step of `batch` decoding sequences. `explore`:
  // the step decodes only (its time can be measured), so it may try an unmeasured k or probe;
  // a step with prompt rows is never measured, so it takes the best k once every k of its
  // batch size that could win is measured, else 0 (plain decoding: under a steady stream of
  // prompts the batch's steps are rarely decode-only, and an unmeasured K was tried in every
  // one of them).
  int choose(int64_t batch, bool explore = true);
  // A decode-only step of `batch` sequences took `seconds`; `k`: the drafts it verified per
  // sequence (0: none).
  void record_step(int64_t batch, int k, double seconds);
  // A step with prefill rows ran (the next decode-only step is not steady).
  void record_other_step() { last_mode_ = -1; }
  // A verify of k drafts (1..K) accepted the first `accepted` (0..k).
  void record_accept(int accepted, int k);

  double acceptance(int j) const { return accepted_.at(static_cast<std::size_t>(j)); }  // A_j
  double expected_tokens(int k) const;  // 1 + sum_{j < k} A_j
  // Measured time of a decode-only step of `batch` sequences at k drafts, or -1 (no sample).
  double step_time(int64_t batch, int k) const;
  // At least min_samples steady steps of `batch` sequences at k drafts were timed.
  bool measured(int64_t batch, int k) const;

 private:
  static constexpr int kProbeSteps = 2;  // a probe: one transition, one measured step
  static int64_t bucket(int64_t batch);
  // The k with the most tokens per second at this batch size, or -1 while a k that could win
  // is unmeasured.
  int best(int64_t batch) const;
  // E+(k): 1 + the upper ends of the acceptance rates' confidence intervals up to k, each at
  // most the one before it (a position never drafted: the bound of the one before, else 1).
  double expected_tokens_bound(int k) const;
  // The most tokens per second of a measured k at this batch size (its k in *best_k), or -1.
  double best_measured_rate(int64_t batch, int* best_k) const;
  // k is unmeasured at this batch size and its best case beats the best measured k.
  bool worth_measuring(int64_t batch, int k) const;
  int K_;
  int probe_every_;
  int min_samples_;
  std::vector<double> accepted_;         // EMA of [drafts 1..j+1 accepted], j = 0..K-1
  std::vector<int64_t> accept_samples_;  // verifies averaged into accepted_[j]
  std::map<std::pair<int64_t, int>, std::pair<double, int64_t>> time_;  // (bucket of B, k) -> (EMA seconds, samples)
  int64_t decisions_ = 0;
  int64_t probes_ = 0;   // probes started (which other k is next)
  int last_mode_ = -1;   // k of the last step (decode-only), -1 other or none
  int probe_left_ = 0;   // further decisions of the running probe
  int probe_k_ = 0;
  static constexpr int kMaxGapDoublings = 4;
  int last_best_ = -1;        // the choice of the last decision
  int64_t last_bucket_ = 0;   // and its batch bucket
  int doublings_ = 0;         // the probe gap is probe_every << doublings_
  int64_t next_probe_ = 0;    // decision number of the next probe
};

}  // namespace nemotron::runtime
