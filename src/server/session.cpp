#include "server/session.h"

#include "server/http_front.h"

namespace nemotron::server {

namespace {

// The request's arrival at the server (the front's stamp) when a worker serves one, else now.
Clock::time_point arrival() {
  const RequestContext* ctx = current_request();
  return ctx && ctx->arrived != Clock::time_point{} ? ctx->arrived : Clock::now();
}

}  // namespace

GenerationSession::GenerationSession(runtime::Engine& engine, Metrics* metrics)
    : engine_(engine), metrics_(metrics), queue_(std::make_shared<Queue>()), start_(arrival()) {}

GenerationSession::~GenerationSession() { cancel_all(); }

void GenerationSession::submit(runtime::GenerationRequest request) {
  const int index = static_cast<int>(choices_.size());
  prompt_tokens_ = static_cast<int64_t>(request.prompt.size());
  std::shared_ptr<Queue> q = queue_;
  const uint64_t id = engine_.submit(std::move(request), [q, index](const runtime::TokenEvent& ev) {
    {
      std::lock_guard<std::mutex> lock(q->mu);
      q->items.push_back({index, ev, Clock::now()});
    }
    q->cv.notify_one();
  });
  Choice c;
  c.id = id;
  choices_.push_back(c);
}

bool GenerationSession::next(ChoiceEvent& out, std::chrono::milliseconds timeout) {
  {
    std::unique_lock<std::mutex> lock(queue_->mu);
    if (!queue_->cv.wait_for(lock, timeout, [&] { return !queue_->items.empty(); })) return false;
    out = std::move(queue_->items.front());
    queue_->items.pop_front();
  }
  Choice& c = choices_.at(static_cast<std::size_t>(out.choice));
  if (out.event.finished) c.finished = true;
  if (metrics_ && out.event.token >= 0) {
    if (!c.first_seen) {
      metrics_->observe_ttft(std::chrono::duration<double>(out.at - start_).count());
      metrics_->observe_first_token(out.event.queue_seconds, out.event.prefill_seconds);
    } else metrics_->observe_itl(std::chrono::duration<double>(out.at - c.last).count());
  }
  if (out.event.token >= 0) {
    c.first_seen = true;
    c.last = out.at;
  }
  return true;
}

void GenerationSession::cancel(int choice) {
  Choice& c = choices_.at(static_cast<std::size_t>(choice));
  if (!c.finished) engine_.cancel(c.id);
}

void GenerationSession::cancel_all() {
  for (std::size_t i = 0; i < choices_.size(); ++i) cancel(static_cast<int>(i));
}

bool GenerationSession::all_finished() const {
  for (const auto& c : choices_)
    if (!c.finished) return false;
  return true;
}

void GenerationSession::report(int choice, int64_t generated, const std::string& finish_reason) {
  if (!metrics_) return;
  const Choice& c = choices_.at(static_cast<std::size_t>(choice));
  const auto end = c.first_seen ? c.last : Clock::now();
  metrics_->observe_request(std::chrono::duration<double>(end - start_).count(), prompt_tokens_, generated,
                            finish_reason);
}

}  // namespace nemotron::server
