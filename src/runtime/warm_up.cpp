#include "runtime/warm_up.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace nemotron::runtime {

WarmUpResult warm_up_decode_steps(model::Backend& backend, int max_batch, int64_t max_step_tokens,
                                  int64_t max_model_len) {
  const auto t0 = std::chrono::steady_clock::now();
  const int n = static_cast<int>(std::min<int64_t>({max_batch, backend.slots(), max_step_tokens}));
  if (n < 1 || max_model_len < 2) return {};
  std::vector<int> slots;
  int64_t most = 0;
  const int32_t token = 0;  // every vocabulary has id 0
  try {
    for (int i = 0; i < n; ++i) slots.push_back(backend.acquire_slot());
    // Step B takes B slots from a rotating start, so that every slot advances about (n + 1) / 2
    // positions in all.
    int start = 0;
    for (int B = 1; B <= n; ++B) {
      std::vector<model::StepChunk> chunks(static_cast<std::size_t>(B));
      for (int i = 0; i < B; ++i) {
        int& slot = slots[static_cast<std::size_t>((start + i) % n)];
        if (backend.position(slot) + 1 >= max_model_len) {
          backend.release_slot(slot);
          slot = backend.acquire_slot();
        }
        model::StepChunk& c = chunks[static_cast<std::size_t>(i)];
        c.slot = slot;
        c.ids = &token;
        c.T = 1;
        c.sample = true;  // greedy: sampling == nullptr
      }
      backend.begin_step(chunks);
      backend.finish_step();
      for (const model::StepChunk& c : chunks) most = std::max(most, backend.position(c.slot));
      start = (start + B) % n;
    }
  } catch (...) {
    for (int s : slots) backend.release_slot(s);
    throw;
  }
  for (int s : slots) backend.release_slot(s);
  return {n, most, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

}  // namespace nemotron::runtime
