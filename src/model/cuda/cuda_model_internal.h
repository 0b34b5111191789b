#pragma once
// CudaModel internals shared by cuda_model*.cpp (CUDA builds only): the device arenas (the
// placing allocator of cuda_buffers.h's walk) and the model's state around the buffers the
// walk places (cuda_detail::DeviceBuffers: uploaded weights, the two block stacks, trunk and
// MTP head, each with its own state slots, paged KV cache and positions, and the step buffers).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kernels/attention_cuda.h"
#include "kernels/linear_cuda.h"
#include "kernels/mamba_cuda.h"
#include "kernels/moe_cuda.h"
#include "model/cuda/cuda_buffers.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

namespace nemotron::model::cuda_detail {

using kernels::ExpertTable;
using kernels::LinearWeight;
using kernels::PagedKvCache;

inline void check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw Error(what + ": " + cudaGetErrorString(e));
}

// The placing allocator of the buffer walk (cuda_buffers.h): one cudaMalloc per arena at the
// counted size; take() places at the arena's cursor; copies and fills go to the device at
// once (synchronous copies: a source may be released as soon as a call returns). Owns the
// arenas, the pinned host buffers and any extra (unplanned) allocation; frees them all at
// destruction.
class DeviceArenas final : public DeviceAllocator {
 public:
  DeviceArenas() = default;
  ~DeviceArenas() override;
  // One cudaMalloc per arena of `counted` (at least 256 bytes); takes place into them from now on.
  // `verbose`: print upload progress (weights_done) against the weights arena's size. Refused
  // first when the arenas together exceed the device's free memory (not on unified memory).
  void reserve(const ArenaTable& counted, bool verbose, bool unified_memory);
  // Page release during the upload: with a checkpoint, weights_done() drops the checkpoint
  // pages copied since the last call (unified memory: they are the same RAM as the device's).
  void release_pages_from(const Checkpoint* checkpoint) { release_from_ = checkpoint; }
  // After the placing walk: every arena consumed exactly as counted (throws naming it).
  void check_consumed() const;

  void copy(void* dst, const void* src, int64_t bytes) override;
  void produce(void* dst, int64_t bytes, const Fill& fill, const void* source, int64_t source_bytes) override;
  void zero(void* dst, int64_t bytes) override;
  void* pinned(int64_t bytes) override;
  void weights_done() override;

  // Outside the plan, for test/debug buffers only (CudaModel::record_routing): its own
  // cudaMalloc, counted in bytes().
  void* alloc(std::size_t n);
  // The arenas (== the counted table's device bytes) plus any alloc().
  int64_t bytes() const { return table_.device() + extra_bytes_; }

 private:
  ArenaTable counted_;
  bool verbose_ = false;
  const Checkpoint* release_from_ = nullptr;
  std::vector<std::pair<const uint8_t*, std::size_t>> sources_;  // copied since weights_done
  std::vector<void*> extra_, host_;
  int64_t extra_bytes_ = 0;
};

// One sequence's rows of a step (trunk forward or MTP forward) and the logit rows it needs:
// none, its last row, or all of them. seen_rows: the leading rows whose ids join the slot's
// penalty seen set (-1: all; a sample_rows > 1 chunk: up to its first sampled row).
struct StepChunk {
  int slot = 0;
  const int32_t* ids = nullptr;
  int64_t T = 0;
  LogitsOut logits = LogitsOut::Last;
  int64_t seen_rows = -1;
};

}  // namespace nemotron::model::cuda_detail

namespace nemotron::model {

// The model's state: the buffers the walk placed (DeviceBuffers, read by name by the step
// code), the arenas they live in, streams, events, decode graphs and host bookkeeping.
struct CudaModel::Impl : cuda_detail::DeviceBuffers {
  using DeviceArenas = cuda_detail::DeviceArenas;
  using DBlock = cuda_detail::DBlock;
  using Stack = cuda_detail::Stack;
  using StepChunk = cuda_detail::StepChunk;

  const Model& model;
  CudaModelOptions opt;
  CudaRankComms comms;  // tensor / expert parallel (sharded()); null otherwise
  DeviceArenas arena;
  cudaStream_t stream = nullptr;
  // Second stream for work that can overlap the main one (the MoE shared expert and latent
  // input projection), forked and joined through fork_ev / latent_ev / join_ev (reused by
  // every block; captured into graphs as edges).
  cudaStream_t side_stream = nullptr;
  cudaEvent_t fork_ev = nullptr, latent_ev = nullptr, join_ev = nullptr;
  double upload_s = 0;
  int64_t weight_bytes = 0;  // the weights arena

  std::vector<bool> in_use;

  // inputs_done (recorded after the step's host->device copies) guards the pinned buffers
  // (h_step, h_sample_rows, block_tables_host) against being rewritten while a copy is pending.
  cudaEvent_t inputs_done = nullptr;
  // The step begun by begin_step and not yet finished: its chunks, the logit rows each
  // chunk's step computed, each chunk's sampled rows (their indices in the sampler's outputs,
  // in row order; empty: none), the sample rows enqueued.
  struct Pending {
    bool active = false;
    uint64_t serial = 0;  // begin_step's count, for Kept::serial
    std::vector<model::StepChunk> chunks;
    std::vector<LogitsOut> computed;
    std::vector<std::vector<int32_t>> sample_at;
    int64_t L = 0, n_samples = 0;
    bool logprobs = false;  // some row asked for top logprobs
    bool masks = false;     // some row has an allowed-token mask (constrained decoding)
  } pending;
  // Constrained decoding in decode graphs: every graph masks its B rows (the kernel skips a row
  // whose d_mask_rows entry is -1), so d_mask_rows [0, B) must be current at each replay.
  // Entries [0, mask_rows_stale) may hold a mask index of an earlier step, or nothing yet (the
  // arena is not cleared; the initial value says all of them); a step without masks resets
  // them to -1 first (pack_samples). capturing: decode_graph is capturing a graph.
  int64_t mask_rows_stale = INT64_MAX;
  bool capturing = false;
  // The sampler launches of the step being enqueued: launch w samples the rows
  // [sample_waves[w], sample_waves[w + 1]) of d_sample_rows (one launch unless a penalized
  // chunk samples several rows: its row j goes to launch j, after the draws of rows < j).
  std::vector<int64_t> sample_waves{0, 0};

  // Speculative decoding (cuda_model_state.cpp). kept[slot]: the slot's keep_states chunk of
  // the last step it ran (valid until the slot's next step, its roll_back or release, or a
  // later step's eviction of its entry): its entry of the spec_* buffers, start position, rows,
  // sampled rows S (0: none; the first is row T - S), whether its sequence is penalized, its
  // ids and (from finish_step) its draws.
  struct Kept {
    bool valid = false;
    int entry = -1;
    uint64_t serial = 0;
    int64_t pos0 = 0, T = 0, S = 0;
    bool penalized = false;
    std::vector<int32_t> ids, draws;
  };
  std::vector<Kept> kept;
  std::vector<int> free_entries;
  // A roll_back whose Mamba and penalty part is not enqueued yet (settle() does, batched over
  // slots, before the next step or snapshot): restore entry's states into slot, replay its
  // first n saved rows; penalized: restore the seen words, mark seen_ids, uncount drop_ids.
  struct Replay {
    int slot = 0, entry = 0;
    int64_t n = 0;
    int64_t pos0 = 0;  // the slot's position before the kept chunk
    bool penalized = false;
    std::vector<int32_t> seen_ids, drop_ids;
  };
  std::vector<Replay> replays;
  uint64_t step_serial = 0;
  bool keep_step = false;  // the step being enqueued has keep_states chunks (eager)
  int64_t keep_rows = 0;   // while enqueuing it: rows whose in_proj output mamba_block saves (spec_table)

  // Prefix-cache snapshots (cuda_model_state.cpp): id -> trunk and MTP positions and the pool
  // units holding it (SnapshotLayout order); the units no snapshot holds.
  struct Snapshot {
    int64_t pos = 0, mtp_pos = 0;
    std::vector<int32_t> units;
  };
  cuda_detail::SnapshotLayout snap_layout;
  std::map<uint64_t, Snapshot> snapshots;
  std::vector<int32_t> free_units;
  // Decode graphs: graphs[B] replays a trunk step of B single-token chunks (null until used);
  // draft_graphs[B] an MTP drafting step of B single-token chunks (models with an MTP head;
  // B <= kMaxSpecGraphSeqs, cuda_memory.h).
  std::vector<cudaGraphExec_t> graphs, draft_graphs;
  // Verify graphs: verify_graphs[{B, T}] replays a trunk step of B keep_states chunks of T rows
  // that each sample every row in one sampler launch (speculative decoding's verify steps),
  // for B <= kMaxSpecGraphSeqs (cuda_memory.h). verify_T: the step being enqueued is such a
  // step of T-row chunks (begin_step; 0 otherwise).
  std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> verify_graphs;
  int64_t verify_T = 0;
  // Kernel nodes of the captured graphs and the device memory their instantiation took (free
  // memory before - after; the driver allocates in 2 MiB granules), summed over graphs.
  int64_t graph_nodes = 0, graph_bytes = 0;

  // Last call: rows, and (when recording) the routing of every MoE block it ran:
  // route_log [blocks, max_step_tokens, k] on the device, route_rows[block] rows kept.
  int64_t last_rows = 0;
  // The step's leading single-row chunks (prepare_step): rows [0, lead_single) are one
  // sequence each, d_slots[i] row i's slot; mamba_block runs them on the fused decode kernel.
  int64_t lead_single = 0;
  // The step's chunks of at least kAttentionRunRows rows (prepare_step): their attention runs
  // on the tensor-core kernel (paged_attention_runs_cuda), the other rows on paged_attention_cuda.
  static constexpr int64_t kAttentionRunRows = 32;
  std::vector<kernels::AttentionRun> attn_runs;
  bool record_routing = false;
  int32_t* route_log = nullptr;
  std::vector<int64_t> route_rows;

  // Profiling (CudaModel::set_profiling): marks of the step being enqueued (op name, weight
  // bytes, event recorded after the op), the event before its first op, and the totals.
  struct Mark {
    const char* prefix;  // "mtp." for the MTP head's steps, else ""
    const char* op;
    double bytes;
    cudaEvent_t ev;
  };
  bool profiling = false, prof_active = false;
  const char* prof_prefix = "";
  cudaEvent_t prof_start = nullptr;
  std::vector<Mark> marks;
  std::vector<cudaEvent_t> prof_events;  // pool, reused by every step
  std::vector<CudaModel::OpTime> prof_totals;

  Impl(const Model& m, const CudaModelOptions& o, CudaRankComms c) : model(m), opt(o), comms(c) {}
  bool sharded() const { return !opt.tp_vocab.empty(); }
  ~Impl() {
    for (cudaEvent_t e : prof_events) cudaEventDestroy(e);
    if (prof_start) cudaEventDestroy(prof_start);
    for (const auto* list : {&graphs, &draft_graphs})
      for (cudaGraphExec_t g : *list)
        if (g) cudaGraphExecDestroy(g);
    for (const auto& [shape, g] : verify_graphs)
      if (g) cudaGraphExecDestroy(g);
    if (inputs_done) cudaEventDestroy(inputs_done);
    if (fork_ev) cudaEventDestroy(fork_ev);
    if (join_ev) cudaEventDestroy(join_ev);
    if (latent_ev) cudaEventDestroy(latent_ev);
    if (side_stream) cudaStreamDestroy(side_stream);
    if (stream) cudaStreamDestroy(stream);
  }

  // cuda_model_upload.cpp: the slots' host bookkeeping (positions, page lists, free pages).
  void init_slots();
  // cuda_model_parallel.cpp (sharded models; no-ops otherwise). embed: x [R, H] fp32 = the
  // embedding rows of d_ids (a vocab shard: this rank's rows, then the TP all-reduce).
  // reduce_block: a block's output partial y [R, H] summed over its group (TP, or the world for
  // MoE blocks). gather_logits: the L rows of this rank's vocab columns (logits_part) gathered
  // from the TP group into logits [L, V].
  void embed(int64_t R);
  void reduce_block(LayerKind kind, int64_t R);
  void gather_logits(int64_t L);
  // cuda_model_step.cpp
  // Validates the chunks, takes KV pages in `st` for their new positions, uploads the step
  // inputs; returns the step's rows and fills logit_rows (rows that need logits).
  int64_t prepare_step(Stack& st, const std::vector<StepChunk>& chunks, int64_t& logit_rows);
  // What a block leaves to the next norm besides y: a second BF16 addend (shared experts'
  // output) and/or the pending weighted combine of k routed-expert outputs (yk, route_w).
  struct Folded {
    const uint16_t* y2 = nullptr;
    int64_t combine_k = 0;
  };
  // The split-K scratch (LinearCudaArgs::workspace) of a linear enqueued on stream `s`.
  void use_split_ws(kernels::LinearCudaArgs& a, cudaStream_t s) const {
    a.workspace = s == side_stream ? split_ws_side : split_ws;
    a.workspace_bytes = split_ws_bytes;
  }
  // One linear (kernels/linear_cuda.h) on `on` (default: the main stream), profiled as `op`.
  void linear(const char* op, const kernels::LinearWeight& w, const uint16_t* xin, int64_t rows, void* out,
              kernels::OutType t = kernels::OutType::BF16, bool relu2 = false, cudaStream_t on = nullptr);
  // The fields of a Mamba kernel's arguments (MambaDecodeArgs, SsmScanArgs) that come from the
  // layer and the config: its weights and state slots, the state's storage, dims, dt clamp.
  template <class Args>
  void mamba_layer_args(const DBlock& b, Args& a) const {
    const Config& c = model.config;
    a.state = b.m.ssm_state;
    a.state_dtype = opt.ssm_state.dtype;
    a.state_stochastic = opt.ssm_state.stochastic;
    a.state_layer = static_cast<uint32_t>(b.index);
    a.dt_bias = b.m.dt_bias;
    a.A = b.m.A;
    a.D = b.m.D;
    a.heads = c.mamba_num_heads;
    a.head_dim = c.mamba_head_dim;
    a.state_dim = c.ssm_state_size;
    a.groups = c.n_groups;
    a.dt_min = static_cast<float>(c.time_step_limit_min);
    a.dt_max = static_cast<float>(c.time_step_limit_max);
  }
  // The conv of a Mamba layer over varlen rows (the layer's part of ConvPrefillArgs).
  kernels::ConvPrefillArgs conv_prefill_args(const DBlock& b) const {
    kernels::ConvPrefillArgs a;
    a.state = b.m.conv_state;
    a.w = b.m.conv_w;
    a.bias = b.m.conv_b;
    a.C = model.config.conv_dim();
    a.K = model.config.conv_kernel;
    return a;
  }
  // The blocks of a step, one per kind (cuda_block_*.cpp), each from u [R, H] to y [R, H].
  void mamba_block(const DBlock& b, int64_t R, int64_t B);
  void attention_block(const Stack& st, const DBlock& b, int64_t R);
  Folded moe_block(const DBlock& b, int64_t R, bool last);  // last: the stack's last block
  void mlp_block(const DBlock& b, int64_t R);
  // Runs the stack's blocks over the step's rows (residual in x); returns the last block's
  // output (BF16 [R, H], not yet added to x) and sets *y2_last to a second BF16 addend of it
  // (the shared experts' output of a last MoE block; else nullptr), for head().
  const uint16_t* run_stack(const Stack& st, int64_t R, int64_t B, const uint16_t** y2_last);
  // Enqueues the final add + norm (fp32 rows kept in uf) and lm_head over the L logit rows
  // (fp32 into `logits`).
  // `draft`: the MTP head's drafting steps read lm_head_draft where there is one.
  void head(const uint16_t* final_norm, const uint16_t* y_prev, const uint16_t* y2_prev, int64_t R, int64_t L,
            bool draft = false);
  // Enqueues one MTP head step over `chunks` (prepare_step on the head's stack; hidden[i]: host
  // fp32 [chunks[i].T, H], the head's second input, staged in h_hid_in and uploaded into
  // hid_in): logits of its L logit rows in `logits`, its output rows (after the head's final
  // norm) in uf. cuda_model_mtp.cpp
  void enqueue_mtp(const std::vector<StepChunk>& chunks, const std::vector<const float*>& hidden, int64_t& L,
                   bool draft = false);
  // The head step's device work over the inputs prepare_step uploaded and hid_in (R rows, B
  // chunks, L logit rows); `draft` adds the argmax of the L rows into d_tokens.
  void enqueue_mtp_body(int64_t R, int64_t B, int64_t L, bool draft);
  // Validates mtp_draft / mtp_feed inputs (rows, pointers, slots in range and distinct, no step
  // pending); returns their rows.
  int64_t check_mtp_inputs(const std::vector<Backend::DraftInput>& inputs, const char* what) const;
  // Copies the L logit rows to the host (one vector per chunk), waits for the stream and
  // advances the chunks' positions in `st` (the MTP head).
  std::vector<std::vector<float>> collect_logits(Stack& st, const std::vector<StepChunk>& chunks, int64_t L);
  // cuda_model_graph.cpp
  // Enqueues the trunk step over the inputs prepare_step uploaded (R rows, B chunks, L logit
  // rows), the penalty marks of its input rows (d_mark_seq: all of them but the drafts of a
  // sample_rows > 1 chunk) and, with n_samples > 0, the masks and sampling of the first
  // n_samples rows of d_sample_rows: eagerly, or, for B single-token chunks with graphs on, by
  // replaying (capturing first if new) the graph for B, which always samples B rows.
  void run_trunk(const std::vector<StepChunk>& chunks, int64_t R, int64_t L, int64_t n_samples);
  void enqueue_trunk(int64_t R, int64_t B, int64_t L, int64_t n_samples);
  // Does a step of this shape replay the decode graph? A verify graph (after pack_samples)?
  bool graph_step(int64_t R, int64_t B, int64_t L, int64_t n_samples) const;
  bool verify_graph_step(int64_t R, int64_t B, int64_t L, int64_t n_samples) const;
  // cuda_model_sampling.cpp
  // Packs h_sample_rows for `chunks` (the rows of the chunks that sample; with `all_rows`, one
  // row per chunk, greedy placeholders for the others), in sampler waves (sample_waves), and
  // each masked row's allowed-token mask (h_masks, h_mask_rows; pending.masks), and queues
  // their copies; returns the count.
  int64_t pack_samples(const std::vector<model::StepChunk>& chunks, const std::vector<StepChunk>& steps,
                       bool all_rows);
  // The masks (one launch over every sampled row: they are known before any draw), then one
  // sampler launch per wave.
  void enqueue_sampling(int64_t n_samples);
  // Queues the device-to-host copies of the sampled ids (and top logprobs when asked).
  void enqueue_sample_copies();
  void reset_penalties(int slot);
  cudaGraphExec_t decode_graph(int64_t B);
  // The MTP drafting step of B single-token chunks (enqueue_mtp_body(B, B, B, true)) as a graph.
  cudaGraphExec_t draft_graph(int64_t B);
  // The verify step of B chunks of T rows (enqueue_trunk(B T, B, B T, B T), keep_rows as set).
  cudaGraphExec_t verify_graph(int64_t B, int64_t T);
  // Captures what `enqueue` puts on the stream into an instantiated graph (`what` names it in
  // errors) and counts its nodes and instantiation memory.
  template <class Enqueue>
  cudaGraphExec_t capture_graph(Enqueue&& enqueue, const std::string& what);
  // cuda_model_profile.cpp: mark() records the end of an op while a profiled step is being
  // enqueued (no-op otherwise); prof_begin() starts one, prof_end() (after the stream
  // synchronized) adds its op times to prof_totals.
  void mark(const char* op, double weight_bytes = 0);
  void prof_begin();
  void prof_end();
  void reset_slot(Stack& st, int slot);
  void free_slot(Stack& st, int slot);
  // cuda_model_state.cpp
  void init_state_pools();  // kept / entries / snapshot units bookkeeping (constructor)
  // Copies `list` on the stream: uploaded into copy_table in pieces, copy_blocks_cuda each.
  void copy_blocks(const std::vector<kernels::CopyBlock>& list);
  // Appends (a, b, bytes) split into pieces of at most kCopyPiece: a -> b, or b -> a when !forward.
  static void add_copy(std::vector<kernels::CopyBlock>& list, const void* a, void* b, int64_t bytes, bool forward);
  // Uploads n int32 values to aux + at (pageable: the source may go when this returns).
  void upload_aux(int64_t at, const int32_t* v, int64_t n);
  // Bytes of one slot's SSM state in one Mamba block (Hm * P * N elements of opt.ssm_state).
  int64_t ssm_slot_bytes() const {
    const Config& c = model.config;
    return c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size * kernels::state_dtype_bytes(opt.ssm_state.dtype);
  }
  // Snapshot header field 1: the K/V element bytes + 256 * the SSM state's StateDType.
  int64_t element_code() const { return (opt.kv_fp8 ? 1 : 2) + 256 * static_cast<int64_t>(opt.ssm_state.dtype); }
  void cut(Stack& st, int slot, int64_t pos);  // position `pos`, pages past it freed
  void drop_kept(int slot);                    // frees the slot's entry and queued replay
  // For a step whose keep_states chunks are known (begin_step, after prepare_step): takes an
  // entry per keep chunk, enqueues the saves of their slots' states and uploads the row-save
  // table (keep_rows).
  void begin_keep(const std::vector<model::StepChunk>& chunks, const std::vector<StepChunk>& steps);
  void settle();  // enqueues the queued roll-backs' Mamba replays and penalty repairs
  // The copies between `slot` and snapshot `snap` (save: slot -> pool; load: pool -> slot).
  void snapshot_copies(int slot, const Snapshot& snap, bool save, std::vector<kernels::CopyBlock>& list) const;
  // export/import_snapshot: the bytes of snapshot `snap` that hold state, as (pool address,
  // bytes) pieces (split at unit boundaries) in the exported order: the packed Mamba states,
  // then per K/V page j the trunk's attention blocks' K and V pages, then, for pages below
  // mtp_pos, the MTP head's (SnapshotLayout order; unit padding left out).
  std::vector<std::pair<uint8_t*, int64_t>> snapshot_pieces(const Snapshot& snap) const;
};

}  // namespace nemotron::model
