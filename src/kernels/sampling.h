#pragma once
// Token sampling with the OpenAI/vLLM request parameters: the CPU reference. The CUDA kernel
// (sampling_cuda.h) implements exactly these semantics; the tests compare the two.
//
// Per row, w = the raw logits (fp32, [V]):
//  1. Penalties (only when the row has them, p.penalized()): repetition r != 1: for every token t
//     of the seen set (prompt + output tokens): w[t] = w[t] > 0 ? w[t] / r : w[t] * r; then
//     frequency f and presence p: for every output token t with count c > 0:
//     w[t] -= f * float(c) + p (vLLM's order). Tokens outside [0, V) are ignored.
//  2. temperature == 0 (greedy): token = argmax(w) with model::argmax's semantics (the host loop
//     `if (w[i] > w[best]) best = i` from best = 0: the lowest index of the largest value, NaN
//     never chosen, 0 when w[0] is NaN or nothing is above -inf). Skip to 6.
//  3. inv_t = 1.0f / temperature (float); s_i = w_i * inv_t (float multiply); M = max s (NaN
//     ignored); d_i = M - s_i (float, >= 0). Candidates C = { i : s_i not NaN }. If M is not
//     finite (an s is +inf, or no s is finite), token = argmax(s) as in 2 (degenerate rows).
//  4. Keep K = { i in C : d_i <= theta }, theta = min(theta_k, theta_p, theta_m):
//     - theta_k (0 < top_k < V): the top_k-th smallest d over C (ties at the boundary are kept),
//       +inf when |C| < top_k; else +inf.
//     - theta_m (min_p > 0): -logf(min_p) (keeps p_i >= min_p * p_max); else +inf.
//     - theta_p (top_p < 1), over K_k = { i in C : d_i <= theta_k }: with the fixed-point masses
//       q_i = (uint64_t)(expf(-d_i) * 2^40) summed in uint64 (order-independent, deterministic),
//       total = sum over K_k, target = (uint64_t)((double)top_p * (double)total): theta_p = the
//       smallest d value t of an element of K_k with sum_{i in K_k, d_i <= t} q_i >= target
//       (ties at t kept); else +inf.
//     The largest token (d = 0) is always kept.
//  5. token = argmax over i in K of (s_i + gumbel(x_i)) in float, lowest index on ties, where
//     x_i = philox4x32_10(key = {lo32(seed), hi32(seed)},
//                         counter = {i / 4, lo32(draw), hi32(draw), 0})[i % 4]   (philox.h)
//     (Gumbel-max: exact sampling from softmax(s) restricted to K; the noise depends only on
//     (seed, draw, i), so a seed gives the same tokens alone or in any batch.)
//  6. Logprobs (logprobs >= 0) of the RAW logits l (before penalties): lse = log sum exp(l);
//     logprob = l[token] - lse; top: the `logprobs` largest raw logits (NaN never listed, lowest
//     index on ties), each with l - lse. Without logprobs: logprob 0 and no top list.
//  7. Penalty state (when one is given): the token's output count += 1, it joins the seen set.
//
// Invariant of a penalty state: every token with an output count > 0 is in the seen set (step 7
// keeps it); the CUDA kernel relies on it to look counts up only for seen tokens.
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

namespace nemotron::kernels {

constexpr int kMaxTopLogprobs = 20;

struct SamplingParams {
  float temperature = 1.0f;      // 0 = greedy
  float top_p = 1.0f;            // (0, 1]
  int32_t top_k = -1;            // -1 or 0 = off
  float min_p = 0.0f;            // [0, 1]
  float presence_penalty = 0.0f; // [-2, 2]
  float frequency_penalty = 0.0f;// [-2, 2]
  float repetition_penalty = 1.0f;  // > 0; 1 = off
  std::optional<uint64_t> seed;
  int32_t logprobs = -1;         // -1 = none; else number of top logprobs per token (0..20)
  // Validates ranges; throws nemotron::Error naming the parameter.
  void validate() const;
  bool greedy() const { return temperature == 0.0f; }
  bool penalized() const {
    return repetition_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f;
  }
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;                 // of the chosen token (raw logits); 0 without logprobs
  std::vector<TokenLogprob> top;        // the `logprobs` most likely tokens (raw logits)
};

// One sequence's penalty state: output-token counts and the seen set (prompt + output tokens).
struct PenaltyState {
  std::unordered_map<int32_t, int32_t> counts;  // output token -> count (> 0)
  std::set<int32_t> seen;                       // prompt + output tokens
};

// Adds the prompt tokens to the seen set.
void penalty_observe_prompt(PenaltyState& state, const int32_t* ids, int64_t n);

// Step 1 on w [V] in place (no-op unless p.penalized() and state is not null).
void apply_penalties_cpu(float* w, int64_t V, const SamplingParams& p, const PenaltyState* state);

// Steps 3-4 of a sampled row (temperature > 0) on penalized logits w [V]: the thresholds and the
// kept set's size. degenerate: M not finite (step 3's fallback; theta and kept are then unset).
struct SampleFilter {
  float inv_t = 1.0f, M = 0.0f;
  float theta_k = INFINITY, theta_p = INFINITY, theta_m = INFINITY, theta = INFINITY;
  int64_t kept = 0;  // |K|
  bool degenerate = false;
};
SampleFilter sample_filter_cpu(const float* w, int64_t V, const SamplingParams& p);

// Steps 1-7 for one row of raw logits [V]; `penalties` may be null (no penalties, no update).
// p must be valid (p.validate()).
SampleResult sample_cpu(const float* logits, int64_t V, const SamplingParams& p, uint64_t seed, uint64_t draw,
                        PenaltyState* penalties);

// The exact probability of every token under p (after penalties, temperature, filters): 0 for
// tokens filtered out; greedy and degenerate rows: 1 at the chosen token. For the tests'
// chi-square against sampled frequencies.
std::vector<double> sampling_distribution_cpu(const float* logits, int64_t V, const SamplingParams& p,
                                              const PenaltyState* penalties);

}  // namespace nemotron::kernels
