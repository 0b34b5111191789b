// The CPU reference behind the one model interface (model/backend.h): per-slot
// SequenceState (trunk and MTP head) and PenaltyState, one CpuModel::forward_batch per step,
// sampling with kernels::sample_cpu.
#include <algorithm>
#include <set>

#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "model/cpu/cpu_backend.h"
#include "util/error.h"

namespace nemotron::model {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& m, const BackendOptions& o) : cpu_(m), opt_(o) {
    if (o.max_seqs < 1) throw Error("CPU backend: max_seqs must be at least 1");
    slots_.resize(static_cast<std::size_t>(o.max_seqs));
  }
  const Model& model() const override { return cpu_.model(); }
  const char* device() const override { return "cpu"; }
  int slots() const override { return static_cast<int>(slots_.size()); }

  int acquire_slot() override {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.in_use) continue;
      s.in_use = true;
      s.state = cpu_.new_state();
      if (model().config.has_mtp()) s.mtp = cpu_.new_mtp_state();
      s.penalties = {};
      return static_cast<int>(i);
    }
    throw Error("CPU backend: all " + std::to_string(slots_.size()) + " sequence slots are in use");
  }
  void release_slot(int slot) override {
    if (slot < 0 || slot >= slots()) return;
    slots_[static_cast<std::size_t>(slot)] = Slot{};
  }
  int64_t position(int slot) const override { return at(slot).state.pos; }

  void begin_step(const std::vector<StepChunk>& chunks) override {
    const int64_t V = model().config.vocab_size;
    std::set<int> seen;
    int64_t rows = 0;
    for (const auto& ch : chunks) {
      at(ch.slot);
      if (!seen.insert(ch.slot).second) throw Error("CPU backend: slot " + std::to_string(ch.slot) + " twice in one step");
      if (ch.T <= 0 || !ch.ids) throw Error("CPU backend: a chunk with no tokens");
      for (int64_t t = 0; t < ch.T; ++t)
        if (ch.ids[t] < 0 || ch.ids[t] >= V)
          throw Error("token id " + std::to_string(ch.ids[t]) + " is outside the vocabulary [0, " + std::to_string(V) +
                      ")");
      if (ch.sampling) ch.sampling->validate();
      rows += ch.T;
    }
    if (rows > opt_.max_step_tokens)
      throw Error("CPU backend: " + std::to_string(rows) + " rows exceed max_step_tokens " +
                  std::to_string(opt_.max_step_tokens));
    if (pending_) throw Error("CPU backend: begin_step while the previous step is not finished");
    done_ = run(chunks);
    pending_ = true;
  }

  std::vector<StepOutput> finish_step() override {
    if (!pending_) throw Error("CPU backend: finish_step without a step begun");
    pending_ = false;
    return std::move(done_);
  }

  std::vector<float> last_hidden() const override { return hidden_; }

  std::vector<float> mtp_forward(int slot, const int32_t* next_ids, const float* hidden, int64_t T,
                                 bool all_logits) override {
    const Config& c = model().config;
    if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
    if (!hidden || !next_ids || T <= 0) throw Error("CPU backend: mtp_forward without tokens or hidden rows");
    for (int64_t t = 0; t < T; ++t)
      if (next_ids[t] < 0 || next_ids[t] >= c.vocab_size)
        throw Error("token id " + std::to_string(next_ids[t]) + " is outside the vocabulary");
    ForwardResult r;
    {
      Recorder rec(*this);
      r = cpu_.mtp_forward(at(slot).mtp, next_ids, hidden, T, all_logits);
    }
    hidden_ = std::move(r.hidden);
    return std::move(r.logits);
  }
  int64_t mtp_position(int slot) const override { return at(slot).mtp.pos; }

  void record_routing(bool on) override {
    recording_ = on;
    routing_.clear();
  }
  std::vector<std::vector<int32_t>> routing() const override { return routing_; }

 private:
  struct Slot {
    bool in_use = false;
    SequenceState state, mtp;
    kernels::PenaltyState penalties;
  };
  // While recording, a RoutingScope around one forward call keeps each MoE block's own
  // choice (blocks the call does not run are left empty).
  struct Recorder {
    explicit Recorder(CpuBackend& b) {
      if (!b.recording_) return;
      const Config& c = b.model().config;
      b.routing_.assign(c.layers.size() + c.mtp_layers.size(), {});
      RoutingHook hook;
      const int64_t k = c.num_experts_per_tok;
      hook.observe = [&b, k](int block, int64_t rows, const float*, const int32_t* own) {
        b.routing_.at(static_cast<std::size_t>(block)).assign(own, own + rows * k);
      };
      scope = std::make_unique<RoutingScope>(std::move(hook));
    }
    std::unique_ptr<RoutingScope> scope;
  };

  // The step, computed at once (begin_step): the CPU has nothing to overlap with.
  std::vector<StepOutput> run(const std::vector<StepChunk>& chunks) {
    const int64_t V = model().config.vocab_size;
    std::vector<SequenceChunk> seqs;
    for (const auto& ch : chunks)
      seqs.push_back({&at(ch.slot).state, ch.ids, ch.T, ch.logits == LogitsOut::All});
    std::vector<ForwardResult> results;
    {
      Recorder rec(*this);
      results = cpu_.forward_batch(seqs);
    }
    std::vector<StepOutput> out(chunks.size());
    hidden_.clear();
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      const StepChunk& ch = chunks[i];
      ForwardResult& r = results[i];
      hidden_.insert(hidden_.end(), r.hidden.begin(), r.hidden.end());
      Slot& s = at(ch.slot);
      const SamplingParams greedy{.temperature = 0.0f};
      const SamplingParams& p = ch.sampling ? *ch.sampling : greedy;
      if (p.penalized()) kernels::penalty_observe_prompt(s.penalties, ch.ids, ch.T);
      if (ch.sample) {
        const float* last = r.logits.data() + (static_cast<int64_t>(r.logits.size()) / V - 1) * V;
        out[i].sample = kernels::sample_cpu(last, V, p, ch.seed, ch.draw, p.penalized() ? &s.penalties : nullptr);
      } else {
        out[i].sample.token = -1;
      }
      if (ch.logits == LogitsOut::Last && r.logits.size() > static_cast<std::size_t>(V))
        r.logits.erase(r.logits.begin(), r.logits.end() - V);
      if (ch.logits != LogitsOut::None) out[i].logits = std::move(r.logits);
    }
    return out;
  }

  const Slot& at(int slot) const {
    if (slot < 0 || slot >= static_cast<int>(slots_.size()) || !slots_[static_cast<std::size_t>(slot)].in_use)
      throw Error("CPU backend: slot " + std::to_string(slot) + " is not in use");
    return slots_[static_cast<std::size_t>(slot)];
  }
  Slot& at(int slot) { return const_cast<Slot&>(static_cast<const CpuBackend*>(this)->at(slot)); }

  CpuModel cpu_;
  BackendOptions opt_;
  std::vector<Slot> slots_;
  bool pending_ = false;
  std::vector<StepOutput> done_;
  std::vector<float> hidden_;
  bool recording_ = false;
  std::vector<std::vector<int32_t>> routing_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(model, options);
}

}  // namespace nemotron::model
