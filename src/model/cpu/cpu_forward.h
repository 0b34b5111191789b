#pragma once
// The CPU reference forward pass: fp32 compute over the checkpoint-format weights.
// Exact, readable, multithreaded; everything else (CUDA, batching) is tested against it.
//
// A sequence's state is one BlockCache per block: Mamba blocks hold the conv window
// [K-1, conv_dim] (last pre-conv xBC rows, oldest first) and the SSM state [Hm, P, N];
// attention blocks hold K and V rows [pos, Hkv*Dh] for every position seen (fp32; with
// set_kv_fp8 the values an FP8 E4M3 cache would return). Processing
// T tokens in one call, in chunks, or one at a time gives the same result (with a 16-bit SSM
// state, set_ssm_state, up to where the state is rounded: at the end of each call's rows).
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/state_round.h"
#include "model/checkpoint/weights.h"

namespace nemotron::model {

struct BlockCache {
  std::vector<float> conv, ssm;  // Mamba
  std::vector<float> k, v;       // attention
};

struct SequenceState {
  int64_t pos = 0;                 // tokens processed so far
  std::vector<BlockCache> blocks;  // one per block of the stack it belongs to
};

// Called with (index, rows [T, H]): index 0 = embedding output, l+1 = output of block l,
// num_layers + 1 = after norm_f. Used by tests to compare every layer with the reference.
using HiddenObserver = std::function<void(int index, const std::vector<float>& rows)>;

// Calibration hook (`nemotron quantize`): while a LinearInputScope lives, every linear the
// CPU reference applies on the constructing thread (trunk and MTP blocks, eh_proj, router
// gate; not lm_head) reports its module and its fp32 input rows x [rows, in] to it. Scopes nest.
using LinearInputObserver = std::function<void(const Linear& layer, const float* x, int64_t rows)>;
class LinearInputScope {
 public:
  explicit LinearInputScope(LinearInputObserver fn);
  ~LinearInputScope();
  LinearInputScope(const LinearInputScope&) = delete;
  LinearInputScope& operator=(const LinearInputScope&) = delete;

 private:
  LinearInputObserver fn_;
  const LinearInputObserver* prev_;
};

// Test hook (routing-aware comparison of other engines with this reference: random routers
// have near-ties that lower-precision activations may break the other way). While a
// RoutingScope lives, every MoE block the CPU reference runs on the constructing thread
// (trunk block l has index l, MTP block j has index config.layers.size() + j) calls
//   observe(block, rows, scores [rows, E], own [rows, k]): scores = sigmoid(logit) + bias,
//     the selection scores before group masking; own = its own route_topk_cpu choice;
//   force(block, rows): nullptr keeps its own choice, else ids [rows, k] to route to instead.
//     Forced experts are weighted by their own sigmoid scores, normalized and scaled as
//     route_topk_cpu does. A forced id outside [0, E) is an Error. Scopes nest.
struct RoutingHook {
  std::function<void(int block, int64_t rows, const float* scores, const int32_t* own)> observe;
  std::function<const int32_t*(int block, int64_t rows)> force;
};
class RoutingScope {
 public:
  explicit RoutingScope(RoutingHook hook);
  ~RoutingScope();
  RoutingScope(const RoutingScope&) = delete;
  RoutingScope& operator=(const RoutingScope&) = delete;

 private:
  RoutingHook hook_;
  const RoutingHook* prev_;
};

struct ForwardResult {
  std::vector<float> logits;  // [rows, V]: every position, or the last one only
  std::vector<float> hidden;  // [T, H] after the final norm (the MTP head's input)
};

// The recurrent state of a chunk's Mamba blocks after each of its rows, for rolling a
// sequence back into the chunk (speculative decoding): row_states[b][t] holds block b's conv
// window and SSM state after row t (empty for blocks of other kinds, whose state -- K/V rows
// -- is cut back by length instead).
using RowStates = std::vector<std::vector<BlockCache>>;

// One sequence's part of a batched step: T new tokens continuing from *state.
struct SequenceChunk {
  SequenceState* state = nullptr;
  const int32_t* ids = nullptr;
  int64_t T = 0;
  bool all_logits = false;  // logits for every new position, or the last one only
  RowStates* row_states = nullptr;  // when set: filled with the per-row Mamba states
};

// Rolls `state` (which ran `chunk_rows` rows from position state.pos - chunk_rows, keeping
// `rows` (RowStates of that chunk) and `before` (its Mamba states before the chunk)) back to
// position `pos`: Mamba states from the kept rows, K/V rows cut to `pos`. Exact: the sequence
// continues as if only tokens before `pos` had been fed.
void roll_back_state(SequenceState& state, const RowStates& rows, const std::vector<BlockCache>& before, int64_t pos,
                     int64_t kv_dim);

struct RankShard;
class Communicator;

// One rank of a sharded model (model/parallel/shard.h): the rank's slices and sizes, and its
// communicators. The rank's forward all-reduces the output of every row-parallel mixer
// (attention, Mamba, MLP over `tp`; MoE blocks over `world`), the partial embedding rows
// (`tp`), and all-gathers the vocab-split logits (`tp`); its hidden rows and logits are the
// whole model's, on every rank.
struct RankContext {
  const RankShard* shard = nullptr;
  Communicator* tp = nullptr;     // the ranks of this rank's tensor-parallel group
  Communicator* world = nullptr;  // every rank
};

class CpuModel {
 public:
  explicit CpuModel(const Model& model);
  CpuModel(const Model& model, const RankContext& rank);  // one rank of a sharded model
  const Model& model() const { return model_; }
  // The sizes this forward runs at: the model's, or (sharded) the rank's heads and groups.
  const Config& config() const { return *config_; }

  // FP8 KV cache emulation (off: fp32 K/V rows): every K / V element written to the cache is
  // rounded through E4M3 with its layer's scale, e4m3(x / s) * s (kernels/numeric.h
  // kv_fp8_round; AttentionWeights k_scale / v_scale), as the CUDA backend's FP8 cache stores
  // it; the cache keeps those values in fp32. The reference for the GPU's FP8 KV cache.
  void set_kv_fp8(bool on) { kv_fp8_ = on; }
  bool kv_fp8() const { return kv_fp8_; }
  // The SSM state's storage type (default fp32): with a 16-bit type every state written back
  // (end of a sequence's rows in a step; each kept row state) is rounded to it, as the GPU's
  // 16-bit state slots store it (kernels/state_round.h); the cache keeps those values in fp32.
  void set_ssm_state(const kernels::SsmStateFormat& f) { ssm_ = f; }
  const kernels::SsmStateFormat& ssm_state() const { return ssm_; }

  SequenceState new_state() const;      // empty trunk state
  SequenceState new_mtp_state() const;  // empty MTP-head state

  // Runs tokens ids[0..T) of one sequence, continuing from `state`.
  ForwardResult forward(SequenceState& state, const int32_t* ids, int64_t T, bool all_logits,
                        const HiddenObserver& observer = nullptr) const;

  // One step over several sequences (prefill chunks and decodes mixed). Row-wise work
  // (linears, norms, MoE) runs over all rows at once; conv, scan and attention run per
  // sequence on its own state. Gives each sequence what forward() alone would.
  std::vector<ForwardResult> forward_batch(const std::vector<SequenceChunk>& chunks,
                                           const HiddenObserver& observer = nullptr) const;

  // MTP head over T positions: position i is fed (token next_ids[i], trunk hidden row i),
  // where the hidden rows are the trunk's post-norm_f states (or, when chaining drafts,
  // the head's own previous output). Returns logits for every position and the head's
  // final-normed outputs [T, H]. Requires config.has_mtp().
  ForwardResult mtp_forward(SequenceState& mtp_state, const int32_t* next_ids, const float* hidden,
                            int64_t T, bool all_logits) const;

 private:
  // Rows [row0, row0 + T) of the step belong to one sequence's cache at position pos0.
  struct Segment {
    BlockCache* cache;
    int64_t row0, T, pos0;
    std::vector<BlockCache>* keep = nullptr;  // [T]: the block's state after each row
  };
  // `index`: the block's number for RoutingHook (trunk l, MTP block j: num_layers + j).
  void run_block(const BlockWeights& b, int index, const std::vector<Segment>& segs, std::vector<float>& x,
                 int64_t rows) const;
  void embed(const int32_t* ids, int64_t T, float* x) const;
  std::vector<ForwardResult> heads(const std::vector<float>& x, const std::vector<Segment>& segs,
                                   const std::vector<bool>& all_logits, const std::vector<float>& final_norm) const;
  // Sharded: logits of this rank's vocab rows [rows, Vr] -> every rank's, [rows, V].
  std::vector<float> gather_logits(const std::vector<float>& part, int64_t rows) const;
  const Model& model_;
  const Config* config_;         // model_.config, or the rank's
  const ModelWeights* weights_;  // model_.weights, or the rank's slices
  RankContext rank_;             // all null when not sharded
  bool kv_fp8_ = false;
  kernels::SsmStateFormat ssm_;
};

// The RoutingHook live on this thread, or nullptr: the sharded CPU model gives its `force`
// to every rank's thread, so that all ranks route alike.
const RoutingHook* current_routing_hook();

// Index of the largest value (first one on ties), as torch.argmax.
int32_t argmax(const float* v, int64_t n);

}  // namespace nemotron::model
