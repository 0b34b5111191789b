#pragma once
// The --tensor-parallel-size / --expert-parallel-size flags (vLLM's names), one definition for
// every command that runs the model: score, generate, bench, and serve / run through the
// service flags (server/service_flags.h). Header-only (CLI11); see docs/parallel.md.
#include <CLI/CLI.hpp>

#include "model/parallel/parallel_config.h"

namespace nemotron::model {

inline void add_parallel_flags(CLI::App& app, ParallelConfig& p) {
  app.add_option("--tensor-parallel-size", p.tensor_parallel,
                 "Tensor-parallel ranks: attention and Mamba heads, MLP and expert widths, vocab split over N "
                 "(CPU: ranks are threads; CUDA: one GPU per rank over NCCL)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--expert-parallel-size", p.expert_parallel,
                 "Expert-parallel ranks: routed experts split over N (on the tensor-parallel ranks; with N > "
                 "--tensor-parallel-size the dense part is replicated)")
      ->check(CLI::Range(1, 1024));
}

}  // namespace nemotron::model
