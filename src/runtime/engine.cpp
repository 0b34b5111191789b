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

Engine::Engine(std::unique_ptr<Backend> backend, const EngineOptions& options)
    : backend_(std::move(backend)), options_(options), vocab_(backend_->vocab_size()), scheduler_(options.limits) {
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
  seq->sampler = std::make_unique<Sampler>(request.sampling, request.prompt);
  seq->request = std::move(request);
  seq->sink = std::move(sink);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
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
  if (s.started) backend_->release_sequence(s.backend_seq);
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

void Engine::loop() {
  for (;;) {
    std::vector<std::pair<uint64_t, std::unique_ptr<Sequence>>> inbox;
    std::vector<uint64_t> cancels;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !cancels_.empty() || !sequences_.empty(); });
      if (stop_) return;
      inbox.swap(inbox_);
      cancels.swap(cancels_);
    }
    for (auto& [id, s] : inbox) {
      scheduler_.add(id, static_cast<int64_t>(s->request.prompt.size()), s->request.max_tokens);
      sequences_.emplace(id, std::move(s));
    }
    for (uint64_t id : cancels) finish(id, FinishReason::Cancelled);  // unknown or finished: no-op
    if (!sequences_.empty()) run_step();
    publish();
  }
}

void Engine::run_step() {
  const auto plan = scheduler_.schedule();
  if (plan.empty()) return;
  std::vector<StepItem> items;
  std::vector<uint64_t> ids;
  std::vector<bool> samples;  // does this item's last row produce the next token?
  int64_t prompt_tokens = 0;
  for (const auto& c : plan) {
    Sequence& s = *sequences_.at(c.seq);
    if (!s.started) {
      s.backend_seq = backend_->create_sequence();
      s.started = true;
    }
    if (c.decode()) {
      items.push_back({s.backend_seq, &s.last_token, 1});
      samples.push_back(true);
    } else {
      items.push_back({s.backend_seq, s.request.prompt.data() + c.start, c.count});
      samples.push_back(c.start + c.count == static_cast<int64_t>(s.request.prompt.size()));
      prompt_tokens += c.count;
    }
    ids.push_back(c.seq);
  }
  std::vector<std::vector<float>> logits;
  try {
    backend_->step(items, logits);
  } catch (const std::exception& e) {
    // A failed step fails the sequences in it; the engine keeps serving the others.
    for (uint64_t id : ids) finish(id, FinishReason::Error, e.what());
    return;
  }
  scheduler_.commit(plan);
  uint64_t generated = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!samples[i]) continue;
    Sequence& s = *sequences_.at(ids[i]);
    const SampleResult r = s.sampler->sample(logits[i].data(), vocab_);
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
    if (reason != FinishReason::None) finish(ids[i], reason);
  }
  step_prompt_tokens_ += static_cast<uint64_t>(prompt_tokens);
  step_generated_ += generated;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.steps_total++;
}

}  // namespace nemotron::runtime
