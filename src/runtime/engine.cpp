#include "runtime/engine.h"

#include <algorithm>
#include <exception>

#include "util/error.h"

namespace nemotron::runtime {

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
      scheduler_(options.limits) {
  if (options.limits.max_num_seqs > backend_->slots())
    throw Error("the engine admits " + std::to_string(options.limits.max_num_seqs) + " sequences but the backend has " +
                std::to_string(backend_->slots()) + " slots");
  stats_.kv_capacity = options.limits.kv_token_capacity;
  stats_.max_num_seqs = options.limits.max_num_seqs;
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
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
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  if (total > options_.max_model_len)
    throw Error("this model's maximum context length is " + std::to_string(options_.max_model_len) +
                " tokens; the request needs " + std::to_string(total) + " (" + std::to_string(request.prompt.size()) +
                " in the prompt, " + std::to_string(request.max_tokens) + " to generate)");
  if (total > options_.limits.kv_token_capacity)
    throw Error("the request needs " + std::to_string(total) + " tokens of KV cache; the server has " +
                std::to_string(options_.limits.kv_token_capacity));
  request.sampling.validate();
  auto seq = std::make_unique<Sequence>();
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
    scheduler_.add(id, static_cast<int64_t>(s->request.prompt.size()), s->request.max_tokens);
    sequences_.emplace(id, std::move(s));
  }
  for (uint64_t id : cancels) finish(id, FinishReason::Cancelled);  // unknown or finished: no-op
  return true;
}

void Engine::loop() {
  for (;;) {
    // Nothing left to run: deliver the last step's events before waiting for work.
    if (sequences_.empty()) publish();
    if (!intake(true)) return;
    InFlight f;
    if (sequences_.empty() || !begin_step(f)) {
      publish();
      continue;
    }
    // While the step runs: deliver the previous step's events, take in new work.
    publish();
    if (!intake(false)) {
      backend_->finish_step();
      return;
    }
    finish_step(f);
  }
}

bool Engine::begin_step(InFlight& f) {
  f.plan = scheduler_.schedule();
  if (f.plan.empty()) return false;
  std::vector<model::StepChunk> chunks;
  try {
    for (const auto& c : f.plan) {
      Sequence& s = *sequences_.at(c.seq);
      if (s.slot < 0) s.slot = backend_->acquire_slot();
      model::StepChunk ch;
      ch.slot = s.slot;
      ch.sampling = &s.request.sampling;
      ch.seed = s.seed;
      ch.draw = static_cast<uint64_t>(s.generated);
      if (c.decode()) {
        ch.ids = &s.last_token;
        ch.T = 1;
        ch.sample = true;
      } else {
        ch.ids = s.request.prompt.data() + c.start;
        ch.T = c.count;
        ch.sample = c.start + c.count == static_cast<int64_t>(s.request.prompt.size());
        f.prompt_tokens += c.count;
      }
      chunks.push_back(ch);
      f.ids.push_back(c.seq);
      f.samples.push_back(ch.sample);
    }
    backend_->begin_step(chunks);
  } catch (const std::exception& e) {
    // A step that cannot start fails the sequences in it; the engine keeps serving the others.
    for (const auto& c : f.plan) finish(c.seq, FinishReason::Error, e.what());
    return false;
  }
  return true;
}

void Engine::finish_step(InFlight& f) {
  std::vector<model::StepOutput> out;
  try {
    out = backend_->finish_step();
  } catch (const std::exception& e) {
    for (uint64_t id : f.ids) finish(id, FinishReason::Error, e.what());
    return;
  }
  scheduler_.commit(f.plan);
  uint64_t generated = 0;
  for (std::size_t i = 0; i < f.ids.size(); ++i) {
    if (!f.samples[i]) continue;
    auto it = sequences_.find(f.ids[i]);
    if (it == sequences_.end()) continue;  // cancelled while the step ran
    Sequence& s = *it->second;
    const kernels::SampleResult& r = out[i].sample;
    s.last_token = r.token;
    s.generated++;
    generated++;
    TokenEvent ev;
    ev.token = r.token;
    ev.logprob = r.logprob;
    ev.top_logprobs = r.top;
    const auto& stops = s.request.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), r.token) != stops.end()) ev.reason = FinishReason::Stop;
    else if (s.generated >= s.request.max_tokens) ev.reason = FinishReason::Length;
    ev.finished = ev.reason != FinishReason::None;
    const FinishReason reason = ev.reason;
    emit(s, std::move(ev));
    if (reason != FinishReason::None) finish(f.ids[i], reason);
  }
  step_prompt_tokens_ += static_cast<uint64_t>(f.prompt_tokens);
  step_generated_ += generated;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.steps_total++;
}

}  // namespace nemotron::runtime
