#include "model/backend.h"

#include "model/cpu/cpu_backend.h"
#include "model/cpu/cpu_forward.h"
#include "model/cuda/cuda_model.h"
#include "model/cuda/cuda_ranks.h"
#include "model/nodes/node_backend.h"
#include "util/error.h"

namespace nemotron::model {

std::vector<std::vector<int32_t>> Backend::mtp_draft(const std::vector<DraftInput>& inputs, int K) {
  const int64_t V = model().config.vocab_size, H = model().config.hidden_size;
  std::vector<std::vector<int32_t>> out;
  for (const DraftInput& in : inputs) {
    if (in.T < 1 || !in.next_ids || !in.hidden) throw Error("mtp_draft: an input without (token, hidden) rows");
    std::vector<float> logits = mtp_forward(in.slot, in.next_ids, in.hidden, in.T, false);
    const int64_t committed = mtp_position(in.slot);
    std::vector<int32_t> d{argmax(logits.data(), V)};
    for (int k = 1; k < K; ++k) {
      const std::vector<float> h = last_hidden();
      logits = mtp_forward(in.slot, &d.back(), h.data() + static_cast<int64_t>(h.size()) - H, 1, false);
      d.push_back(argmax(logits.data(), V));
    }
    if (K > 1) mtp_roll_back(in.slot, committed);
    out.push_back(std::move(d));
  }
  return out;
}

void Backend::mtp_feed(const std::vector<DraftInput>& inputs) {
  for (const DraftInput& in : inputs) {
    if (in.T < 1 || !in.next_ids || !in.hidden) throw Error("mtp_feed: an input without (token, hidden) rows");
    mtp_forward(in.slot, in.next_ids, in.hidden, in.T, false);
  }
}

CudaModelOptions cuda_model_options(const BackendOptions& options) {
  CudaModelOptions o;
  o.max_seqs = options.max_seqs;
  o.max_step_tokens = options.max_step_tokens;
  o.kv_tokens = options.kv_tokens;
  o.kv_fp8 = options.kv_fp8;
  o.ssm_state = options.ssm_state;
  o.verbose = options.verbose;
  o.sampled_logits_only = options.sampled_logits_only;
  o.spec_seqs = options.max_spec_seqs;
  o.spec_rows = options.max_spec_rows;
  o.prefix_cache_bytes = options.prefix_cache_bytes;
  return o;
}

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
  if (options.parallel.multi_node()) {
    BackendOptions o = options;
    o.device = device;
    return make_node_backend(model, o);
  }
  if (device == "cpu") return make_cpu_backend(model, options);
  const CudaModelOptions o = cuda_model_options(options);
  if (options.parallel.sharded())
    return std::make_unique<CudaRanks>(model, options.parallel, o, cuda_rank_devices(options.parallel.world(), false));
  return std::make_unique<CudaModel>(model, o);
}

}  // namespace nemotron::model
