// The CPU reference behind the one model interface (model/backend.h): per-slot
// SequenceState (trunk and MTP head) and PenaltyState, one CpuModel::forward_batch per step,
// sampling with kernels::sample_cpu.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "kernels/token_mask.h"
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
      if (ch.sample && (ch.sample_rows < 1 || ch.sample_rows > ch.T))
        throw Error("CPU backend: sample_rows " + std::to_string(ch.sample_rows) + " outside [1, " +
                    std::to_string(ch.T) + "]");
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

  bool can_roll_back() const override { return true; }

  void roll_back(int slot, int64_t pos) override {
    Slot& s = at(slot);
    Kept& k = s.kept;
    if (!k.valid)
      throw Error("CPU backend: roll_back of slot " + std::to_string(slot) + " without a kept step (keep_states)");
    if (pos < k.pos0 || pos > k.pos0 + k.T)
      throw Error("CPU backend: roll_back to " + std::to_string(pos) + " outside the kept chunk [" +
                  std::to_string(k.pos0) + ", " + std::to_string(k.pos0 + k.T) + "]");
    k.valid = false;
    const int64_t n = pos - k.pos0;  // rows kept
    roll_back_state(s.state, k.rows, k.before, pos, model().config.kv_dim());
    // Penalty state: as the step built it, but only from the kept rows (prompt rows up to the
    // first sampled one, then the kept rows' draws).
    s.penalties = std::move(k.penalties);
    const int64_t first = k.T - k.sample_rows;  // chunk row of the first draw
    kernels::penalty_observe_prompt(s.penalties, k.ids.data(), std::min(n, k.sample_rows > 0 ? first + 1 : k.T));
    for (int64_t j = 0; j < n - first && j < static_cast<int64_t>(k.samples.size()); ++j) {
      s.penalties.counts[k.samples[j].token]++;
      s.penalties.seen.insert(k.samples[j].token);
    }
  }

  bool can_snapshot() const override { return true; }

  int64_t snapshot_bytes(int64_t pos) const override {
    const Config& c = model().config;
    const int64_t mamba = 4 * ((c.conv_kernel - 1) * c.conv_dim() + c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size);
    int64_t bytes = 0;
    for (auto kind : c.layers) bytes += kind == LayerKind::Mamba ? mamba : kind == LayerKind::Attention ? 2 * 4 * pos * c.kv_dim() : 0;
    for (auto kind : c.mtp_layers) bytes += kind == LayerKind::Attention ? 2 * 4 * pos * c.kv_dim() : 0;
    return bytes;
  }

  void save_snapshot(int slot, uint64_t id) override {
    const Slot& s = at(slot);
    if (!snapshots_.emplace(id, Snapshot{s.state, s.mtp}).second)
      throw Error("CPU backend: snapshot " + std::to_string(id) + " exists");
  }

  void load_snapshot(uint64_t id, int slot) override {
    Slot& s = at(slot);
    const auto it = snapshots_.find(id);
    if (it == snapshots_.end()) throw Error("CPU backend: no snapshot " + std::to_string(id));
    if (s.state.pos != 0) throw Error("CPU backend: load_snapshot into slot " + std::to_string(slot) + " in use");
    s.state = it->second.state;
    s.mtp = it->second.mtp;
    s.kept.valid = false;
  }

  void drop_snapshot(uint64_t id) override { snapshots_.erase(id); }

  // Layout: for the trunk state then the MTP state: pos (int64), then per block the sizes
  // (int64) of conv, ssm, k, v followed by their floats.
  std::vector<uint8_t> export_snapshot(uint64_t id) const override {
    const auto it = snapshots_.find(id);
    if (it == snapshots_.end()) throw Error("CPU backend: no snapshot " + std::to_string(id));
    std::vector<uint8_t> out;
    auto put = [&](const void* p, std::size_t n) {
      out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    for (const SequenceState* st : {&it->second.state, &it->second.mtp}) {
      put(&st->pos, 8);
      for (const auto& b : st->blocks)
        for (const auto* v : {&b.conv, &b.ssm, &b.k, &b.v}) {
          const int64_t n = static_cast<int64_t>(v->size());
          put(&n, 8);
          put(v->data(), v->size() * 4);
        }
    }
    return out;
  }

  void import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) override {
    Snapshot snap{cpu_.new_state(), model().config.has_mtp() ? cpu_.new_mtp_state() : SequenceState{}};
    std::size_t at = 0;
    auto get = [&](void* p, std::size_t n) {
      if (at + n > bytes.size()) throw Error("CPU backend: snapshot bytes end early");
      std::copy(bytes.begin() + static_cast<std::ptrdiff_t>(at), bytes.begin() + static_cast<std::ptrdiff_t>(at + n),
                static_cast<uint8_t*>(p));
      at += n;
    };
    const int64_t kv = model().config.kv_dim();
    for (SequenceState* st : {&snap.state, &snap.mtp}) {
      get(&st->pos, 8);
      for (auto& b : st->blocks)
        for (auto* v : {&b.conv, &b.ssm, &b.k, &b.v}) {
          int64_t n = 0;
          get(&n, 8);
          const bool kv_rows = v == &b.k || v == &b.v;
          // Recurrent states keep their model-given size; K/V hold pos rows (or none).
          if (kv_rows ? (n != 0 && n != st->pos * kv) : n != static_cast<int64_t>(v->size()))
            throw Error("CPU backend: snapshot bytes do not fit this model");
          v->resize(static_cast<std::size_t>(n));
          get(v->data(), static_cast<std::size_t>(n) * 4);
        }
    }
    if (at != bytes.size()) throw Error("CPU backend: snapshot bytes do not fit this model");
    snapshots_[id] = std::move(snap);
  }

  void observe_prompt(int slot, const int32_t* ids, int64_t n) override {
    kernels::penalty_observe_prompt(at(slot).penalties, ids, n);
  }

  void mtp_roll_back(int slot, int64_t pos) override {
    Slot& s = at(slot);
    for (const auto& b : s.mtp.blocks)
      if (!b.conv.empty() || !b.ssm.empty())
        throw Error("CPU backend: the MTP head has recurrent blocks; it cannot be rolled back by length");
    roll_back_state(s.mtp, {}, {}, pos, model().config.kv_dim());
  }

  void record_routing(bool on) override {
    recording_ = on;
    routing_.clear();
  }
  std::vector<std::vector<int32_t>> routing() const override { return routing_; }

 private:
  // What the last step kept of a slot's chunk for roll_back: its start position and rows, the
  // Mamba states before it and after each row, the penalty state before it, its ids and the
  // draws of its last sample_rows rows.
  struct Kept {
    bool valid = false;
    int64_t pos0 = 0, T = 0, sample_rows = 0;
    RowStates rows;
    std::vector<BlockCache> before;
    kernels::PenaltyState penalties;
    std::vector<int32_t> ids;
    std::vector<SampleResult> samples;
  };
  struct Slot {
    bool in_use = false;
    SequenceState state, mtp;
    kernels::PenaltyState penalties;
    Kept kept;
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
    for (const auto& ch : chunks) {
      Slot& s = at(ch.slot);
      Kept& k = s.kept;
      k.valid = ch.keep_states;
      if (ch.keep_states) {
        k.pos0 = s.state.pos;
        k.T = ch.T;
        k.before.clear();
        for (const auto& b : s.state.blocks) k.before.push_back({b.conv, b.ssm, {}, {}});
        k.penalties = s.penalties;
        k.ids.assign(ch.ids, ch.ids + ch.T);
        k.sample_rows = ch.sample ? ch.sample_rows : 0;
      }
      const bool all = ch.logits == LogitsOut::All || (ch.sample && ch.sample_rows > 1);
      seqs.push_back({&s.state, ch.ids, ch.T, all, ch.keep_states ? &k.rows : nullptr});
    }
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
      // The rows up to the first sampled one are prompt (seen); each later sampled row's input
      // is the previous row's draw, which sample_cpu has just counted (a verify chunk of drafts:
      // for the accepted prefix the drafts are the draws).
      const int64_t S = ch.sample ? ch.sample_rows : 0;
      if (p.penalized()) kernels::penalty_observe_prompt(s.penalties, ch.ids, S > 0 ? ch.T - S + 1 : ch.T);
      const int64_t rows = static_cast<int64_t>(r.logits.size()) / V;
      const int64_t words = (V + 31) / 32;
      for (int64_t j = 0; j < S; ++j) {
        float* row = r.logits.data() + (rows - S + j) * V;
        if (ch.allowed) kernels::mask_logits_cpu(row, V, ch.allowed + j * words);  // disallowed: -inf
        out[i].samples.push_back(kernels::sample_cpu(row, V, p, ch.seed, ch.draw + static_cast<uint64_t>(j),
                                                     p.penalized() ? &s.penalties : nullptr));
      }
      if (S > 0) s.kept.samples = out[i].samples;
      if (S > 0) out[i].sample = out[i].samples.back();
      else out[i].sample.token = -1;
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

  struct Snapshot {
    SequenceState state, mtp;
  };

  CpuModel cpu_;
  BackendOptions opt_;
  std::map<uint64_t, Snapshot> snapshots_;
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
