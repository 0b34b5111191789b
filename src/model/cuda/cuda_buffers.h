#pragma once
// Every device buffer of a CudaModel, from ONE walk (walk_device_buffers) that runs twice:
//   - counting (DeviceAllocator itself; no device, no copies, no conversions, so it runs in CI
//     without a GPU): the sizes of every sub-allocation, summed per use and per arena. The
//     memory planner plans with these sums (cuda_memory.h);
//   - placing (CudaModel's DeviceArenas, cuda_model_internal.h): one cudaMalloc per arena at
//     the counted size, each sub-allocation placed at the arena's cursor and filled (weights
//     copied from the checkpoint, state and block tables zeroed); at the end every arena must
//     be consumed exactly.
// Three arenas, one per lifetime/kind of data:
//   weights  embeddings, lm_head, norms, every block's weights, expert pointer tables;
//   cache    KV pages, conv/SSM state slots, block tables (everything per sequence slot),
//            speculative decoding's kept states and rows, the prefix-cache snapshot pool;
//   step     activations, attention and MoE workspaces, step inputs, sampling parameters,
//            outputs and workspace.
// Each sub-allocation is rounded up to kArenaAlign = 256 bytes (at least 256), so every
// address is 256-byte aligned (cudaMalloc returns 256-byte aligned bases). Page-locked host
// buffers are counted separately (pinned_host) and allocated one by one.
//
// Adding a buffer: one line in walk_device_buffers (cuda_buffers.cpp), e.g.
//   d.penalties = a.array<int32_t>(Use::State, S * V);   // cache arena, per slot
// Both modes see it; the plan, the allocation and CudaModel::device_bytes() follow.
//
// CUDA-free: compiled into every build (the planner needs it without a device).
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/attention_cuda.h"
#include "kernels/copy_cuda.h"
#include "kernels/linear.h"
#include "kernels/moe_cuda.h"
#include "kernels/sampling_cuda.h"
#include "model/checkpoint/weights.h"
#include "model/cuda/cuda_model.h"

namespace nemotron::model::cuda_detail {

using kernels::ExpertTable;
using kernels::LinearWeight;
using kernels::PagedKvCache;

inline constexpr int64_t kArenaAlign = 256;
inline constexpr int64_t kPage = 16;  // KV positions per page

inline int64_t round_up32(int64_t v) { return (v + 31) / 32 * 32; }

enum class ArenaKind : int { Weights, Cache, Step };
inline constexpr int kArenaKinds = 3;
const char* arena_name(ArenaKind k);  // "weights", "cache", "step"

// What a sub-allocation holds (the planner's breakdown); each use lives in one arena.
enum class Use : int {
  Weights,             // weights arena
  State,               // cache: conv windows, SSM states and sampler penalty state of every slot
  Kv,                  // cache: K and V pages of every attention block
  Tables,              // cache: block tables
  Activations,         // step: step inputs, activations, MoE workspace, sampling buffers, copy tables
  AttentionWorkspace,  // step: paged attention's split-K partials
  Speculation,         // cache: keep_states chunks' saved Mamba states, seen words and in_proj rows
  Snapshots,           // cache: the prefix-cache snapshot pool
};
inline constexpr int kUses = 8;
ArenaKind arena_of(Use u);

// Bytes taken so far, per use and per arena (each sub-allocation rounded to kArenaAlign).
struct ArenaTable {
  int64_t by_use[kUses] = {};
  int64_t arena[kArenaKinds] = {};  // == the sums of by_use over the arena's uses
  int64_t pinned_host = 0;          // page-locked host buffers (in 4 KiB pages)
  int64_t takes = 0;                // sub-allocations
  int64_t use(Use u) const { return by_use[static_cast<int>(u)]; }
  int64_t of(ArenaKind k) const { return arena[static_cast<int>(k)]; }
  int64_t device() const { return arena[0] + arena[1] + arena[2]; }
};

// The walk's only way to device memory. This base class counts: take() returns nullptr and
// the filling calls do nothing (a fill callback is never run). The placing subclass sets the
// arena bases and implements the fills.
class DeviceAllocator {
 public:
  DeviceAllocator() = default;
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;
  virtual ~DeviceAllocator() = default;

  bool placing() const { return base_[0] != nullptr; }
  const ArenaTable& table() const { return table_; }

  // `bytes` (>= 0) at the cursor of `use`'s arena: its device address, or nullptr when counting.
  void* take(Use use, int64_t bytes);
  template <class T>
  T* array(Use use, int64_t count) {
    return static_cast<T*>(take(use, count * static_cast<int64_t>(sizeof(T))));
  }

  // Host -> device copy of `bytes` from `src` (checkpoint bytes or a host array).
  virtual void copy(void* /*dst*/, const void* /*src*/, int64_t /*bytes*/) {}
  // `bytes` built on the host by fill(buffer) (a conversion or padding), then copied to dst;
  // [source, source + source_bytes) are the checkpoint bytes fill reads (for page release).
  using Fill = std::function<void(uint8_t* host)>;
  virtual void produce(void* /*dst*/, int64_t /*bytes*/, const Fill& /*fill*/, const void* /*source*/ = nullptr,
                       int64_t /*source_bytes*/ = 0) {}
  virtual void zero(void* /*dst*/, int64_t /*bytes*/) {}
  // Zeroed page-locked host memory, counted in pinned_host; nullptr when counting.
  virtual void* pinned(int64_t bytes);
  // Every weight taken so far is on the device (called after the head weights and after
  // each block): the placing allocator may release their checkpoint pages here.
  virtual void weights_done() {}

 protected:
  ArenaTable table_;
  uint8_t* base_[kArenaKinds] = {};
};

struct DMamba {
  LinearWeight in_proj, out_proj;
  uint16_t *conv_w = nullptr, *conv_b = nullptr, *norm = nullptr;
  float *dt_bias = nullptr, *A = nullptr, *D = nullptr;
  float* conv_state = nullptr;   // fp32 [slots, K-1, C]
  uint8_t* ssm_state = nullptr;  // [slots, Hm, P, N] elements of the options' SSM state type
};
struct DAttn {
  LinearWeight q, k, v, o;
  PagedKvCache cache;
};
struct DMoE {
  LinearWeight gate, shared_up, shared_down, fc1, fc2;
  float* bias = nullptr;
  ExpertTable up, down;
};
struct DBlock {
  LayerKind kind = LayerKind::Mamba;
  int index = 0;  // RoutingHook numbering: trunk block l = l, MTP block j = num_layers + j
  int mamba_index = -1;  // Mamba blocks: ordinal among the stack's Mamba blocks
  uint16_t* norm = nullptr;
  DMamba m;
  DAttn a;
  DMoE e;
  LinearWeight mlp_up, mlp_down;
};

// A stack of blocks with its own per-slot positions and paged KV cache (pages of kPage
// positions; block_tables [max_seqs, num_pages] maps a slot's logical page to a physical one
// in every attention block of the stack). The walk sets blocks and the tables; pos, pages and
// free_pages are host bookkeeping (CudaModel's constructor fills them).
struct Stack {
  std::vector<DBlock> blocks;
  std::vector<int64_t> pos;                 // per slot
  std::vector<std::vector<int32_t>> pages;  // per slot, in logical order
  std::vector<int32_t> free_pages;
  int32_t* block_tables_host = nullptr;  // pinned mirror of block_tables
  int32_t* block_tables = nullptr;
};

// What the walk places: the uploaded weights, the cache and the step buffers. CudaModel::Impl
// derives from it (the step code reads these members by name).
struct DeviceBuffers {
  // Intermediate widths rounded up to 32 (routed experts, shared expert, dense MLP).
  int64_t I_pad = 0, Is_pad = 0, Imlp_pad = 0;
  int64_t num_pages = 0;  // per attention block, in each stack

  kernels::LinearWeight embeddings, lm_head;
  // The MTP head's draft lm_head: a per-tensor FP8 copy of a BF16 lm_head (half the bytes of
  // each draft step), in the speculation room (Use::Speculation) when the model speculates and
  // CudaModelOptions::fp8_draft_head; data nullptr otherwise (drafts read lm_head).
  kernels::LinearWeight lm_head_draft;
  uint16_t* norm_f = nullptr;
  Stack trunk, mtp;
  // MTP head (when config.has_mtp()): input norms, eh_proj [H, 2H], final norm.
  uint16_t *mtp_enorm = nullptr, *mtp_hnorm = nullptr, *mtp_final_norm = nullptr;
  kernels::LinearWeight mtp_eh_proj;

  // Step inputs: prepare_step packs them for R rows of B chunks into the pinned h_step and
  // copies them with one async copy into d_step, laid out as
  //   ids [R] | query_seq [R] | query_pos [R] | slot_mapping [R] | logit_rows [R] | cu [B+1] | slots [B]
  //   [| mark_seq [R]]
  // (int32); d_ids ... d_slots point into d_step for the current step. The offsets depend
  // only on (R, B), so a graph captured for B decode rows reads the right ones on replay.
  // mark_seq (only in steps with a sample_rows > 1 chunk): the slot whose penalty seen set a
  // row's id joins, -1 for a sampled row after a chunk's first (its id is a draft, counted
  // when drawn); d_mark_seq is d_query_seq in every other step.
  int32_t *d_step = nullptr, *h_step = nullptr;
  int32_t *d_ids = nullptr, *d_query_seq = nullptr, *d_query_pos = nullptr, *d_slot_mapping = nullptr,
          *d_cu = nullptr, *d_slots = nullptr, *d_logit_rows = nullptr, *d_route_ids = nullptr, *d_mark_seq = nullptr;
  // Sampling (cuda_model_sampling.cpp): per-row parameters [sample_capacity] (pinned
  // h_sample_rows copied to d_sample_rows with the step inputs), outputs token / logprob
  // [sample_capacity] and top logprobs [sample_capacity, kMaxTopLogprobs] with pinned host
  // copies, the kernels' workspace, and
  // the per-slot penalty state (cache arena): output-token counts [max_seqs, V] int32 and the
  // seen-token bitmask [max_seqs, ceil(V/32)] (reset when a slot is acquired; every step's
  // input ids are marked seen).
  kernels::SampleRow *d_sample_rows = nullptr, *h_sample_rows = nullptr;
  int32_t *d_tokens = nullptr, *h_tokens = nullptr, *d_top_ids = nullptr, *h_top_ids = nullptr;
  // The MTP head's drafts of one mtp_draft call, [kMaxDraftTokens, max_seqs] (draft k of input i
  // at k * B + i), chained on the device and copied to the host once (models with an MTP head).
  int32_t* d_draft_ids = nullptr;
  // Page-locked staging of the MTP head's host hidden rows [max_step_tokens, H] (models with an
  // MTP head): their upload is asynchronous, ordered like the step inputs (inputs_done).
  float* h_hid_in = nullptr;
  float *d_logprobs = nullptr, *h_logprobs = nullptr, *d_top_lp = nullptr, *h_top_lp = nullptr;
  void* sample_ws = nullptr;
  int64_t sample_ws_bytes = 0;
  int32_t* pen_counts = nullptr;
  uint32_t* pen_seen = nullptr;
  // Speculative decoding (cuda_model_state.cpp): spec_entries (E) entries, each held by one
  // slot's keep_states chunk of at most spec_rows (Tk) rows, over the trunk's spec_layers (Lm)
  // Mamba layers; per layer spec_layer_floats = spec_conv_pad (the conv window (K-1)*C, padded
  // to 64 floats) + the SSM state's bytes / 4 (Hm*P*N fp32, or half as many floats holding
  // 16-bit codes); spec_row_width (Wk) = C + Hm (the xBC | dt part of in_proj's row).
  //   spec_state  fp32 [E, Lm, spec_layer_floats]: the slot's conv window and SSM state before
  //               the chunk (conv at 0, SSM bytes at spec_conv_pad)
  //   spec_seen   uint32 [E, ceil(V/32)]: its penalty seen words before the chunk
  //   spec_saved  BF16 [E, Lm, Tk, Wk]: the chunk's in_proj rows (xBC | dt), per layer
  //   spec_stage  BF16 [Lm, E * Tk, Wk]: rows to replay, packed per layer (roll_back)
  //   spec_table  CopyBlock [Lm, E * Tk]: a keep step's row saves, layer by layer
  float* spec_state = nullptr;
  uint32_t* spec_seen = nullptr;
  uint16_t *spec_saved = nullptr, *spec_stage = nullptr;
  kernels::CopyBlock* spec_table = nullptr;
  int64_t spec_entries = 0, spec_rows = 0, spec_layers = 0, spec_layer_floats = 0, spec_conv_pad = 0,
          spec_row_width = 0;
  // Prefix-cache snapshot pool (SnapshotLayout): snap_units units of snap_unit bytes.
  uint8_t* snap_pool = nullptr;
  int64_t snap_unit = 0, snap_units = 0;
  // Copies and small uploads between steps (roll-back, snapshots, observe_prompt): a CopyBlock
  // table of copy_table_entries, and aux_ints int32 of scratch.
  kernels::CopyBlock* copy_table = nullptr;
  int64_t copy_table_entries = 0;
  int32_t* aux = nullptr;
  int64_t aux_ints = 0;
  // Sampled rows one step may have: max_seqs + spec_entries * (spec_rows - 1) (decode rows,
  // plus the extra rows of sample_rows > 1 chunks); the sampling buffers hold this many.
  int64_t sample_capacity = 0;
  // Rows of `logits` (fp32 [logit_capacity, V]): max_step_tokens, or sample_capacity with
  // CudaModelOptions::sampled_logits_only.
  int64_t logit_capacity = 0;
  // Constrained decoding: allowed-token masks [sample_capacity, ceil(V / 32)] (one per sampled
  // row at most) and per sample row the mask it takes (-1: none) [sample_capacity], with pinned
  // host copies (kernels/token_mask_cuda.h).
  uint32_t *d_masks = nullptr, *h_masks = nullptr;
  int32_t *d_mask_rows = nullptr, *h_mask_rows = nullptr;
  // Split-K partials of paged attention, sized for any step of up to max_step_tokens rows.
  void* attn_ws = nullptr;
  int64_t attn_ws_bytes = 0;
  // Bucketing scratch of the routed experts' batch and grouped paths (expert_gemv_cuda's
  // workspace; taken when kernels::expert_gemv_uses_workspace(max_step_tokens, k, E): from
  // kExpertBatchMinRows rows or kExpertGroupedMinPairs pairs), sized for max_step_tokens rows.
  void* moe_ws = nullptr;
  int64_t moe_ws_bytes = 0;
  // The linears' split-K scratch (LinearCudaArgs::workspace, kernels::
  // linear_split_workspace_bytes(SMs) each; counters zeroed at creation): one for the main
  // stream, one for the MoE side stream (the shared expert and latent projections run beside
  // the router and the routed experts).
  void *split_ws = nullptr, *split_ws_side = nullptr;
  int64_t split_ws_bytes = 0;
  // The chunked Mamba scan's scratch for steps of up to max_step_tokens rows
  // (kernels::ssm_scan_workspace_bytes; null where the scan never chunks).
  void* scan_ws = nullptr;
  int64_t scan_ws_bytes = 0;
  float *x = nullptr, *uf = nullptr, *hid_in = nullptr, *conv_out = nullptr, *ssm_y = nullptr,
        *router_logits = nullptr, *route_w = nullptr, *logits = nullptr;
  // Sharded (CudaModelOptions::tp_vocab): this rank's lm_head output [logit_capacity,
  // vocab_stride] and the TP group's gathered blocks [tp ranks, logit_capacity, vocab_stride]
  // (vocab_stride: the widest rank's vocab rows); null when unsharded.
  float *logits_part = nullptr, *logits_blocks = nullptr;
  int64_t vocab_stride = 0;
  uint16_t *u = nullptr, *y = nullptr, *big = nullptr, *g = nullptr, *q = nullptr, *kb = nullptr, *vb = nullptr,
           *o = nullptr, *r = nullptr, *h = nullptr, *yk = nullptr, *acc = nullptr, *sh = nullptr, *sd = nullptr,
           *ug = nullptr, *cat = nullptr;
};

// Drafts one mtp_draft call chains on the device (the engine's --speculative-tokens at most).
inline constexpr int64_t kMaxDraftTokens = 16;

// Prefix-cache snapshots (cuda_model_state.cpp): a snapshot is a list of pool units of `unit`
// bytes: first mamba_units units holding the slot's Mamba states (every Mamba block of the
// trunk, then of the MTP head: conv window then SSM state, packed, split at unit boundaries),
// then one unit per KV page of positions [0, pos): that page's K then V rows of every attention
// block of the trunk, then of the MTP head (kv_blocks blocks, page_bytes each for K and V).
struct SnapshotLayout {
  int64_t unit = 0;         // bytes per unit: 2 * kv_blocks * page_bytes rounded up to 256, >= 4096
  int64_t page_bytes = 0;   // one block's K (or V) page: kPage * kv_dim * (1 FP8, 2 BF16)
  int64_t kv_blocks = 0;    // attention blocks of both stacks
  int64_t mamba_bytes = 0;  // one slot's conv windows (fp32) and SSM states, both stacks
  int64_t mamba_units = 0;  // ceil(mamba_bytes / unit)
  int64_t units(int64_t pos) const { return mamba_units + (pos + kPage - 1) / kPage; }
  int64_t bytes(int64_t pos) const { return units(pos) * unit; }
};
SnapshotLayout snapshot_layout(const Config& c, bool kv_fp8, kernels::StateDType ssm = kernels::StateDType::F32);

// Keep_states entries a CudaModel has for these options: min(spec_seqs, max_seqs), at least 0.
int64_t spec_entries(const CudaModelOptions& o);

// The walk: takes every buffer of a CudaModel for `o` from `a` into `d` (which must be fresh),
// in a fixed order. `sms`: the device's multiprocessor count (sizes the attention workspace).
// Throws nemotron::Error for weights the CUDA backend cannot take (naming the tensor), in
// both modes, so the planner refuses them before anything is uploaded.
void walk_device_buffers(const Model& m, const CudaModelOptions& o, int sms, DeviceAllocator& a, DeviceBuffers& d);

}  // namespace nemotron::model::cuda_detail

namespace nemotron::model {

// Pages of kPage = 16 positions per attention block and stack: enough for kv_tokens positions
// plus one partly filled page per slot.
int64_t cuda_kv_pages(const CudaModelOptions& o);

}  // namespace nemotron::model
