#pragma once
// Token sampling with the OpenAI/vLLM request parameters. Order of operations (vLLM's):
//   1. penalties on the raw logits: repetition (prompt + output tokens: logit > 0 ? /p : *p),
//      frequency and presence (output tokens: logit -= f * count + p * [count > 0]);
//   2. temperature 0 -> greedy (argmax, first index on ties); else logits / temperature;
//   3. top_k, then top_p (smallest set of most likely tokens whose mass >= top_p), then
//      min_p (drop tokens with prob < min_p * max prob), then sample from what is left.
// Logprobs are log_softmax of the raw model logits (vLLM's default "raw_logprobs").
// A seeded sampler is reproducible: the same seed and logits give the same tokens.
#include <cstdint>
#include <optional>
#include <random>
#include <unordered_map>
#include <vector>

namespace nemotron::runtime {

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
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;                 // of the chosen token (raw logits)
  std::vector<TokenLogprob> top;        // the `logprobs` most likely tokens (raw logits)
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, const std::vector<int32_t>& prompt);

  // Picks the next token from logits [vocab] and records it as an output token.
  SampleResult sample(const float* logits, int64_t vocab);

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int32_t> output_counts_;
  std::unordered_map<int32_t, bool> seen_;  // prompt + output tokens (repetition penalty)
  std::vector<float> work_;
  std::vector<int32_t> order_;
};

}  // namespace nemotron::runtime
