#pragma once
// A request's engine requests (one per choice) and the queue their events arrive on.
// Sinks run on the engine thread and only push + notify; the request's own thread pops.
// The queue is shared with the sinks, so a session may be destroyed while the engine still
// holds them; the destructor cancels every choice that has not seen its final event.
// Latencies (TTFT, inter-token, end-to-end) are timestamped in the sink and reported to
// Metrics (when given) as events are popped; TTFT and end-to-end count from the request's
// arrival (RequestContext::arrived: the front had it whole), so the wait for a worker, the
// parsing and the tokenization are in them.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/engine.h"
#include "server/metrics.h"

namespace nemotron::server {

using Clock = std::chrono::steady_clock;

struct ChoiceEvent {
  int choice = 0;
  runtime::TokenEvent event;
  Clock::time_point at;
};

class GenerationSession {
 public:
  GenerationSession(runtime::Engine& engine, Metrics* metrics = nullptr);
  ~GenerationSession();
  GenerationSession(const GenerationSession&) = delete;
  GenerationSession& operator=(const GenerationSession&) = delete;

  // Submits choice `choice` (0, 1, ... in order). Throws nemotron::Error from Engine::submit.
  void submit(runtime::GenerationRequest request);
  // Waits up to `timeout` for the next event; false on timeout.
  bool next(ChoiceEvent& out, std::chrono::milliseconds timeout);
  void cancel(int choice);
  void cancel_all();
  bool all_finished() const;
  // Reports a finished choice to the metrics (end-to-end latency, token counts, reason).
  void report(int choice, int64_t generated, const std::string& finish_reason);
  int64_t prompt_tokens() const { return prompt_tokens_; }

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<ChoiceEvent> items;
  };
  struct Choice {
    uint64_t id = 0;
    bool finished = false;
    bool first_seen = false;
    Clock::time_point last;
  };
  runtime::Engine& engine_;
  Metrics* metrics_;
  std::shared_ptr<Queue> queue_;
  std::vector<Choice> choices_;
  Clock::time_point start_;
  int64_t prompt_tokens_ = 0;
};

}  // namespace nemotron::server
