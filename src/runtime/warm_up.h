#pragma once
// Start-up warm-up of a backend's decode steps: one greedy decode step of B single-token
// sequences for every B in 1..max_batch, on scratch slots that are released afterwards (each
// slot is reset when it is acquired again). The CUDA backend captures its decode graph for a
// batch size the first time a step of that size runs; without this, the first burst of
// requests after start-up paid every capture and instantiation inside its own steps, each time
// the number of decoding sequences reached a new size.
#include <cstdint>

#include "model/backend.h"

namespace nemotron::runtime {

struct WarmUpResult {
  int batch_sizes = 0;       // steps run: sizes 1..batch_sizes
  int64_t max_position = 0;  // the most positions a scratch slot held (< max_model_len)
  double seconds = 0;
};

// The sizes run are 1..min(max_batch, the backend's slots, max_step_tokens) (the scheduler
// never puts more decode rows in a step than its budget); a scratch slot is exchanged for a
// fresh one before its position reaches max_model_len - 1. Throws what the backend throws (the
// slots are released first).
WarmUpResult warm_up_decode_steps(model::Backend& backend, int max_batch, int64_t max_step_tokens,
                                  int64_t max_model_len);

}  // namespace nemotron::runtime
