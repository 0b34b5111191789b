#pragma once
// Engine tests: every request submitted at once (one thread each), each generated to its end.
#include <cstdint>
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

}  // namespace nemotron::testing
