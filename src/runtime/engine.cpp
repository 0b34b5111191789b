#include "runtime/engine.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <iostream>

#include "runtime/prefix_store.h"
#include "util/env.h"
#include "util/error.h"

namespace nemotron::runtime {
namespace {

// NEMOTRON_PREFILL_SHARES=equal: the earlier prefill policy (equal shares), for A/B runs.
SchedulerLimits with_env(SchedulerLimits limits) {
  if (env_equals("NEMOTRON_PREFILL_SHARES", "equal")) limits.equal_prefill_shares = true;
  return limits;
}

// While speculation pauses, every decode adds one input (token, hidden row) to its sequence's
// MTP head; they pile up and are fed in runs (the head's forward costs about one trunk layer
// per row, cheaper per row in runs). A pile is due at kMtpFeedRows; each step feeds the largest
// due piles up to twice the rows the step added (at least 2 x kMtpFeedRows), so piles drain
// faster than they fill and the sequences that started together do not all feed in one step
// (64 piles of 64 rows at once stalled a CPU step by 0.4 s). A pile of kMtpPileMaxRows (a
// prompt's rows) is fed whole at once.
constexpr int64_t kMtpFeedRows = 32;
constexpr int64_t kMtpPileMaxRows = 128;
}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "?";
}

Engine::Engine(std::unique_ptr<model::Backend> backend, const EngineOptions& options)
    : backend_(std::move(backend)),
      options_(options),
      vocab_(backend_->model().config.vocab_size),
      scheduler_(with_env(options.limits)),
      spec_(options.speculative_tokens) {
  if (env_equals("NEMOTRON_DRAFTS", "after-prompts")) options_.drafts_after_prompts = true;  // A/B runs
  const int K = options.speculative_tokens;
  if (K < 0 || K > 16) throw Error("--speculative-tokens must be in [0, 16], got " + std::to_string(K));
  if (K > 0 && !backend_->model().config.has_mtp())
    throw Error("--speculative-tokens " + std::to_string(K) + ": " + backend_->model().config.path +
                " has no MTP head (num_nextn_predict_layers is 0)");
  if (K > 0 && !backend_->can_roll_back())
    throw Error("--speculative-tokens " + std::to_string(K) + ": the " + backend_->device() +
                " backend cannot roll back (no room kept for it); use --speculative-tokens 0");
  keep_limits_ = backend_->keep_limits();
  if (K > 0 && (K + 1 > keep_limits_.rows || keep_limits_.chunks < 1))
    throw Error("--speculative-tokens " + std::to_string(K) + ": the " + backend_->device() + " backend keeps " +
                std::to_string(keep_limits_.rows) + " rows per verify step (1 + drafts) for " +
                std::to_string(keep_limits_.chunks) + " sequences; lower --speculative-tokens");
  if (options.limits.max_step_tokens < 1 + K)
    throw Error("--max-step-tokens " + std::to_string(options.limits.max_step_tokens) +
                " cannot hold a decode step with " + std::to_string(K) + " speculative tokens (needs at least " +
                std::to_string(1 + K) + ")");
  stats_.spec_accepted_per_pos.assign(static_cast<std::size_t>(K), 0);
  for (double r : options.spec_accept_rates)
    if (!(r >= 0.0 && r <= 1.0)) throw Error("--spec-accept: rates must be in [0, 1], got " + std::to_string(r));
  if (options.prefix_cache_bytes < 0) throw Error("--prefix-cache-memory must not be negative");
  if (options.prefix_snapshot_interval < 1) throw Error("the prefix snapshot interval must be positive");
  if (options.prefix_snapshot_min_gap < 0) throw Error("the prefix snapshot gap must not be negative");
  // The cache's budget: what the engine is given, at most what the backend can hold (every set
  // of snapshots within it then fits, so save_snapshot never fails for want of room).
  const int64_t cache_bytes = std::min(options.prefix_cache_bytes, backend_->snapshot_capacity());
  if (cache_bytes > 0 && backend_->can_snapshot()) cache_ = std::make_unique<PrefixCache>(cache_bytes);
  if (cache_ && !options.prefix_cache_dir.empty()) {
    fingerprint_ = model_fingerprint(backend_->model());
    const int n = load_prefixes(options.prefix_cache_dir, fingerprint_, *cache_, *backend_, next_snapshot_, std::cerr,
                                &head_rows_);
    if (n > 0) std::fprintf(stderr, "prefix cache: %d cached prefixes read from %s\n", n, options.prefix_cache_dir.c_str());
  }
  // A fresh prompt's first chunk starts where resume_from_cache will resume it, so the step
  // budget is charged for what it feeds, not for its cached prefix.
  if (cache_)
    scheduler_.set_resume_hint([this](uint64_t id) -> int64_t {
      Sequence& s = *sequences_.at(id);
      return s.slot >= 0 ? 0 : cached_prefix(s);
    });
  // Stats from the start (the engine thread publishes them only after it has run).
  if (cache_) stats_.prefix_cache = cache_->stats();
  if (options.limits.max_num_seqs > backend_->slots())
    throw Error("the engine admits " + std::to_string(options.limits.max_num_seqs) + " sequences but the backend has " +
                std::to_string(backend_->slots()) + " slots");
  stats_.kv_capacity = options.limits.kv_token_capacity;
  stats_.max_num_seqs = options.limits.max_num_seqs;
  started_ = last_done_ = std::chrono::steady_clock::now();
  if (!options.step_log.empty()) {
    step_log_.reset(std::fopen(options.step_log.c_str(), "w"));
    if (!step_log_) throw Error("--step-log " + options.step_log + ": cannot create the file");
    std::setvbuf(step_log_.get(), nullptr, _IOLBF, 1 << 12);  // whole lines, even if the server is killed
    std::fputs("step,start_s,gap_s,prep_s,run_s,sequences,decode_rows,prompt_rows,drafts,running,waiting\n",
               step_log_.get());
  }
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (cache_ && !options_.prefix_cache_dir.empty()) {
    try {
      const int n = save_prefixes(options_.prefix_cache_dir, fingerprint_, *cache_, *backend_, &head_rows_);
      std::fprintf(stderr, "prefix cache: %d cached prefixes written to %s\n", n, options_.prefix_cache_dir.c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "prefix cache: not saved: %s\n", e.what());
    }
  }
  TokenEvent ev;
  ev.finished = true;
  ev.reason = FinishReason::Cancelled;
  for (auto& [id, s] : inbox_) s->sink(ev);
  for (auto& [id, s] : sequences_) s->sink(ev);
}

uint64_t Engine::submit(GenerationRequest request, EventSink sink) {
  if (request.prompt.empty()) throw Error("the prompt is empty");
  for (int32_t t : request.prompt)
    if (t < 0 || t >= vocab_) throw Error("prompt token id " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(vocab_) + ")");
  if (request.max_tokens < 1) throw Error("max_tokens must be at least 1");
  if (!options_.spec_accept_rates.empty() && request.constraint)
    throw Error("an engine with forced acceptance (bench --spec-accept) takes no constrained requests");
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  if (total > options_.max_model_len)
    throw Error("this model's maximum context length is " + std::to_string(options_.max_model_len) +
                " tokens; the request needs " + std::to_string(total) + " (" + std::to_string(request.prompt.size()) +
                " in the prompt, " + std::to_string(request.max_tokens) + " to generate)");
  const int64_t kv = total + options_.speculative_tokens;  // drafts past the last token
  if (kv > options_.limits.kv_token_capacity)
    throw Error("the request needs " + std::to_string(kv) + " tokens of KV cache; the server has " +
                std::to_string(options_.limits.kv_token_capacity));
  request.sampling.validate();
  if (request.reasoning_budget >= 0 && request.reasoning && request.reasoning_end.empty())
    throw Error("a reasoning budget needs the tokens that end reasoning");
  auto seq = std::make_unique<Sequence>();
  seq->submitted = std::chrono::steady_clock::now();
  seq->in_reasoning = request.reasoning;
  seq->request = std::move(request);
  seq->sink = std::move(sink);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    seq->seed = seq->request.sampling.seed ? *seq->request.sampling.seed : seeds_();
    id = next_id_++;
    inbox_.emplace_back(id, std::move(seq));
    stats_.waiting++;
  }
  cv_.notify_all();
  return id;
}

void Engine::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Engine::finish(uint64_t id, FinishReason reason, const std::string& error) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  Sequence& s = *it->second;
  if (reason != FinishReason::Stop && reason != FinishReason::Length) {
    TokenEvent ev;
    ev.finished = true;
    ev.reason = reason;
    ev.error = error;
    emit(s, std::move(ev));
  }
  // The prompt + reply it has been fed (all but the last token) is the next turn's prefix.
  const auto& prompt = s.request.prompt;
  const int64_t fed = static_cast<int64_t>(prompt.size() + s.output.size()) - 1;
  if (cache_ && (reason == FinishReason::Stop || reason == FinishReason::Length) && s.slot >= 0 &&
      !s.output.empty() && backend_->position(s.slot) == fed) {
    std::vector<int32_t> ids(prompt);
    ids.insert(ids.end(), s.output.begin(), s.output.end() - 1);
    save_prefix(s, ids.data(), fed);
  }
  scheduler_.remove(id);
  // A step in flight may still compute this slot's rows; the backend orders a later reuse of
  // the slot after it (its results for this sequence are dropped: the id is gone).
  if (s.slot >= 0) backend_->release_slot(s.slot);
  retired_.push_back(std::move(it->second));
  sequences_.erase(it);
}

void Engine::publish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.running = scheduler_.running();
    stats_.waiting = scheduler_.waiting() + static_cast<int>(inbox_.size());
    stats_.kv_reserved = scheduler_.kv_reserved();
    stats_.prompt_tokens_total += step_prompt_tokens_;
    stats_.generation_tokens_total += step_generated_;
    if (cache_) stats_.prefix_cache = cache_->stats();
  }
  step_prompt_tokens_ = step_generated_ = 0;
  for (auto& [sink, ev] : outbox_) (*sink)(ev);
  outbox_.clear();
  retired_.clear();
}

bool Engine::intake(bool block) {
  std::vector<std::pair<uint64_t, std::unique_ptr<Sequence>>> inbox;
  std::vector<uint64_t> cancels;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (block) cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !cancels_.empty() || !sequences_.empty(); });
    if (stop_) return false;
    inbox.swap(inbox_);
    cancels.swap(cancels_);
  }
  for (auto& [id, s] : inbox) {
    scheduler_.add(id, static_cast<int64_t>(s->request.prompt.size()), s->request.max_tokens,
                   options_.speculative_tokens);
    sequences_.emplace(id, std::move(s));
  }
  for (uint64_t id : cancels) finish(id, FinishReason::Cancelled);  // unknown or finished: no-op
  return true;
}

void Engine::loop() {
  for (;;) {
    // Deliver the last step's events before waiting for work (nothing left to run) or before
    // a backend that computes the next step in begin_step (else they would wait for it).
    if (sequences_.empty() || backend_->steps_in_begin()) publish();
    if (!intake(true)) return;
    InFlight f;
    if (sequences_.empty() || !begin_step(f)) {
      publish();
      continue;
    }
    // While the step runs: deliver the previous step's events (if not delivered above), take in
    // new work.
    publish();
    if (!intake(false)) {
      backend_->finish_step();
      return;
    }
    finish_step(f);
  }
}

bool Engine::begin_step(InFlight& f) {
  // Drafts per verifying sequence this step (0: none): measured per batch size
  // (runtime/speculation.h), K with --speculate-always. Drafts are extras: the scheduler charges
  // 1 + k per decode, so k is at most what the step budget leaves after one token per decoding
  // sequence and the prompts' share (their pending tokens, at most half of what the decodes
  // leave; all of it with drafts_after_prompts), so that neither a decoding sequence nor a
  // waiting prompt is pushed out by drafts.
  const int K = spec_retired_ ? 0 : options_.speculative_tokens;
  const int64_t ready = scheduler_.decoding();
  int k = 0;
  if (K > 0 && ready > 0) {
    // A step with prompt rows is not measured: it does not explore (runtime/speculation.h).
    const int64_t pending = scheduler_.prefill_pending();
    k = options_.speculate_always ? K : spec_.choose(ready, pending == 0);
    const int64_t left = std::max<int64_t>(0, scheduler_.limits().max_step_tokens - ready);
    const int64_t prompts = options_.drafts_after_prompts ? left : left / 2;
    const int64_t spare = left - std::min(pending, prompts);
    k = static_cast<int>(std::min<int64_t>(k, spare / ready));
  }
  f.plan = scheduler_.schedule(k);
  f.running = scheduler_.running();
  f.waiting = scheduler_.waiting();
  if (cache_) defer_same_prompts(f.plan);
  if (f.plan.empty()) return false;
  f.t0 = std::chrono::steady_clock::now();  // the step's time includes the drafting
  int64_t decoding = 0;
  for (const auto& c : f.plan) {
    decoding += c.decode();
    f.decode_only = f.decode_only && c.decode();
  }
  if (decoding == 0) k = 0;
  f.k = k;
  const bool speculate = k > 0;
  std::vector<model::StepChunk> chunks;
  std::vector<ScheduledChunk> planned;                   // f.plan less the sequences failed below
  std::vector<std::pair<uint64_t, std::string>> failed;  // (sequence, why)
  try {
    // The decoding sequences that verify drafts this step (at most keep_limits_.chunks; the
    // rest decode plainly), drafted together: one MTP head step per draft for all of them.
    // Near the end of a reasoning budget (or with forced tokens to feed) a sequence does not
    // verify drafts: the budget cuts at one token.
    std::vector<std::vector<int32_t>> drafts(f.plan.size());
    if (speculate) {
      std::vector<model::Backend::DraftInput> inputs;
      std::vector<std::size_t> who;
      for (std::size_t i = 0; i < f.plan.size(); ++i) {
        Sequence& s = *sequences_.at(f.plan[i].seq);
        const bool budget_near = s.in_reasoning && s.request.reasoning_budget >= 0 &&
                                 s.reasoning_tokens + k + 1 > s.request.reasoning_budget;
        if (!f.plan[i].decode() || s.slot < 0 || s.mtp_ids.empty() || !s.forced.empty() || budget_near ||
            static_cast<int64_t>(inputs.size()) >= keep_limits_.chunks)
          continue;
        inputs.push_back({s.slot, s.mtp_ids.data(), s.mtp_hidden.data(), static_cast<int64_t>(s.mtp_ids.size())});
        who.push_back(i);
      }
      if (!inputs.empty()) {
        auto d = backend_->mtp_draft(inputs, k);
        for (std::size_t j = 0; j < who.size(); ++j) {
          Sequence& s = *sequences_.at(f.plan[who[j]].seq);
          drafts[who[j]] = std::move(d.at(j));
          s.mtp_ids.clear();  // fed to the head
          s.mtp_hidden.clear();
        }
      }
    }
    for (std::size_t i = 0; i < f.plan.size(); ++i) {
      ScheduledChunk& c = f.plan[i];
      Sequence& s = *sequences_.at(c.seq);
      if (s.slot < 0) {
        s.scheduled = f.t0;
        s.slot = backend_->acquire_slot();
        if (cache_ && !c.decode()) resume_from_cache(s, c);
      }
      // Prefill chunks end at snapshot points (so that the snapshot there exists); a leader's
      // point before its last token lets the followers with the same prompt feed it themselves.
      if (cache_ && !c.decode()) c.count = std::min(c.count, next_snapshot_point(s, c.start) - c.start);
      model::StepChunk ch;
      ch.slot = s.slot;
      ch.sampling = &s.request.sampling;
      ch.seed = s.seed;
      ch.draw = static_cast<uint64_t>(s.generated);
      bool verify = false;
      if (!drafts[i].empty()) {
        // [last token, k drafts]: every row draws; keep_states for the roll-back.
        s.verify = {s.last_token};
        s.verify.insert(s.verify.end(), drafts[i].begin(), drafts[i].end());
        ch.ids = s.verify.data();
        ch.T = static_cast<int64_t>(s.verify.size());
        ch.sample = true;
        ch.sample_rows = ch.T;
        ch.keep_states = true;
        verify = true;
      } else if (c.decode()) {
        // The last token, after the rest of a forced reasoning end when one is pending (those
        // tokens were emitted already; none was fed).
        s.chunk.assign(s.forced.begin(), s.forced.end());
        s.chunk.push_back(s.last_token);
        ch.ids = s.chunk.data();
        ch.T = static_cast<int64_t>(s.chunk.size());
        ch.sample = true;
      } else {
        ch.ids = s.request.prompt.data() + c.start;
        ch.T = c.count;
        ch.sample = c.start + c.count == static_cast<int64_t>(s.request.prompt.size());
        f.prompt_tokens += c.count;
      }
      if (ch.sample && s.request.constraint) {
        // A constraint that fails (allows nothing, or throws: a grammar too ambiguous to
        // match) ends its own sequence; the step goes on without it.
        std::string failure;
        try {
          if (!fill_masks(s, verify ? s.verify.data() + 1 : nullptr, ch.sample_rows))
            failure = "the output constraint allows no token after " + std::to_string(s.generated) + " tokens";
        } catch (const Error& e) {
          failure = e.what();
        }
        if (!failure.empty()) {
          failed.emplace_back(c.seq, std::move(failure));
          continue;
        }
        ch.allowed = s.masks.data();
      }
      // The MTP head consumes every position's hidden row (speculation on): decode rows too,
      // so that it has the inputs when the next step speculates.
      f.hidden = f.hidden || K > 0;
      chunks.push_back(ch);
      planned.push_back(c);
      f.ids.push_back(c.seq);
      f.samples.push_back(ch.sample);
      f.verifies.push_back(verify);
      f.row0.push_back(f.rows);
      f.rows += ch.T;
    }
    f.plan.swap(planned);  // f.plan[i] is chunk i from here on
    for (auto& [id, why] : failed) finish(id, FinishReason::Error, why);
    if (chunks.empty()) return false;
    f.launch = std::chrono::steady_clock::now();
    backend_->begin_step(chunks);
  } catch (const std::exception& e) {
    // A step that cannot start fails the sequences in it; the engine keeps serving the others.
    for (const auto& c : f.plan) finish(c.seq, FinishReason::Error, e.what());
    return false;
  }
  return true;
}

bool Engine::fill_masks(Sequence& s, const int32_t* drafts, int64_t rows) {
  const int64_t words = (vocab_ + 31) / 32;
  s.masks.assign(static_cast<std::size_t>(rows * words), 0);
  TokenConstraint& c = *s.request.constraint;
  int accepted = 0;
  for (int64_t j = 0; j < rows; ++j) {
    uint32_t* m = s.masks.data() + j * words;
    // Row j follows drafts 1..j: advance through them; a draft the constraint refuses can
    // never be kept (the row before it draws only allowed tokens), so the rows after it keep
    // the last mask.
    if (j > 0 && accepted == j - 1 && c.accept(drafts[j - 1])) ++accepted;
    if (accepted < j) {
      std::copy(m - words, m, m);
      continue;
    }
    c.fill_mask(m);
    bool any = false;
    for (int64_t w = 0; w < words && !any; ++w) any = m[w] != 0;
    if (!any && j == 0) {
      c.rollback(accepted);
      return false;
    }
  }
  c.rollback(accepted);
  return true;
}

bool Engine::emit_token(uint64_t id, Sequence& s, const kernels::SampleResult& r, bool forced) {
  if (s.in_reasoning && !forced && r.token != s.request.reasoning_end_id && s.request.reasoning_budget >= 0 &&
      s.reasoning_tokens >= s.request.reasoning_budget) {
    // Over budget: the forced end instead of this draw, emitted now; fed with the next step
    // (all of it but its last token, which becomes the last token as usual).
    const auto& end = s.request.reasoning_end;
    s.forced.assign(end.begin(), end.end() - 1);
    for (int32_t t : end)
      if (emit_token(id, s, kernels::SampleResult{t, 0.0f, {}}, true)) return true;
    return false;
  }
  if (s.in_reasoning) {
    if (r.token == s.request.reasoning_end_id) s.in_reasoning = false;
    else if (!forced) s.reasoning_tokens++;
  }
  if (s.request.constraint && !s.request.constraint->accept(r.token)) {
    finish(id, FinishReason::Error, "the sampled token " + std::to_string(r.token) + " breaks the output constraint");
    return true;
  }
  s.last_token = r.token;
  s.generated++;
  s.output.push_back(r.token);
  step_generated_++;
  TokenEvent ev;
  if (s.generated == 1) {
    ev.cached_tokens = s.cached;
    using seconds = std::chrono::duration<double>;
    ev.queue_seconds = seconds(s.scheduled - s.submitted).count();
    ev.prefill_seconds = seconds(std::chrono::steady_clock::now() - s.scheduled).count();
  }
  ev.token = r.token;
  ev.logprob = r.logprob;
  ev.top_logprobs = r.top;
  const auto& stops = s.request.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), r.token) != stops.end()) ev.reason = FinishReason::Stop;
  else if (s.generated >= s.request.max_tokens) ev.reason = FinishReason::Length;
  ev.finished = ev.reason != FinishReason::None;
  const FinishReason reason = ev.reason;
  emit(s, std::move(ev));
  if (reason == FinishReason::None) return false;
  finish(id, reason);
  return true;
}

void Engine::finish_step(InFlight& f) {
  std::vector<model::StepOutput> out;
  std::vector<float> hidden;
  try {
    out = backend_->finish_step();
    if (f.hidden) hidden = backend_->last_hidden();
  } catch (const std::exception& e) {
    for (uint64_t id : f.ids) finish(id, FinishReason::Error, e.what());
    return;
  }
  if (step_log_) log_step(f, std::chrono::steady_clock::now());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - f.t0).count();
  if (f.decode_only)
    spec_.record_step(static_cast<int64_t>(f.plan.size()),
                      std::find(f.verifies.begin(), f.verifies.end(), true) != f.verifies.end() ? f.k : 0, seconds);
  else
    spec_.record_other_step();
  scheduler_.commit(f.plan);
  const int K = options_.speculative_tokens;
  const int64_t H = backend_->model().config.hidden_size;
  uint64_t drafts = 0, draft_tokens = 0, accepted_total = 0;
  std::vector<uint64_t> per_pos(static_cast<std::size_t>(K), 0);
  std::vector<uint64_t> to_feed;  // sequences whose MTP inputs piled up (kMtpFeedRows)
  for (std::size_t i = 0; i < f.ids.size(); ++i) {
    // A backend error while finishing one sequence (the MTP head's forward, a roll-back) ends
    // that sequence alone; the engine thread goes on serving the others.
    try {
      auto it = sequences_.find(f.ids[i]);
      if (it == sequences_.end()) continue;  // cancelled while the step ran
      Sequence& s = *it->second;
      const ScheduledChunk& c = f.plan[i];
      const float* rows = hidden.empty() ? nullptr : hidden.data() + f.row0[i] * H;
      // The MTP head's next inputs: (token after row r, hidden row r) for the rows that stay.
      auto feed_head = [&](const int32_t* next, int64_t n) {
        if (!rows || K == 0 || spec_retired_) return;
        s.mtp_ids.insert(s.mtp_ids.end(), next, next + n);
        s.mtp_hidden.insert(s.mtp_hidden.end(), rows, rows + n * H);
        // While speculation pauses (a large batch) the inputs pile up: the due piles are fed
        // after this loop (all but the last pair, which the next draft starts from).
        if (static_cast<int64_t>(s.mtp_ids.size()) >= kMtpFeedRows) to_feed.push_back(f.ids[i]);
      };
      const auto& samples = out[i].samples;
      if (f.verifies[i]) {
        // Keep drafts while they equal the draws of the rows before them; the first draw that
        // differs (or the draw after the last draft) is the bonus token.
        const int kd = static_cast<int>(s.verify.size()) - 1;  // this step's drafts (f.k)
        int a = 0;
        std::vector<model::SampleResult> kept;  // spec_accept_rates: the drafts kept, then the draw after them
        if (options_.spec_accept_rates.empty()) {
          while (a < kd && samples[static_cast<std::size_t>(a)].token == s.verify[static_cast<std::size_t>(a) + 1]) ++a;
        } else {
          const auto& rates = options_.spec_accept_rates;
          std::uniform_real_distribution<double> u(0.0, 1.0);
          while (a < kd && u(forced_accepts_) < rates[std::min<std::size_t>(static_cast<std::size_t>(a), rates.size() - 1)])
            ++a;
          kept.assign(samples.begin(), samples.begin() + a + 1);
          for (int j = 0; j < a; ++j) kept[static_cast<std::size_t>(j)].token = s.verify[static_cast<std::size_t>(j) + 1];
        }
        const auto& emitted = kept.empty() ? samples : kept;
        ++drafts;
        draft_tokens += static_cast<uint64_t>(kd);
        accepted_total += static_cast<uint64_t>(a);
        for (int j = 0; j < a; ++j) ++per_pos[static_cast<std::size_t>(j)];
        spec_.record_accept(a, kd);
        const int64_t pos0 = backend_->position(s.slot) - (kd + 1);
        std::vector<int32_t> next;
        for (int j = 0; j <= a; ++j) next.push_back(emitted[static_cast<std::size_t>(j)].token);
        feed_head(next.data(), a + 1);  // before a finish's snapshot (head_to)
        bool done = false;
        for (int j = 0; j <= a && !done; ++j) done = emit_token(f.ids[i], s, emitted[static_cast<std::size_t>(j)]);
        if (done) continue;  // finished (slot released)
        if (a < kd) backend_->roll_back(s.slot, pos0 + a + 1);
        continue;
      }
      if (!c.decode()) {
        // Prefill rows: the next token of each is the prompt's next, or the draw after the last.
        const auto& prompt = s.request.prompt;
        const int64_t end = c.start + c.count;
        std::vector<int32_t> next(prompt.begin() + c.start + 1,
                                  prompt.begin() + std::min<int64_t>(c.start + c.count + 1, static_cast<int64_t>(prompt.size())));
        if (f.samples[i]) next.push_back(out[i].sample.token);
        feed_head(next.data(), static_cast<int64_t>(next.size()));  // before the snapshot (head_to)
        if (cache_ && end == next_snapshot_point(s, c.start)) save_prefix(s, prompt.data(), end);
      } else if (f.samples[i]) {
        std::vector<int32_t> next(s.chunk.begin() + 1, s.chunk.end());
        next.push_back(out[i].sample.token);
        feed_head(next.data(), static_cast<int64_t>(next.size()));
        s.forced.clear();  // fed in this step
      }
      if (f.samples[i]) emit_token(f.ids[i], s, out[i].sample);
    } catch (const std::exception& e) {
      if (sequences_.count(f.ids[i])) finish(f.ids[i], FinishReason::Error, e.what());
    }
  }
  if (!to_feed.empty()) {
    std::vector<std::pair<int64_t, uint64_t>> due;  // (pile rows, sequence), largest first
    for (uint64_t id : to_feed) {
      auto it = sequences_.find(id);
      if (it == sequences_.end() || it->second->slot < 0) continue;  // finished in the loop
      const int64_t pile = static_cast<int64_t>(it->second->mtp_ids.size());
      if (pile >= kMtpFeedRows) due.emplace_back(pile, id);  // (a snapshot may have fed it: head_to)
    }
    std::stable_sort(due.begin(), due.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    const int64_t cap = std::max(2 * kMtpFeedRows, 2 * f.rows);
    int64_t rows_fed = 0;
    std::vector<model::Backend::DraftInput> inputs;
    std::vector<uint64_t> fed;
    for (const auto& [pile, id] : due) {
      if (pile < kMtpPileMaxRows && rows_fed >= cap) continue;
      Sequence& s = *sequences_.at(id);
      inputs.push_back({s.slot, s.mtp_ids.data(), s.mtp_hidden.data(), pile - 1});
      fed.push_back(id);
      rows_fed += pile - 1;
    }
    try {
      if (!inputs.empty()) backend_->mtp_feed(inputs);
      for (uint64_t id : fed) {
        Sequence& s = *sequences_.at(id);
        s.mtp_ids.erase(s.mtp_ids.begin(), s.mtp_ids.end() - 1);
        s.mtp_hidden.erase(s.mtp_hidden.begin(), s.mtp_hidden.end() - H);
      }
    } catch (const std::exception& e) {
      for (uint64_t id : fed)
        if (sequences_.count(id)) finish(id, FinishReason::Error, e.what());
    }
  }
  retire_head_if_useless(draft_tokens, accepted_total);
  step_prompt_tokens_ += static_cast<uint64_t>(f.prompt_tokens);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.spec_retired = spec_retired_;
  stats_.steps_total++;
  stats_.spec_drafts += drafts;
  stats_.spec_draft_tokens += draft_tokens;
  stats_.spec_accepted_tokens += accepted_total;
  for (int k = 0; k < K; ++k) stats_.spec_accepted_per_pos[static_cast<std::size_t>(k)] += per_pos[static_cast<std::size_t>(k)];
}

void Engine::log_step(const InFlight& f, std::chrono::steady_clock::time_point done) {
  using seconds = std::chrono::duration<double>;
  int64_t decode_rows = 0;
  for (std::size_t i = 0; i < f.plan.size(); ++i)
    if (f.plan[i].decode()) decode_rows += f.row0.size() > i + 1 ? f.row0[i + 1] - f.row0[i] : f.rows - f.row0[i];
  std::fprintf(step_log_.get(), "%llu,%.6f,%.6f,%.6f,%.6f,%zu,%lld,%lld,%d,%d,%d\n",
               static_cast<unsigned long long>(steps_logged_++), seconds(f.t0 - started_).count(),
               seconds(f.t0 - last_done_).count(), seconds(f.launch - f.t0).count(), seconds(done - f.launch).count(),
               f.plan.size(), static_cast<long long>(decode_rows), static_cast<long long>(f.prompt_tokens), f.k,
               f.running, f.waiting);
  last_done_ = done;
}

void Engine::retire_head_if_useless(uint64_t drafted, uint64_t accepted) {
  const int64_t limit = options_.spec_retire_drafts;
  if (spec_retired_ || limit <= 0 || options_.speculate_always || !options_.spec_accept_rates.empty()) return;
  retire_drafted_ += drafted;
  retire_accepted_ += accepted;
  if (retire_drafted_ < static_cast<uint64_t>(limit) || retire_accepted_ * 100 > retire_drafted_) return;
  spec_retired_ = true;
  for (auto& [id, s] : sequences_) {  // the head's piled-up inputs are never fed now
    s->mtp_ids.clear();
    s->mtp_hidden.clear();
  }
  std::fprintf(stderr,
               "speculative decoding stopped: the MTP head's drafts were accepted %llu of %llu times; verifying "
               "them would only cost (--speculative-tokens 0 skips the head from the start)\n",
               static_cast<unsigned long long>(retire_accepted_), static_cast<unsigned long long>(retire_drafted_));
}

std::vector<TimedEvent> generate_blocking(Engine& engine, GenerationRequest request) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<TimedEvent> events;
    bool done = false;
  };
  auto shared = std::make_shared<Shared>();
  engine.submit(std::move(request), [shared](const TokenEvent& ev) {
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->events.push_back({ev, std::chrono::steady_clock::now()});
    if (ev.finished) {
      shared->done = true;
      shared->cv.notify_all();
    }
  });
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->done; });
  const TokenEvent& last = shared->events.back().event;
  if (last.reason == FinishReason::Error) throw Error("generation failed: " + last.error);
  if (last.reason == FinishReason::Cancelled) throw Error("generation was cancelled");
  return shared->events;
}

int default_speculative_tokens(const model::Backend& backend) {
  if (!backend.model().config.has_mtp() || !backend.can_roll_back()) return 0;
  const model::KeepLimits k = backend.keep_limits();
  return k.chunks < 1 ? 0 : static_cast<int>(std::min<int64_t>(3, k.rows - 1));
}

}  // namespace nemotron::runtime
