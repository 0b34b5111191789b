#include "cli/backend_flags.h"

namespace nemotron::cli {

void BackendFlags::add(CLI::App& app) {
  app.add_option("--device", device, "cpu or cuda (default: cuda when a CUDA device is present)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  model::add_parallel_flags(app, parallel);
  model::add_node_flags(app, parallel);
  model::add_ssm_state_flags(app, ssm);
}

void BackendFlags::resolve() {
  model::require_parallel_supported(device, parallel);
  device = model::resolve_device(device);
}

void BackendFlags::apply(model::BackendOptions& bo, const model::Config& config) const {
  bo.device = device;
  bo.parallel = parallel;
  bo.ssm_state = model::resolve_ssm_state(ssm, config);
}

}  // namespace nemotron::cli
