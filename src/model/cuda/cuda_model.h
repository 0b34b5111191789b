#pragma once
// The model on one CUDA device: weights uploaded in their checkpoint format (NVFP4 stays
// 4-bit), BF16 activations with an fp32 residual stream, per-sequence state slots (fp32 conv
// windows and SSM states) and a paged KV cache, all in three device allocations sized by the
// memory planner's own count (cuda_buffers.h, cuda_memory.h). One forward call runs a batch
// of sequence chunks (prefill chunks and decode tokens mixed), like CpuModel::forward_batch,
// and is tested against it and against the transformers fixtures.
//
// Built only with the CUDA backend (NEMOTRON_HAVE_CUDA); cuda_backend_available() says so
// at run time.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/backend.h"
#include "model/checkpoint/weights.h"

namespace nemotron::model {

bool cuda_backend_available();

struct CudaModelOptions {
  int device = 0;
  int max_seqs = 8;                 // state slots
  int64_t max_step_tokens = 2048;   // rows of one forward call
  int64_t kv_tokens = 65536;        // KV positions (all sequences together), in pages of 16
  bool kv_fp8 = false;              // FP8 E4M3 KV cache (the layers' k/v scales) instead of BF16
  kernels::SsmStateFormat ssm_state; // SSM state slots in fp32, or 16-bit (kernels/state_round.h)
  bool verbose = true;              // print upload progress and bandwidth
  // Steps ask for logits only where rows sample (the engine's steps: no LogitsOut::All prompt
  // chunks): the logits buffer then holds the sampler's rows, max_seqs + spec_seqs *
  // (spec_rows - 1), instead of max_step_tokens rows (1 GiB for a 131K vocabulary at 2,048
  // rows); a step or head call asking for more logit rows is refused.
  bool sampled_logits_only = false;
  // MoE router logits from the fp32 normed rows instead of their BF16 rounding (which the
  // experts read). Measured on the MoE fixtures it does not reduce routing flips against the
  // fp32 reference (they come from the BF16 trunk), so the BF16 GEMV path stays the default.
  bool router_fp32 = false;
  // Steps whose chunks are all single decode tokens (T = 1) replay a CUDA graph captured once
  // per batch size B (lazily, on its first such step) instead of launching every kernel; same
  // kernels and launch shapes as the eager path, so the same results bit for bit. Off: eager.
  bool cuda_graphs = true;
  // Speculative decoding's roll-back (keep_states chunks, roll_back): keep_states chunks per
  // step (at most max_seqs; 0: no roll-back, can_roll_back() is false) and rows per such chunk.
  // Each chunk keeps its slot's Mamba states and penalty seen words from before the chunk and
  // its rows' in_proj output of every Mamba layer (cuda_buffers.h, Use::Speculation).
  int spec_seqs = 0;
  int64_t spec_rows = 17;
  // With spec_seqs > 0 and an MTP head: the head's drafts read a per-tensor FP8 copy of a BF16
  // lm_head (cuda_buffers.h: lm_head_draft; vocab x hidden bytes more in the speculation room).
  // Scoring (mtp_forward) and the trunk keep the checkpoint's lm_head.
  bool fp8_draft_head = true;
  // Prefix-cache snapshots: bytes of the snapshot pool, rounded down to whole units
  // (cuda_buffers.h: SnapshotLayout; 0: none, can_snapshot() is false).
  int64_t prefix_cache_bytes = 0;
  // Tensor / expert parallel: this model is one rank of a sharded model (cuda_ranks.h), built
  // over its RankShard's config and weights. tp_vocab: every TP rank's vocab rows, in TP rank
  // order (empty: unsharded); this rank holds tp_vocab[tp_rank] of the embedding and lm_head
  // (the lm_head padded to the widest range; logits are all-gathered). Routed experts: this
  // rank holds [expert_lo, expert_hi) (null pointers for the others; the combine skips them).
  std::vector<Range> tp_vocab;
  int tp_rank = 0;
  int64_t expert_lo = 0, expert_hi = 0;
};

// The CudaModelOptions of a Backend's options (make_backend; device 0, no shard).
CudaModelOptions cuda_model_options(const BackendOptions& options);

class CudaCommunicator;
// A rank's communicators (cuda_communicator.h): its TP group (attention, Mamba, MLP blocks,
// embedding, logits) and the world (MoE blocks). Both null: unsharded.
struct CudaRankComms {
  CudaCommunicator* tp = nullptr;
  CudaCommunicator* world = nullptr;
};

// One sequence's part of a step: `T` tokens for the sequence in state slot `slot`.
struct CudaChunk {
  int slot = 0;
  const int32_t* ids = nullptr;
  int64_t T = 0;
  bool all_logits = false;          // logits for every row, or the last one only
};

// The model behind the one model interface (model/backend.h). begin_step enqueues the step
// -- step inputs, the trunk (a CUDA graph for decode-only steps), penalty bookkeeping and
// sampling (kernels/sampling_cuda.h) -- and the device-to-host copies of the sampled ids and
// requested logprobs; finish_step waits and copies requested logits.
class CudaModel final : public Backend {
 public:
  CudaModel(const Model& model, const CudaModelOptions& options, CudaRankComms comms = {});
  ~CudaModel() override;
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const Model& model() const override;
  const char* device() const override { return "cuda"; }
  int slots() const override;
  // A fresh sequence: zeroed state slot, empty KV, empty penalty state. Throws when all slots
  // are in use.
  int acquire_slot() override;
  void release_slot(int slot) override;
  int64_t position(int slot) const override;  // tokens processed so far

  void begin_step(const std::vector<StepChunk>& chunks) override;
  std::vector<StepOutput> finish_step() override;
  // Speculative decoding (cuda_model_state.cpp). A step with keep_states chunks runs eagerly
  // (never a decode graph) and saves, per such chunk, the slot's Mamba states and penalty seen
  // words before it and every Mamba layer's in_proj rows of it. roll_back cuts K/V by length
  // (pages past the new end go back to the free list) and queues the Mamba replay: the saved
  // states are copied back and the kept rows re-run through the same conv and sequential scan
  // kernels (bit-identical to the states the chunk's step had after those rows), batched over
  // every rolled-back slot at the start of the next step (or before a snapshot); the penalty
  // state gets its seen words back, the kept rows' marks again, and the dropped draws' counts
  // taken back. Rows of a sample_rows > 1 chunk draw in order, one sampler launch per row index
  // (so a penalized row sees the previous rows' draws). keep_limits: options.spec_seqs chunks
  // (at most max_seqs) of options.spec_rows rows.
  bool can_roll_back() const override;
  KeepLimits keep_limits() const override;
  void roll_back(int slot, int64_t pos) override;
  void mtp_roll_back(int slot, int64_t pos) override;
  // Prefix-cache snapshots (cuda_model_state.cpp): copies, not shared pages. A snapshot takes
  // snapshot_bytes(pos) of the snapshot pool (options.prefix_cache_bytes): whole units of the
  // pool holding the slot's Mamba states (both stacks) and its K/V pages of [0, pos) for the
  // trunk and [0, mtp_position) for the MTP head (cuda_buffers.h: SnapshotLayout). Loading
  // copies them into a fresh slot's new pages.
  bool can_snapshot() const override;
  int64_t snapshot_bytes(int64_t pos) const override;
  int64_t snapshot_capacity() const override;
  void save_snapshot(int slot, uint64_t id) override;
  void load_snapshot(uint64_t id, int slot) override;
  void drop_snapshot(uint64_t id) override;
  // A snapshot as bytes (--prefix-cache-dir) and back: a header naming the layout (unit, page
  // bytes, K/V blocks, Mamba bytes, positions), then the snapshot's Mamba bytes and its K/V
  // pages (cuda_model_state.cpp). Import takes free units of the pool and throws when they do
  // not suffice or the header is not this model's layout.
  std::vector<uint8_t> export_snapshot(uint64_t id) const override;
  void import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) override;
  void observe_prompt(int slot, const int32_t* ids, int64_t n) override;

  // Shorthands over step() for tests and benchmarks.
  // forward: each chunk's logits (fp32 [rows, V]: every row with all_logits, else the last)
  // on the host. Throws nemotron::Error on invalid input (bad ids, too many rows, KV
  // exhausted). Steps of single decode tokens (every T = 1) run as a CUDA graph when
  // options.cuda_graphs (and routing is not being recorded or profiled).
  std::vector<std::vector<float>> forward(const std::vector<CudaChunk>& chunks);
  // forward_greedy: each chunk's greedy next token (the argmax of its last row, first index
  // on ties, as model::argmax), computed on the device; only the ids are copied back.
  // all_logits is ignored.
  std::vector<int32_t> forward_greedy(const std::vector<CudaChunk>& chunks);

  // Turns the decode graphs (CudaModelOptions::cuda_graphs) on or off for later steps;
  // captured graphs are kept.
  void set_cuda_graphs(bool on);

  // The MTP head (CpuModel::mtp_forward on the GPU; requires config.has_mtp()) for the
  // sequence in `slot`, with its own KV cache and position (mtp_position) in that slot: row i
  // is fed (token next_ids[i], hidden row i), hidden fp32 [T, H] on the host: the trunk's
  // post-norm_f rows (last_hidden() after forward) or, when chaining drafts, the head's own
  // output (last_hidden() after mtp_forward). Returns logits fp32 [rows, V] (every row, or the
  // last one). acquire_slot resets the head's state too.
  std::vector<float> mtp_forward(int slot, const int32_t* next_ids, const float* hidden, int64_t T,
                                 bool all_logits) override;
  int64_t mtp_position(int slot) const override;
  // Backend::mtp_draft batched: per draft one head step over every input (its pending rows,
  // then one row per input), the argmax of each input's last row on the device, only the ids
  // copied back; the next draft's hidden row is the head's own output row. Inputs whose rows
  // do not fit one step take Backend's one-at-a-time path.
  std::vector<std::vector<int32_t>> mtp_draft(const std::vector<DraftInput>& inputs, int K) override;
  // Backend::mtp_feed: the inputs packed into head steps of up to max_step_tokens rows (an
  // input longer than that alone, in pieces), no logit rows (the lm_head is skipped).
  void mtp_feed(const std::vector<DraftInput>& inputs) override;

  // The final-normed hidden rows (fp32 [rows, H], every row of the step in chunk order) of the
  // last forward() (after norm_f) or mtp_forward() (after the head's final norm).
  std::vector<float> last_hidden() const override;

  // Test/debug: while on, every MoE block records the expert ids it selected; routing()[b] is
  // block b's [rows, k] from the last forward()/mtp_forward() call if that call ran it (empty
  // otherwise). Block numbering as model::RoutingHook: trunk block l = l, MTP block j =
  // num_layers + j; rows in chunk order.
  void record_routing(bool on) override;
  std::vector<std::vector<int32_t>> routing() const override;

  // Profiling (bench --profile): while on, steps run eagerly (no graphs); each trunk step
  // starts behind a device-side wait (so the host has enqueued it all before it runs) and an
  // event after every op times it. profile() sums the ops of all trunk steps since the last
  // set_profiling(true), in order of first appearance; weight_bytes = checkpoint bytes the
  // op's linear weights hold (0 for other ops).
  struct OpTime {
    std::string op;
    double ms = 0;
    int64_t calls = 0;
    double weight_bytes = 0;
  };
  void set_profiling(bool on);
  std::vector<OpTime> profile() const;

  // Decode graphs captured so far: their nodes and the device memory their instantiation
  // took (measured as the change in free device memory), summed.
  int64_t graph_nodes() const;
  int64_t graph_device_bytes() const;

  // Device memory this model allocated: its three arenas (weights; cache: state slots, KV
  // pages, block tables; step buffers), one cudaMalloc each, not the graphs. Equals
  // cuda_memory(model, options, sms).allocated() after construction (record_routing adds its
  // own buffer later).
  int64_t device_bytes() const;

  double upload_seconds() const;     // construction time: weight upload, state zeroed
  int64_t weight_bytes() const;      // the weights arena (weights as uploaded)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nemotron::model
