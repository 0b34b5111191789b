#pragma once
// The flags of the commands that run one model on a backend and nothing else (score,
// generate): --device, the tensor / expert-parallel and node flags, the SSM state flags.
#include <CLI/CLI.hpp>

#include <string>

#include "model/backend.h"
#include "model/parallel/parallel_flags.h"
#include "model/ssm_state_flags.h"

namespace nemotron::cli {

struct BackendFlags {
  std::string device;  // after resolve(): "cpu" or "cuda"
  model::ParallelConfig parallel;
  model::SsmStateFlags ssm;

  void add(CLI::App& app);
  // After parsing: the parallel settings checked against the device (before any "no CUDA
  // device" error), then the device resolved (cuda when a CUDA device is present).
  void resolve();
  // The device, the parallel layout and the SSM state format for `config` into `bo`.
  void apply(model::BackendOptions& bo, const model::Config& config) const;
};

}  // namespace nemotron::cli
