#pragma once
// The --tensor-parallel-size / --expert-parallel-size flags (vLLM's names), one definition for
// every command that runs the model: score, generate, bench, and serve / run through the
// service flags (server/service_flags.h); the node flags for those but bench. Header-only
// (CLI11); see docs/parallel.md.
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

// --nnodes, --node-rank, --master-addr, --master-port: for the commands that run one model
// through make_backend (score, generate, serve, run); see model/nodes/node_backend.h.
inline void add_node_flags(CLI::App& app, ParallelConfig& p) {
  app.add_option("--nnodes", p.nnodes,
                 "Nodes (processes, one per machine) sharing the ranks; node 0 runs the command, the others follow "
                 "it (start each with the same flags and its --node-rank)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--node-rank", p.node_rank, "This node's number, 0 (the leader) to --nnodes - 1")
      ->check(CLI::Range(0, 1023));
  app.add_option("--master-addr", p.master_addr, "Address of node 0, where the nodes meet (default 127.0.0.1)");
  app.add_option("--master-port", p.master_port, "Port node 0 listens on for the other nodes (default 29500)")
      ->check(CLI::Range(1, 65535));
}

}  // namespace nemotron::model
