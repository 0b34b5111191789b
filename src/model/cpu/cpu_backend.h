#pragma once
// The CPU reference (cpu_forward.h) behind model/backend.h; make_backend() calls this.
#include <memory>

#include "model/backend.h"

namespace nemotron::model {

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

}  // namespace nemotron::model
