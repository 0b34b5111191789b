#pragma once
// The CPU reference (cpu_forward.h) behind model/backend.h; make_backend() calls this.
#include <memory>

#include "model/backend.h"
#include "model/cpu/cpu_ranks.h"

namespace nemotron::model {

// `node`: this process's rank of a run over several nodes (model/nodes/node_backend.h); null:
// every rank of options.parallel here, as threads.
std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options,
                                          const CpuRanks::NodeRank* node = nullptr);

}  // namespace nemotron::model
