#pragma once
// What the engine needs from a backend: per-sequence state it can create and release, and
// one forward step over several sequences returning the logits of each sequence's last
// row. The CPU reference implements it here; the CUDA backend implements the same.
#include <cstdint>
#include <memory>
#include <vector>

namespace nemotron::model {
struct Model;
}

namespace nemotron::runtime {

struct StepItem {
  uint64_t sequence = 0;         // handle from create_sequence()
  const int32_t* ids = nullptr;  // tokens fed this step
  int64_t count = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual uint64_t create_sequence() = 0;
  virtual void release_sequence(uint64_t sequence) = 0;
  // logits[i] = [vocab] logits after the last token of items[i].
  virtual void step(const std::vector<StepItem>& items, std::vector<std::vector<float>>& logits) = 0;
};

std::unique_ptr<Backend> make_cpu_backend(const model::Model& model);

}  // namespace nemotron::runtime

namespace nemotron::runtime {

struct CudaBackendOptions {
  int max_seqs = 8;
  int64_t max_step_tokens = 512;
  int64_t kv_tokens = 65536;
  bool kv_fp8 = false;
};

// The model on the first CUDA device (model/cuda_model.h). Throws nemotron::Error when the
// build has no CUDA backend or no device is present.
std::unique_ptr<Backend> make_cuda_backend(const model::Model& model, const CudaBackendOptions& options);

}  // namespace nemotron::runtime
