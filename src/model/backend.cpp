#include "model/backend.h"

#include "model/cpu/cpu_backend.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

namespace nemotron::model {

std::string default_device() { return cuda_backend_available() ? "cuda" : "cpu"; }

std::string resolve_device(const std::string& requested) {
  if (requested.empty()) return default_device();
  if (requested == "cpu") return "cpu";
  if (requested == "cuda") {
    if (!cuda_backend_available()) throw Error("--device cuda: no CUDA device (or no CUDA backend in this build)");
    return "cuda";
  }
  throw Error("--device must be cpu or cuda, got '" + requested + "'");
}

std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options) {
  const std::string device = resolve_device(options.device);
  require_parallel_supported(device, options.parallel);
  if (device == "cpu") return make_cpu_backend(model, options);
  CudaModelOptions o;
  o.max_seqs = options.max_seqs;
  o.max_step_tokens = options.max_step_tokens;
  o.kv_tokens = options.kv_tokens;
  o.kv_fp8 = options.kv_fp8;
  o.ssm_state = options.ssm_state;
  o.verbose = options.verbose;
  o.spec_seqs = options.max_spec_seqs;
  o.spec_rows = options.max_spec_rows;
  o.prefix_cache_bytes = options.prefix_cache_bytes;
  return std::make_unique<CudaModel>(model, o);
}

}  // namespace nemotron::model
