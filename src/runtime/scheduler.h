#pragma once
// The scheduler decides, each step, which sequences run and how many tokens each feeds.
// It is pure bookkeeping (no model, no threads), so its policy is unit-tested directly.
//
// Policy (continuous batching with chunked prefill):
//   - at most `max_num_seqs` sequences are admitted (each holds one recurrent-state slot);
//   - a sequence is admitted only when its whole KV need (prompt + max_tokens tokens) fits
//     in the KV token capacity still unreserved: memory is reserved up front, so a running
//     sequence can never run out and nothing is ever preempted or over-committed;
//   - each step feeds at most `max_step_tokens` tokens: first one decode token (1 +
//     lookahead with speculation: the step's drafts, which the engine sizes so that they fit
//     beside one token per decode and the prompts' share) for every running sequence that
//     finished its prompt (when they do not all fit, those left out go first next step), then
//     prefill chunks with the rest of the budget: the oldest prompt still prefilling first gets
//     up to an equal share (rest / their count, at least one token), then the prompts with the
//     fewest tokens left take what they need, fewest first (the older first among equals).
//     Fewest-left first finishes the most prompts soonest: a short prompt admitted behind
//     long ones is prefilled within one step when it fits in what the oldest's share leaves,
//     and equal prompts finish one after another, each starting to decode while the next
//     prefills (equal shares finished them all together at the end: 64 prompts of 128 tokens
//     in 512-token steps all waited 16 steps for their first token). The oldest's share means
//     every prompt progresses: none waits forever behind a stream of shorter ones, as each
//     becomes the oldest in turn;
//   - a step that decodes no sequence (prompts only) may take up to `prefill_step_tokens`
//     when that is larger: nothing waits on it, and larger prefill steps run faster per token;
//   - admission is FIFO (no request overtakes an older one);
//   - a prompt that the engine resumes from a cached prefix (set_resume_hint) starts there:
//     its first chunk is charged only for the tokens after the prefix.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <vector>

namespace nemotron::runtime {

struct SchedulerLimits {
  int max_num_seqs = 8;
  int64_t max_step_tokens = 512;      // token budget of one step
  int64_t kv_token_capacity = 1 << 20; // KV positions that fit in the planned memory
  // The earlier prefill policy, kept for A/B runs on the GPU (NEMOTRON_PREFILL_SHARES=equal):
  // every prompt up to an equal share, then what the shorter ones leave to the oldest first.
  bool equal_prefill_shares = false;
  // Token budget of a step in which no sequence decodes (prompts only): 0 = max_step_tokens.
  // Larger (the plan sizes the step buffers for it) prefills a burst of prompts, or one long
  // prompt, in fewer and more efficient steps while no decode waits on them; once a sequence
  // decodes, steps keep to max_step_tokens (its inter-token latency).
  int64_t prefill_step_tokens = 0;
};

struct ScheduledChunk {
  uint64_t seq = 0;
  int64_t start = 0;   // first prompt position fed (prefill), or -1 for a decode token
  int64_t count = 0;   // tokens fed this step
  bool decode() const { return start < 0; }
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerLimits& limits) : limits_(limits) {}

  // Queues a sequence with `prompt_len` tokens that may generate up to `max_tokens`. With
  // `lookahead` > 0 (speculative decoding: a decode step feeds the last token and up to
  // `lookahead` drafts) a decode step takes 1 + lookahead tokens of the step budget and the KV
  // reservation covers the drafts past the last token too.
  // Returns false when it can never fit (needs more KV than the whole capacity).
  bool add(uint64_t seq, int64_t prompt_len, int64_t max_tokens, int64_t lookahead = 0);
  // Removes a sequence (finished or cancelled), waiting or running; frees its reservation.
  void remove(uint64_t seq);

  // The next step's work. Sequences newly admitted this step appear with start == 0.
  // `lookahead` >= 0: this step's drafts per decode token (speculation picks it per step), at
  // most each sequence's own; -1: each sequence's own.
  std::vector<ScheduledChunk> schedule(int64_t lookahead = -1);
  // Running sequences whose prompt is fed (the next step decodes them).
  int64_t decoding() const;
  // Prompt tokens still to feed: of the running sequences, and of the waiting ones that free
  // slots could admit next (FIFO).
  int64_t prefill_pending() const;
  // After the step ran: prefill progress was made as scheduled.
  void commit(const std::vector<ScheduledChunk>& step);
  // Prompt tokens a sequence that has fed nothing yet will resume from (0..prompt_len - 1;
  // the engine's prefix cache), asked while planning its first chunk.
  void set_resume_hint(std::function<int64_t(uint64_t seq)> hint) { resume_hint_ = std::move(hint); }

  int running() const { return static_cast<int>(running_.size()); }
  int waiting() const { return static_cast<int>(waiting_.size()); }
  int64_t kv_reserved() const { return kv_reserved_; }
  const SchedulerLimits& limits() const { return limits_; }

 private:
  struct Entry {
    int64_t prompt_len = 0, max_tokens = 0, prefilled = 0, lookahead = 0;
    int64_t kv() const { return prompt_len + max_tokens + lookahead; }
  };
  SchedulerLimits limits_;
  std::deque<uint64_t> waiting_;
  std::vector<uint64_t> running_;  // admission order
  std::map<uint64_t, Entry> entries_;
  int64_t kv_reserved_ = 0;
  uint64_t decode_next_ = 0;  // the first decode left out of the last step (0: none)
  std::function<int64_t(uint64_t)> resume_hint_;
};

}  // namespace nemotron::runtime
