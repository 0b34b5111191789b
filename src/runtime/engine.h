#pragma once
// The engine: one thread that runs steps over all admitted sequences (continuous batching,
// chunked prefill mixed with decode) on a model::Backend. Other threads talk to it only
// through submit() and cancel(); results come back through each request's sink, called on the
// engine thread (sinks must be quick and must not call back into the engine).
//
// The loop overlaps host and device: it begins step N (on the GPU the step is enqueued and
// runs asynchronously; tokens are sampled on the device), then delivers step N-1's events and
// takes in new requests and cancellations while step N runs, then waits for step N's tokens.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "model/backend.h"
#include "runtime/constraint.h"
#include "runtime/prefix_cache.h"
#include "runtime/scheduler.h"
#include "runtime/speculation.h"

namespace nemotron::runtime {

using kernels::SamplingParams;
using kernels::TokenLogprob;

enum class FinishReason { None, Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "error"

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;             // no seed: the engine draws one
  int64_t max_tokens = 16;             // >= 1
  std::vector<int32_t> stop_token_ids; // generation ends after emitting one of these
  // Prompt lengths worth a prefix-cache snapshot besides the engine's own (the chat history
  // before the generation prompt: the next turn of the conversation starts with it).
  std::vector<int64_t> snapshot_at;
  // Constrained decoding (runtime/constraint.h): the tokens each draw may take; null = any.
  std::shared_ptr<TokenConstraint> constraint;
  // Reasoning budget: when the output starts inside reasoning (`reasoning` true: the prompt
  // ends in <think>), after `reasoning_budget` tokens (>= 0) without `reasoning_end_id`, the
  // next draw is replaced by the tokens `reasoning_end` (e.g. "\n</think>\n"), emitted as
  // output, and the answer follows. Reasoning also ends when the model draws reasoning_end_id.
  bool reasoning = false;
  int64_t reasoning_budget = -1;
  std::vector<int32_t> reasoning_end;
  int32_t reasoning_end_id = -1;
};

// One event per generated token; the last one has finished = true (a cancelled or failed
// request gets a final event with token = -1).
struct TokenEvent {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;
  bool finished = false;
  FinishReason reason = FinishReason::None;
  std::string error;
  int64_t cached_tokens = 0;  // first token's event: prompt tokens resumed from the prefix cache
  // First token's event (else -1): seconds from submit() to the sequence's first step (waiting
  // for a slot, KV room or the step budget), and from that step to this token (its prefill).
  double queue_seconds = -1, prefill_seconds = -1;
};

using EventSink = std::function<void(const TokenEvent&)>;

struct EngineOptions {
  SchedulerLimits limits;
  int64_t max_model_len = 4096;  // prompt + max_tokens
  // Speculative decoding with the MTP head: K greedy drafts per decode step, verified in one
  // step (0 = off). Needs a model with an MTP head and a backend that can roll back
  // (Backend::can_roll_back). Lossless: each verified row draws with the noise of the token it
  // would be without speculation, a draft is kept when that draw equals it, and the first
  // draw that differs is emitted in its place (rejection sampling with greedy drafts).
  int speculative_tokens = 0;
  // Verify drafts in every decode step instead of when it measures faster (tests, benches).
  bool speculate_always = false;
  // Drafts take only what the step budget leaves after one token per decode and every pending
  // prompt token (a prompt row admits a sequence to the batch; a draft speeds up one already
  // there). false: the prompts' share is at most half of what the decodes leave, the rest may
  // go to drafts. For A/B runs (NEMOTRON_DRAFTS=after-prompts sets it).
  bool drafts_after_prompts = false;
  // Benchmark only (`bench --spec-accept`), never the server: when not empty, how many drafts
  // a verify keeps is drawn instead of compared: draft k (0-based) is kept with probability
  // spec_accept_rates[min(k, size - 1)] given the ones before it were. The kept drafts are
  // emitted as they are (the verify fed them, so every state stays that of the emitted
  // sequence) and the draw of the row after them follows, so a step costs what a real one with
  // that acceptance costs. Models with random weights accept almost nothing otherwise.
  std::vector<double> spec_accept_rates;
  // A head whose drafts are (almost) never accepted only costs (its prefill of every prompt,
  // its feeding, the controller's probes: 2-7% through `serve` on a synthetic Nano, bench/
  // RESULTS.md twelfth session): once this many draft tokens have been verified with at most 1%
  // of them accepted, speculation stops for the engine's life (a line on stderr; /metrics
  // nemotron:spec_decode_retired 1). 0: never; never with speculate_always or spec_accept_rates.
  // A head worth verifying accepts 30%+ (the demo model: 74-91% per position): <= 5 of 512 is
  // then beyond any chance; at 64 sequences the first measurements (K drafts for two steps)
  // already verify 384.
  int64_t spec_retire_drafts = 512;
  // Prefix cache (runtime/prefix_cache.h): the bytes its backend snapshots may take (0 = off;
  // also off when the backend cannot snapshot; at most the backend's snapshot_capacity()). A request resumes from the longest cached
  // prefix of its prompt; snapshots are taken at the end of every prompt, every
  // `prefix_snapshot_interval` prompt tokens along a long prefill, and at the end of every
  // generation (prompt + reply: the next turn of a conversation starts with them).
  // A snapshot point within `prefix_snapshot_min_gap` tokens after the last snapshot the same
  // request took is skipped (not after the one it resumed from: a conversation's next turn
  // must advance however short it is): it would spare at most that many tokens of
  // prefill over the earlier one and costs as much pool as any (a whole Mamba state plus K/V
  // rows). In a chat the prompt's end and a short reply's end follow the history's end by a
  // few tokens: one snapshot per turn instead of three, three times the turns kept.
  int64_t prefix_cache_bytes = 0;
  int64_t prefix_snapshot_interval = 2048;
  int64_t prefix_snapshot_min_gap = 256;
  // Keep the cached prefixes in this directory across restarts (runtime/prefix_store.h):
  // read when the engine starts, written when it stops. Empty: in memory only.
  std::string prefix_cache_dir;
  // A CSV trace of the steps (`serve --step-log FILE`; empty: none), one line per step, for
  // finding where a server's time goes (bench/step_log.py sums it):
  //   step, start_s (since the engine started), gap_s (from the previous step's tokens coming
  //   back to this step's start: the host finishing that step and taking in requests, or idle),
  //   prep_s (this step's host work before the launch, drafting included), run_s (launch to
  //   tokens back), sequences, decode_rows, prompt_rows, drafts (per verifying sequence),
  //   running, waiting (the scheduler's once the step was scheduled: admitted, and not admitted for
  //   want of a slot or KV room).
  // The file is created (truncated) when the engine starts; an unwritable path is an error.
  std::string step_log;
};

struct EngineStats {
  int running = 0, waiting = 0;
  int64_t kv_reserved = 0, kv_capacity = 0;
  int max_num_seqs = 0;
  uint64_t prompt_tokens_total = 0, generation_tokens_total = 0, steps_total = 0;
  // Speculative decoding (vLLM's spec_decode_* counters): verify steps of a sequence, drafts
  // verified, drafts accepted, and accepted per draft position.
  uint64_t spec_drafts = 0, spec_draft_tokens = 0, spec_accepted_tokens = 0;
  std::vector<uint64_t> spec_accepted_per_pos;
  bool spec_retired = false;  // EngineOptions::spec_retire_drafts stopped speculation
  PrefixCacheStats prefix_cache;  // budget 0: off
};

class Engine {
 public:
  Engine(std::unique_ptr<model::Backend> backend, const EngineOptions& options);
  ~Engine();  // stops the thread; pending requests get a cancelled event
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request. Throws nemotron::Error (a client error) when the
  // request is invalid or can never fit: empty prompt, token id outside the vocabulary,
  // prompt + max_tokens > max_model_len or > the KV capacity, bad sampling parameters,
  // more top logprobs than the backend returns.
  uint64_t submit(GenerationRequest request, EventSink sink);
  // Stops a request (e.g. the client disconnected) and frees what it held. Its sink gets
  // a final cancelled event unless it already finished. Unknown ids are ignored.
  void cancel(uint64_t id);

  EngineStats stats() const;
  const EngineOptions& options() const { return options_; }
  int64_t vocab_size() const { return vocab_; }

 private:
  struct Sequence {
    GenerationRequest request;
    EventSink sink;
    uint64_t seed = 0;      // request.sampling.seed, or drawn at submit
    int slot = -1;          // backend slot once admitted
    int64_t generated = 0;
    int32_t last_token = -1;
    // Speculative decoding: the MTP head's inputs not yet fed (token i+1 with the trunk's
    // hidden row of token i), fed when it next drafts, and the verify chunk in flight
    // [last_token, drafts...].
    std::vector<int32_t> mtp_ids;
    std::vector<float> mtp_hidden;
    // cached_prefix's answer and the cache generation it holds for.
    int64_t cached_prefix = 0;
    uint64_t cached_prefix_generation = UINT64_MAX;
    std::vector<int32_t> verify;
    // Prefix cache: the tokens emitted so far, the prompt tokens resumed from the cache, and
    // whether the prompt's last token is held back one step (followers with the same prompt
    // wait for the snapshot before it: the state that lets them feed that token themselves).
    std::vector<int32_t> output;
    int64_t cached = 0;
    int64_t last_snapshot = 0;  // length of the last prefix snapshot this request saved (or found cached)
    bool lead_prefix = false;
    std::vector<uint32_t> masks;  // constrained decoding: this step's allowed-token masks
    // Reasoning budget: still reasoning, its tokens so far, and the forced end's tokens not yet
    // fed (fed with the next decode step, whose draw then follows them).
    bool in_reasoning = false;
    int64_t reasoning_tokens = 0;
    std::vector<int32_t> forced;
    std::vector<int32_t> chunk;  // a decode chunk's ids: [last token, forced...]
    std::chrono::steady_clock::time_point submitted, scheduled;  // submit(); its first step's start
  };
  // One step between begin_step and finish_step: the scheduled chunks and, per chunk, the
  // sequence, whether it samples, whether it verifies drafts, and its first row.
  struct InFlight {
    std::vector<ScheduledChunk> plan;
    std::vector<uint64_t> ids;
    std::vector<bool> samples, verifies;
    std::vector<int64_t> row0;
    int64_t rows = 0, prompt_tokens = 0;
    int k = 0;  // drafts per verifying sequence (SpecController::choose; 0: none)
    int running = 0, waiting = 0;  // the scheduler's, once this step was scheduled (the step log)
    bool decode_only = true, hidden = false;  // hidden: some chunk needs the hidden rows
    std::chrono::steady_clock::time_point t0, launch;  // begin_step entered; the backend's begin_step called
  };
  void loop();
  // Takes the inbox and the cancellations (waiting for work when `block`); false on stop.
  bool intake(bool block);
  bool begin_step(InFlight& f);
  void finish_step(InFlight& f);
  // The allowed-token masks of the chunk's sampled rows (constrained decoding): row 0 from the
  // constraint's state, row j after the drafts before it (a verify); false when some row
  // allows nothing (the request then fails).
  bool fill_masks(Sequence& s, const int32_t* drafts, int64_t rows);
  // Emits a token of `s`; true when it finished the sequence (stop id or max_tokens). A drawn
  // token past the reasoning budget is replaced by the forced end (the rest of which is fed
  // next step); `forced`: a token of that end.
  bool emit_token(uint64_t id, Sequence& s, const kernels::SampleResult& r, bool forced = false);
  // Prefix cache: resumes a fresh sequence from the longest cached prefix of its prompt (the
  // chunk is moved past it); snapshots `s`'s state as the prefix ids[0, n) it has been fed.
  void resume_from_cache(Sequence& s, ScheduledChunk& c);
  void save_prefix(Sequence& s, const int32_t* ids, int64_t n);
  // Tokens of `s`'s prompt the cache holds (PrefixCache::cached_tokens), kept until the cache
  // changes: the scheduler's resume hint and the same-prompt deferral ask it every step while
  // the sequence waits for its first chunk, and a long prompt's hashes are not computed again.
  int64_t cached_prefix(Sequence& s);
  // Before a snapshot of the first n positions: feeds the MTP head the pending pairs before
  // position n - 1 (the head then stands at n - 1, as a draft would leave it) and returns the
  // hidden row of position n - 1, which a sequence resuming there pairs with its own token n.
  // Empty when the head is not followed or its pairs do not reach n - 1.
  std::vector<float> head_to(Sequence& s, int64_t n);
  // The first prompt length after `after` at which `s` takes a snapshot (prefill chunks are
  // cut there): a multiple of prefix_snapshot_interval, a requested one, the one before the
  // last token for a leader; else the prompt's end.
  int64_t next_snapshot_point(const Sequence& s, int64_t after) const;
  // Sequences waiting this step for a same-prompt sequence's prefill (their chunks dropped).
  void defer_same_prompts(std::vector<ScheduledChunk>& plan);
  // Retires a sequence (frees scheduler and backend state); its final event is queued.
  void finish(uint64_t id, FinishReason reason, const std::string& error = "");
  void emit(Sequence& s, TokenEvent ev) { outbox_.emplace_back(&s.sink, std::move(ev)); }
  // EngineOptions::spec_retire_drafts, after a step that verified `drafted` draft tokens and
  // accepted `accepted` of them.
  void retire_head_if_useless(uint64_t drafted, uint64_t accepted);
  // Publishes stats, then delivers the queued events: a sink that sees its final event
  // also sees stats that no longer count its request.
  void publish();
  // EngineOptions::step_log: the step's line (`done`: when its tokens came back).
  void log_step(const InFlight& f, std::chrono::steady_clock::time_point done);

  std::unique_ptr<model::Backend> backend_;
  EngineOptions options_;
  int64_t vocab_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t next_id_ = 1;
  std::mt19937_64 seeds_{std::random_device{}()};  // for requests without a seed
  std::mt19937_64 forced_accepts_{20261205};       // spec_accept_rates' draws
  std::vector<std::pair<uint64_t, std::unique_ptr<Sequence>>> inbox_;
  std::vector<uint64_t> cancels_;
  // Engine-thread state.
  Scheduler scheduler_;
  std::map<uint64_t, std::unique_ptr<Sequence>> sequences_;
  std::vector<std::pair<EventSink*, TokenEvent>> outbox_;
  std::vector<std::unique_ptr<Sequence>> retired_;  // kept alive until their events are out
  uint64_t step_prompt_tokens_ = 0, step_generated_ = 0;
  SpecController spec_;
  // EngineOptions::spec_retire_drafts: draft tokens verified and accepted so far, and whether
  // speculation stopped (the head is then neither drafted from nor fed).
  uint64_t retire_drafted_ = 0, retire_accepted_ = 0;
  bool spec_retired_ = false;
  model::KeepLimits keep_limits_;  // the backend's: verify chunks per step, rows per verify
  std::unique_ptr<PrefixCache> cache_;
  // Per snapshot: the hidden row of its last position (head_to), the first pending MTP pair of
  // a sequence resumed from it (read back with the snapshots from the prefix-cache directory;
  // absent for files of the format before it and where the head's pairs did not reach it).
  std::map<uint64_t, std::vector<float>> head_rows_;
  uint64_t next_snapshot_ = 1;
  uint64_t fingerprint_ = 0;  // of the model, for the prefix-cache directory
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> step_log_{nullptr, &std::fclose};
  std::chrono::steady_clock::time_point started_, last_done_;  // step log: engine start, last tokens back
  uint64_t steps_logged_ = 0;
  EngineStats stats_;  // guarded by mu_
  std::thread thread_;
};

// Submits one request and waits for its final event (the CLI's generate): its events with
// their arrival times. Throws nemotron::Error when the request is refused or fails.
struct TimedEvent {
  TokenEvent event;
  std::chrono::steady_clock::time_point at;
};
std::vector<TimedEvent> generate_blocking(Engine& engine, GenerationRequest request);

// The default of --speculative-tokens: 3 for a model with an MTP head on a backend that can
// roll back (fewer if it keeps fewer rows per verify), else 0.
int default_speculative_tokens(const model::Backend& backend);

}  // namespace nemotron::runtime
