#pragma once
// Engine tests: a request's events collected (Collector); every request submitted at once (one
// thread each), each generated to its end; the step log read back.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"

namespace nemotron::testing {

// Collects one request's events; wait() blocks until the final event.
class Collector {
 public:
  runtime::EventSink sink() {
    return [this](const runtime::TokenEvent& ev) {
      std::lock_guard<std::mutex> lock(mu_);
      if (ev.token >= 0) tokens_.push_back(ev.token);
      cached_ = std::max(cached_, ev.cached_tokens);
      if (ev.finished) {
        done_ = true;
        reason_ = ev.reason;
        error_ = ev.error;
        cv_.notify_all();
      }
      ++events_;
    };
  }
  bool wait(int seconds = 60) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return done_; });
  }
  std::vector<int32_t> tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  runtime::FinishReason reason() {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }
  int64_t cached_tokens() {  // prompt tokens resumed from the prefix cache
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }
  int events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> tokens_;
  bool done_ = false;
  runtime::FinishReason reason_ = runtime::FinishReason::None;
  std::string error_;
  int events_ = 0;
  int64_t cached_ = 0;
};

// The tokens of each request, in request order.
inline std::vector<std::vector<int32_t>> generate_together(runtime::Engine& engine,
                                                           const std::vector<runtime::GenerationRequest>& reqs) {
  std::vector<std::vector<int32_t>> out(reqs.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < reqs.size(); ++i)
    threads.emplace_back([&, i] {
      for (const auto& e : runtime::generate_blocking(engine, reqs[i]))
        if (e.event.token >= 0) out[i].push_back(e.event.token);
    });
  for (auto& t : threads) t.join();
  return out;
}

// The tokens of each request, all submitted back to back from this thread (microseconds apart,
// so that they reach the engine within one step; threads may start milliseconds apart on a
// loaded machine), in request order.
inline std::vector<std::vector<int32_t>> submit_together(runtime::Engine& engine,
                                                         const std::vector<runtime::GenerationRequest>& reqs) {
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& r : reqs) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(r, cs.back()->sink());
  }
  std::vector<std::vector<int32_t>> out;
  for (auto& c : cs) {
    c->wait();
    out.push_back(c->tokens());
  }
  return out;
}

// One line of an engine step log (EngineOptions::step_log), its columns in order.
struct StepLogRow {
  unsigned long long step = 0;
  double start = 0, gap = 0, prep = 0, run = 0;
  int sequences = 0;
  long long decode_rows = 0, prompt_rows = 0;
  int drafts = 0, running = 0, waiting = 0;
};
struct StepLog {
  bool opened = false;
  std::string header;             // the first line, newline included
  std::vector<StepLogRow> rows;
  std::vector<std::string> bad;   // lines that are not 11 columns of the step log's types
};
inline StepLog read_step_log(const std::string& path) {
  StepLog log;
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return log;
  log.opened = true;
  char line[512];
  if (std::fgets(line, sizeof line, f)) log.header = line;
  while (std::fgets(line, sizeof line, f)) {
    StepLogRow r;
    if (std::sscanf(line, "%llu,%lf,%lf,%lf,%lf,%d,%lld,%lld,%d,%d,%d", &r.step, &r.start, &r.gap, &r.prep, &r.run,
                    &r.sequences, &r.decode_rows, &r.prompt_rows, &r.drafts, &r.running, &r.waiting) == 11)
      log.rows.push_back(r);
    else
      log.bad.push_back(line);
  }
  std::fclose(f);
  return log;
}

}  // namespace nemotron::testing
