// The CPU reference behind the engine's Backend interface.
#include <map>

#include "model/cpu/cpu_forward.h"
#include "runtime/backend.h"
#include "util/error.h"

namespace nemotron::runtime {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const model::Model& m) : cpu_(m) {}
  const char* name() const override { return "cpu"; }
  int64_t vocab_size() const override { return cpu_.model().config.vocab_size; }
  uint64_t create_sequence() override {
    states_.emplace(next_, cpu_.new_state());
    return next_++;
  }
  void release_sequence(uint64_t s) override { states_.erase(s); }
  void step(const std::vector<StepItem>& items, std::vector<std::vector<float>>& logits) override {
    std::vector<model::SequenceChunk> chunks;
    for (const auto& it : items) {
      auto s = states_.find(it.sequence);
      if (s == states_.end()) throw Error("cpu backend: unknown sequence " + std::to_string(it.sequence));
      chunks.push_back({&s->second, it.ids, it.count, false});
    }
    auto results = cpu_.forward_batch(chunks);
    logits.resize(results.size());
    for (std::size_t i = 0; i < results.size(); ++i) logits[i] = std::move(results[i].logits);
  }

 private:
  model::CpuModel cpu_;
  std::map<uint64_t, model::SequenceState> states_;
  uint64_t next_ = 1;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const model::Model& model) { return std::make_unique<CpuBackend>(model); }

}  // namespace nemotron::runtime
