// The CUDA model behind the engine's Backend interface.
#include <map>

#include "model/cuda/cuda_model.h"
#include "runtime/backend.h"
#include "util/error.h"

namespace nemotron::runtime {
namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend(const model::Model& m, const CudaBackendOptions& o) : gpu_(m, to_model_options(o)), vocab_(m.config.vocab_size) {}
  const char* name() const override { return "cuda"; }
  int64_t vocab_size() const override { return vocab_; }
  uint64_t create_sequence() override {
    slots_[next_] = gpu_.acquire_slot();
    return next_++;
  }
  void release_sequence(uint64_t s) override {
    auto it = slots_.find(s);
    if (it == slots_.end()) return;
    gpu_.release_slot(it->second);
    slots_.erase(it);
  }
  void step(const std::vector<StepItem>& items, std::vector<std::vector<float>>& logits) override {
    std::vector<model::CudaChunk> chunks;
    for (const auto& it : items) {
      auto s = slots_.find(it.sequence);
      if (s == slots_.end()) throw Error("cuda backend: unknown sequence " + std::to_string(it.sequence));
      chunks.push_back({s->second, it.ids, it.count, false});
    }
    // Steps of decode rows only (count 1 each) replay the model's CUDA graph for that batch
    // size (CudaModelOptions::cuda_graphs); the sampler needs the logits, copied after it.
    logits = gpu_.forward(chunks);
  }

 private:
  static model::CudaModelOptions to_model_options(const CudaBackendOptions& o) {
    model::CudaModelOptions m;
    m.max_seqs = o.max_seqs;
    m.max_step_tokens = o.max_step_tokens;
    m.kv_tokens = o.kv_tokens;
    m.kv_fp8 = o.kv_fp8;
    return m;
  }
  model::CudaModel gpu_;
  int64_t vocab_;
  std::map<uint64_t, int> slots_;
  uint64_t next_ = 1;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const model::Model& model, const CudaBackendOptions& options) {
  if (!model::cuda_backend_available()) throw Error("--device cuda: no CUDA device (or no CUDA backend in this build)");
  return std::make_unique<CudaBackend>(model, options);
}

}  // namespace nemotron::runtime
