#pragma once
// Engine tests: every request submitted at once (one thread each), each generated to its end.
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"

namespace nemotron::testing {

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
