#pragma once
// Evaluation protocols of `nemotron eval` over one token stream (tokenization is the CLI's
// job: the runtime does not depend on the text layer). Both are defined literally so that a
// Python/transformers re-implementation gives the same numbers.
//
// Perplexity: the stream is cut into consecutive non-overlapping windows of `context` tokens
// (a last window of fewer than 2 tokens is dropped). Each window runs from a fresh state with
// logits for every position; NLL_i = -log_softmax(logits_i)[t_{i+1}] for i = 0..L-2 of the
// window, the log-sum-exp and the sum accumulated in double. ppl = exp(sum / count).
//
// MTP acceptance (greedy, CPU reference): P prompts, prompt j = tokens [j*s, j*s + prompt_len)
// with s = floor((n - prompt_len - gen) / max(P-1, 1)) (not run when n < prompt_len + gen).
// The trunk generates g_1..g_gen greedily (argmax, first on ties). Step n (0 <= n < gen): the
// trunk at position p = prompt_len-1+n produced g_{n+1} from its post-norm_f hidden h_p. The
// MTP head, whose state has seen positions 0..p-1 fed with (true next token, h_i) (prompt
// tokens, then the greedy ones), is fed (g_{n+1}, h_p) at position p -> draft 1 = argmax.
// Drafts 2..K chain on a copy of that state: (draft k-1, the head's own output row of draft
// k-1) -> draft k. Draft k is compared with g_{n+1+k} when n+1+k <= gen.
//   cumulative[k]  = #steps with drafts 1..k all correct / #steps where g_{n+1+k} exists
//   conditional[k] = #steps with 1..k correct / #steps with 1..k-1 correct (both among steps
//                    where g_{n+1+k} exists)
//   tokens_per_step = 1 + sum_k cumulative[k]
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/state_round.h"
#include "model/checkpoint/weights.h"

namespace nemotron::runtime {

struct PerplexityResult {
  int64_t tokens = 0;         // tokens of the stream used
  int64_t windows = 0;        // windows evaluated
  int64_t scored = 0;         // predictions scored
  double nll_sum = 0.0;
  double mean_nll = 0.0;
  double ppl = 0.0;
  std::vector<double> window_nll;  // NLL sum of each window
  std::string device;         // "cpu" or "cuda"
};

// Windows of the protocol: [begin, end) pairs over n tokens.
std::vector<std::pair<int64_t, int64_t>> perplexity_windows(int64_t n, int64_t context);

// Adds -log_softmax(logits [rows, V])[targets[r]] for r < rows to *sum (double).
void accumulate_nll(const float* logits, int64_t rows, int64_t vocab, const int32_t* targets, double* sum);

struct PerplexityOptions {
  // Tokens of a window fed per step (0: the whole window in one step). 1 runs every position
  // as a decode does: each state update written back (and, with a 16-bit SSM state, rounded).
  int64_t step_tokens = 0;
  kernels::SsmStateFormat ssm_state;  // the backend's SSM state storage (kernels/state_round.h)
};

// On `device` ("cpu", "cuda", "" = the default) through model::Backend: on the CPU each pool
// thread takes whole windows, on the GPU windows run in batches (bounded logits memory).
PerplexityResult perplexity(const model::Model& m, const std::vector<int32_t>& ids, int64_t context,
                            const std::string& device, const PerplexityOptions& options = {});

struct MtpOptions {
  int drafts = 3;         // K
  int prompts = 32;       // P
  int prompt_len = 128;
  int gen = 32;
};

struct MtpResult {
  bool ran = false;
  std::string skipped;                  // why it did not run
  int64_t stride = 0;                   // s
  std::vector<int64_t> eligible;        // [K] steps where g_{n+1+k} exists
  std::vector<int64_t> accepted;        // [K] steps with drafts 1..k all correct
  std::vector<int64_t> given;           // [K] eligible steps with drafts 1..k-1 correct
  std::vector<double> cumulative;       // [K]
  std::vector<double> conditional;      // [K] (0 when given[k] is 0: undefined)
  double tokens_per_step = 1.0;
  // Per prompt: the greedy tokens g_1..g_gen and per step n the K drafts.
  std::vector<std::vector<int32_t>> generated;
  std::vector<std::vector<std::vector<int32_t>>> drafts;
};

MtpResult mtp_acceptance(const model::Model& m, const std::vector<int32_t>& ids, const MtpOptions& o);

}  // namespace nemotron::runtime
