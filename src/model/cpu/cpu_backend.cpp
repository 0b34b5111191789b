// The CPU reference behind the one model interface (model/backend.h): per-slot
// SequenceState (trunk and MTP head) and PenaltyState, one CpuModel::forward_batch per step,
// sampling with kernels::sample_cpu. Tensor / expert parallel (BackendOptions::parallel):
// every rank (a thread, cpu_ranks.h) keeps its own share of each slot's state and runs its
// forward; the ranks' logits and hidden rows are the same, rank 0's are used. Over several
// nodes (model/nodes) it holds this process's rank alone: its own share of every state.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <type_traits>

#include "kernels/token_mask.h"
#include "model/backend.h"
#include "model/cpu/cpu_backend.h"

#include <cstring>
#include "model/cpu/cpu_forward.h"
#include "model/cpu/cpu_ranks.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::model {
namespace {

constexpr char kFp8KvTag[8] = {'F', 'P', '8', 'K', 'V', 0, 0, 1};

// The storage formats a snapshot's values were rounded to, after its states: an FP8 KV cache,
// then a 16-bit SSM state (its type: both roundings give values of the same grid); nothing for
// fp32. A snapshot imports only into a backend of the same formats.
std::vector<uint8_t> format_tags(const BackendOptions& o) {
  std::vector<uint8_t> t;
  t.reserve(16);
  if (o.kv_fp8)
    for (char c : kFp8KvTag) t.push_back(static_cast<uint8_t>(c));
  if (o.ssm_state.dtype != kernels::StateDType::F32)
    for (uint8_t c : {uint8_t{'S'}, uint8_t{'S'}, uint8_t{'M'}, static_cast<uint8_t>(o.ssm_state.dtype), uint8_t{0},
                      uint8_t{0}, uint8_t{0}, uint8_t{1}})
      t.push_back(c);
  return t;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& m, const BackendOptions& o, const CpuRanks::NodeRank* node)
      : ranks_(node ? CpuRanks(m, o.parallel, *node, o.kv_fp8, o.ssm_state) : CpuRanks(m, o.parallel, o.kv_fp8, o.ssm_state)),
        opt_(o) {
    if (o.max_seqs < 1) throw Error("CPU backend: max_seqs must be at least 1");
    slots_.resize(static_cast<std::size_t>(o.max_seqs));
  }
  const Model& model() const override { return ranks_[0].model(); }
  const char* device() const override { return "cpu"; }
  int slots() const override { return static_cast<int>(slots_.size()); }

  int acquire_slot() override {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.in_use) continue;
      s.in_use = true;
      s.state.clear();
      s.mtp.clear();
      for (int r = 0; r < ranks_.size(); ++r) {
        s.state.push_back(ranks_[r].new_state());
        s.mtp.push_back(model().config.has_mtp() ? ranks_[r].new_mtp_state() : SequenceState{});
      }
      s.penalties = {};
      return static_cast<int>(i);
    }
    throw Error("CPU backend: all " + std::to_string(slots_.size()) + " sequence slots are in use");
  }
  void release_slot(int slot) override {
    if (slot < 0 || slot >= slots()) return;
    slots_[static_cast<std::size_t>(slot)] = Slot{};
  }
  int64_t position(int slot) const override { return at(slot).state[0].pos; }

  bool steps_in_begin() const override { return true; }
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
    Slot& s = at(slot);
    std::vector<ForwardResult> r(static_cast<std::size_t>(ranks_.size()));
    {
      Recorder rec(*this);
      ranks_.run([&](int q) { r[q] = ranks_[q].mtp_forward(s.mtp[q], next_ids, hidden, T, all_logits); });
    }
    hidden_ = std::move(r[0].hidden);
    return std::move(r[0].logits);
  }
  int64_t mtp_position(int slot) const override { return at(slot).mtp[0].pos; }

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
    for (int r = 0; r < ranks_.size(); ++r)
      roll_back_state(s.state[r], k.rows[r], k.before[r], pos, ranks_[r].config().kv_dim());
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
    int64_t bytes = 0;
    for (int r = 0; r < ranks_.size(); ++r) {  // every rank's share (the model's sizes when unsharded)
      const Config& c = ranks_[r].config();
      const int64_t mamba =
          4 * ((c.conv_kernel - 1) * c.conv_dim() + c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size);
      for (auto kind : c.layers)
        bytes += kind == LayerKind::Mamba ? mamba : kind == LayerKind::Attention ? 2 * 4 * pos * c.kv_dim() : 0;
      for (auto kind : c.mtp_layers) bytes += kind == LayerKind::Attention ? 2 * 4 * pos * c.kv_dim() : 0;
    }
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
    if (s.state[0].pos != 0) throw Error("CPU backend: load_snapshot into slot " + std::to_string(slot) + " in use");
    s.state = it->second.state;
    s.mtp = it->second.mtp;
    s.kept.valid = false;
  }

  void drop_snapshot(uint64_t id) override { snapshots_.erase(id); }

  // Layout: for each rank (one unsharded), its trunk state then its MTP state: pos (int64),
  // then per block the sizes (int64) of conv, ssm, k, v followed by their floats; with an FP8
  // KV cache (emulated) a trailing 8-byte tag, so that K/V rows of one mode never load into the other.
  std::vector<uint8_t> export_snapshot(uint64_t id) const override {
    const auto it = snapshots_.find(id);
    if (it == snapshots_.end()) throw Error("CPU backend: no snapshot " + std::to_string(id));
    std::vector<uint8_t> out;
    auto put = [&](const void* p, std::size_t n) {
      out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    for (const SequenceState* st : in_order(it->second)) {
      put(&st->pos, 8);
      for (const auto& b : st->blocks)
        for (const auto* v : {&b.conv, &b.ssm, &b.k, &b.v}) {
          const int64_t n = static_cast<int64_t>(v->size());
          put(&n, 8);
          put(v->data(), v->size() * 4);
        }
    }
    const std::vector<uint8_t> tags = format_tags(opt_);
    put(tags.data(), tags.size());
    return out;
  }

  void import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) override {
    Snapshot snap;
    for (int r = 0; r < ranks_.size(); ++r) {
      snap.state.push_back(ranks_[r].new_state());
      snap.mtp.push_back(model().config.has_mtp() ? ranks_[r].new_mtp_state() : SequenceState{});
    }
    std::size_t at = 0;
    auto get = [&](void* p, std::size_t n) {
      if (at + n > bytes.size()) throw Error("CPU backend: snapshot bytes end early");
      std::copy(bytes.begin() + static_cast<std::ptrdiff_t>(at), bytes.begin() + static_cast<std::ptrdiff_t>(at + n),
                static_cast<uint8_t*>(p));
      at += n;
    };
    const std::vector<SequenceState*> states = in_order(snap);
    for (std::size_t i = 0; i < states.size(); ++i) {
      SequenceState* st = states[i];
      const int64_t kv = ranks_[static_cast<int>(i / 2)].config().kv_dim();
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
    const std::vector<uint8_t> tags = format_tags(opt_);
    if (bytes.size() - at != tags.size() || !std::equal(tags.begin(), tags.end(), bytes.begin() + static_cast<std::ptrdiff_t>(at)))
      throw Error(bytes.size() - at <= 16 && (bytes.size() - at) % 8 == 0
                      ? "CPU backend: snapshot bytes were written with another KV cache or SSM state format "
                        "(--kv-cache-dtype, --mamba-ssm-cache-dtype)"
                      : "CPU backend: snapshot bytes do not fit this model");
    snapshots_[id] = std::move(snap);
  }

  void observe_prompt(int slot, const int32_t* ids, int64_t n) override {
    kernels::penalty_observe_prompt(at(slot).penalties, ids, n);
  }

  void mtp_roll_back(int slot, int64_t pos) override {
    Slot& s = at(slot);
    for (const auto& b : s.mtp[0].blocks)
      if (!b.conv.empty() || !b.ssm.empty())
        throw Error("CPU backend: the MTP head has recurrent blocks; it cannot be rolled back by length");
    for (int r = 0; r < ranks_.size(); ++r) roll_back_state(s.mtp[r], {}, {}, pos, ranks_[r].config().kv_dim());
  }

  void record_routing(bool on) override {
    recording_ = on;
    routing_.clear();
  }
  std::vector<std::vector<int32_t>> routing() const override { return routing_; }

 private:
  // What the last step kept of a slot's chunk for roll_back: its start position and rows, the
  // Mamba states before it and after each row (per rank), the penalty state before it, its ids
  // and the draws of its last sample_rows rows.
  struct Kept {
    bool valid = false;
    int64_t pos0 = 0, T = 0, sample_rows = 0;
    std::vector<RowStates> rows;                  // [rank]
    std::vector<std::vector<BlockCache>> before;  // [rank]
    kernels::PenaltyState penalties;
    std::vector<int32_t> ids;
    std::vector<SampleResult> samples;
  };
  struct Slot {
    bool in_use = false;
    std::vector<SequenceState> state, mtp;  // [rank]: the rank's share (all of it unsharded)
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
    const int W = ranks_.size();
    std::vector<std::vector<SequenceChunk>> seqs(static_cast<std::size_t>(W));  // [rank][chunk]
    for (const auto& ch : chunks) {
      Slot& s = at(ch.slot);
      Kept& k = s.kept;
      k.valid = ch.keep_states;
      if (ch.keep_states) {
        k.pos0 = s.state[0].pos;
        k.T = ch.T;
        k.rows.assign(static_cast<std::size_t>(W), {});
        k.before.assign(static_cast<std::size_t>(W), {});
        for (int r = 0; r < W; ++r)
          for (const auto& b : s.state[r].blocks) k.before[r].push_back({b.conv, b.ssm, {}, {}});
        k.penalties = s.penalties;
        k.ids.assign(ch.ids, ch.ids + ch.T);
        k.sample_rows = ch.sample ? ch.sample_rows : 0;
      }
      const bool all = ch.logits == LogitsOut::All || (ch.sample && ch.sample_rows > 1);
      for (int r = 0; r < W; ++r)
        seqs[r].push_back({&s.state[r], ch.ids, ch.T, all, ch.keep_states ? &k.rows[r] : nullptr});
    }
    std::vector<std::vector<ForwardResult>> per_rank(static_cast<std::size_t>(W));
    {
      Recorder rec(*this);
      ranks_.run([&](int r) { per_rank[r] = ranks_[r].forward_batch(seqs[r]); });
    }
    std::vector<ForwardResult>& results = per_rank[0];
    std::vector<StepOutput> out(chunks.size());
    hidden_.clear();
    for (std::size_t i = 0; i < chunks.size(); ++i)
      hidden_.insert(hidden_.end(), results[i].hidden.begin(), results[i].hidden.end());
    // Each chunk samples from its own slot's penalty state and its own logits (a step holds a
    // slot once: checked above), so the chunks sample in parallel; a chunk's rows stay in order.
    parallel_for(chunks.size(), [&](std::size_t c0, std::size_t c1) {
      for (std::size_t i = c0; i < c1; ++i) {
        const StepChunk& ch = chunks[i];
        ForwardResult& r = results[i];
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
    }, 1);
    return out;
  }

  const Slot& at(int slot) const {
    if (slot < 0 || slot >= static_cast<int>(slots_.size()) || !slots_[static_cast<std::size_t>(slot)].in_use)
      throw Error("CPU backend: slot " + std::to_string(slot) + " is not in use");
    return slots_[static_cast<std::size_t>(slot)];
  }
  Slot& at(int slot) { return const_cast<Slot&>(static_cast<const CpuBackend*>(this)->at(slot)); }

  struct Snapshot {
    std::vector<SequenceState> state, mtp;  // [rank]
  };
  // A snapshot's states in their byte order: rank 0's trunk state, its MTP state, rank 1's ...
  template <class S, class P = std::conditional_t<std::is_const_v<S>, const SequenceState*, SequenceState*>>
  static std::vector<P> in_order(S& snap) {
    std::vector<P> v;
    for (std::size_t r = 0; r < snap.state.size(); ++r) {
      v.push_back(&snap.state[r]);
      v.push_back(&snap.mtp[r]);
    }
    return v;
  }

  CpuRanks ranks_;
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

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options,
                                          const CpuRanks::NodeRank* node) {
  return std::make_unique<CpuBackend>(model, options, node);
}

}  // namespace nemotron::model
