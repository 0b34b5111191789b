#pragma once
// CudaModel internals shared by cuda_model*.cpp (CUDA builds only): the device arena, the
// uploaded block weights, the two block stacks (trunk and MTP head, each with its own state
// slots, paged KV cache and positions), and the step buffers.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/attention_cuda.h"
#include "kernels/linear_cuda.h"
#include "kernels/moe_cuda.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

namespace nemotron::model::cuda_detail {

using kernels::ExpertTable;
using kernels::LinearWeight;
using kernels::PagedKvCache;

inline void check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw Error(what + ": " + cudaGetErrorString(e));
}

// Owns device allocations and pinned host buffers; frees them all at destruction.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    for (void* p : blocks_) cudaFree(p);
    for (void* p : host_) cudaFreeHost(p);
  }
  // Zeroed page-locked host memory (async copies from it never stage through the driver).
  template <class T>
  T* pinned(std::size_t count) {
    void* p = nullptr;
    const std::size_t n = std::max<std::size_t>(count * sizeof(T), 16);
    check(cudaMallocHost(&p, n), "cudaMallocHost of " + std::to_string(n) + " bytes");
    host_.push_back(p);
    std::memset(p, 0, n);
    return static_cast<T*>(p);
  }
  void* alloc(std::size_t n) {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<std::size_t>(n, 16)), "cudaMalloc of " + std::to_string(n) + " bytes");
    blocks_.push_back(p);
    bytes_ += static_cast<int64_t>(n);
    return p;
  }
  template <class T>
  T* upload(const T* host, std::size_t count) {
    T* d = static_cast<T*>(alloc(count * sizeof(T)));
    check(cudaMemcpy(d, host, count * sizeof(T), cudaMemcpyHostToDevice), "upload");
    return d;
  }
  template <class T>
  T* zeros(std::size_t count) {
    T* d = static_cast<T*>(alloc(count * sizeof(T)));
    check(cudaMemset(d, 0, count * sizeof(T)), "cudaMemset");
    return d;
  }
  int64_t bytes() const { return bytes_; }

 private:
  std::vector<void*> blocks_, host_;
  int64_t bytes_ = 0;
};

struct DMamba {
  LinearWeight in_proj, out_proj;
  uint16_t *conv_w = nullptr, *conv_b = nullptr, *norm = nullptr;
  float *dt_bias = nullptr, *A = nullptr, *D = nullptr;
  float *conv_state = nullptr, *ssm_state = nullptr;  // [slots, K-1, C], [slots, Hm, P, N]
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
  uint16_t* norm = nullptr;
  DMamba m;
  DAttn a;
  DMoE e;
  LinearWeight mlp_up, mlp_down;
};

inline constexpr int64_t kPage = 16;

inline int64_t round_up32(int64_t v) { return (v + 31) / 32 * 32; }

// BF16 copy of an fp32 vector (norm weights).
uint16_t* upload_bf16(Arena& a, const std::vector<float>& v);
// A linear weight in its checkpoint format on the device; dense F16/F32 become BF16.
LinearWeight upload_linear(Arena& a, const LinearWeight& src);

// A stack of blocks with its own per-slot positions and paged KV cache (pages of kPage
// positions; block_tables [max_seqs, num_pages] maps a slot's logical page to a physical one
// in every attention block of the stack).
struct Stack {
  std::vector<DBlock> blocks;
  std::vector<int64_t> pos;                 // per slot
  std::vector<std::vector<int32_t>> pages;  // per slot, in logical order
  std::vector<int32_t> free_pages;
  int32_t* block_tables_host = nullptr;  // pinned mirror of block_tables
  int32_t* block_tables = nullptr;
};

// One sequence's rows of a step (trunk forward or MTP forward).
struct StepChunk {
  int slot = 0;
  const int32_t* ids = nullptr;
  int64_t T = 0;
  bool all_logits = false;
};

}  // namespace nemotron::model::cuda_detail

namespace nemotron::model {

struct CudaModel::Impl {
  using Arena = cuda_detail::Arena;
  using DBlock = cuda_detail::DBlock;
  using Stack = cuda_detail::Stack;
  using StepChunk = cuda_detail::StepChunk;

  const Model& model;
  CudaModelOptions opt;
  // Intermediate widths rounded up to 32 (routed experts, shared expert, dense MLP).
  int64_t I_pad = 0, Is_pad = 0, Imlp_pad = 0;
  Arena arena;
  cudaStream_t stream = nullptr;
  // Second stream for work that can overlap the main one (the MoE shared expert and latent
  // input projection), forked and joined through fork_ev / latent_ev / join_ev (reused by
  // every block; captured into graphs as edges).
  cudaStream_t side_stream = nullptr;
  cudaEvent_t fork_ev = nullptr, latent_ev = nullptr, join_ev = nullptr;
  double upload_s = 0;
  int64_t weight_bytes = 0;
  int64_t num_pages = 0;  // per attention block, in each stack

  kernels::LinearWeight embeddings, lm_head;
  uint16_t* norm_f = nullptr;
  Stack trunk, mtp;
  // MTP head (when config.has_mtp()): input norms, eh_proj [H, 2H], final norm.
  uint16_t *mtp_enorm = nullptr, *mtp_hnorm = nullptr, *mtp_final_norm = nullptr;
  kernels::LinearWeight mtp_eh_proj;

  std::vector<bool> in_use;

  // Step inputs: prepare_step packs them for R rows of B chunks into the pinned h_step and
  // copies them with one async copy into d_step, laid out as
  //   ids [R] | query_seq [R] | query_pos [R] | slot_mapping [R] | logit_rows [R] | cu [B+1] | slots [B]
  // (int32); d_ids ... d_slots point into d_step for the current step. The offsets depend
  // only on (R, B), so a graph captured for B decode rows reads the right ones on replay.
  // inputs_done (recorded after the step's host->device copies) guards the pinned buffers
  // (h_step, block_tables_host) against being rewritten while a copy is pending.
  int32_t *d_step = nullptr, *h_step = nullptr;
  cudaEvent_t inputs_done = nullptr;
  int32_t *d_ids, *d_query_seq, *d_query_pos, *d_slot_mapping, *d_cu, *d_slots, *d_logit_rows, *d_route_ids;
  // Greedy outputs: argmax of each logit row (device) and its pinned host copy.
  int32_t *d_argmax = nullptr, *h_argmax = nullptr;
  // Split-K partials of paged attention, sized for any step of up to max_step_tokens rows.
  void* attn_ws = nullptr;
  int64_t attn_ws_bytes = 0;
  // Bucketing scratch of the grouped routed-expert GEMM (expert_gemv_cuda's workspace, used
  // from kExpertGroupedMinPairs (row, expert) pairs), sized for max_step_tokens rows.
  void* moe_ws = nullptr;
  int64_t moe_ws_bytes = 0;
  // Decode graphs: graphs[B] replays a trunk step of B single-token chunks (null until used).
  std::vector<cudaGraphExec_t> graphs;
  // Kernel nodes of the captured graphs and the device memory their instantiation took (free
  // memory before - after; the driver allocates in 2 MiB granules), summed over graphs.
  int64_t graph_nodes = 0, graph_bytes = 0;
  float *x, *uf, *hid_in, *conv_out, *ssm_y, *router_logits, *route_w, *logits;
  uint16_t *u, *y, *big, *g, *q, *kb, *vb, *o, *r, *h, *yk, *acc, *sh, *sd, *ug, *cat;

  // Last call: rows, and (when recording) the routing of every MoE block it ran:
  // route_log [blocks, max_step_tokens, k] on the device, route_rows[block] rows kept.
  int64_t last_rows = 0;
  bool record_routing = false;
  int32_t* route_log = nullptr;
  std::vector<int64_t> route_rows;

  // Profiling (CudaModel::set_profiling): marks of the step being enqueued (op name, weight
  // bytes, event recorded after the op), the event before its first op, and the totals.
  struct Mark {
    const char* op;
    double bytes;
    cudaEvent_t ev;
  };
  bool profiling = false, prof_active = false;
  cudaEvent_t prof_start = nullptr;
  std::vector<Mark> marks;
  std::vector<cudaEvent_t> prof_events;  // pool, reused by every step
  std::vector<CudaModel::OpTime> prof_totals;

  Impl(const Model& m, const CudaModelOptions& o) : model(m), opt(o) {}
  ~Impl() {
    for (cudaEvent_t e : prof_events) cudaEventDestroy(e);
    if (prof_start) cudaEventDestroy(prof_start);
    for (cudaGraphExec_t g : graphs)
      if (g) cudaGraphExecDestroy(g);
    if (inputs_done) cudaEventDestroy(inputs_done);
    if (fork_ev) cudaEventDestroy(fork_ev);
    if (join_ev) cudaEventDestroy(join_ev);
    if (latent_ev) cudaEventDestroy(latent_ev);
    if (side_stream) cudaStreamDestroy(side_stream);
    if (stream) cudaStreamDestroy(stream);
  }

  // cuda_model_upload.cpp
  DBlock upload_block(const BlockWeights& b, int index);
  void alloc_stack(Stack& s, const std::vector<BlockWeights>& blocks, int first_index, int slots);
  void alloc_activations();
  // cuda_model_step.cpp
  // Validates the chunks, takes KV pages in `st` for their new positions, uploads the step
  // inputs; returns the step's rows and fills logit_rows (rows that need logits).
  int64_t prepare_step(Stack& st, const std::vector<StepChunk>& chunks, int64_t& logit_rows);
  // Runs the stack's blocks over the step's rows (residual in x); returns the last block's
  // output (BF16 [R, H], not yet added to x) and sets *y2_last to a second BF16 addend of it
  // (the shared experts' output of a last MoE block; else nullptr), for head().
  const uint16_t* run_stack(const Stack& st, int64_t R, int64_t B, const uint16_t** y2_last);
  // Enqueues the final add + norm (fp32 rows kept in uf) and lm_head over the L logit rows
  // (fp32 into `logits`).
  void head(const uint16_t* final_norm, const uint16_t* y_prev, const uint16_t* y2_prev, int64_t R, int64_t L);
  // Copies the L logit rows to the host (one vector per chunk), waits for the stream and
  // advances the chunks' positions in `st`.
  std::vector<std::vector<float>> collect_logits(Stack& st, const std::vector<StepChunk>& chunks, int64_t L);
  // Copies the L greedy ids (d_argmax) to the host, waits and advances the positions.
  std::vector<int32_t> collect_greedy(Stack& st, const std::vector<StepChunk>& chunks, int64_t L);
  // cuda_model_graph.cpp
  // Enqueues the trunk step over the inputs prepare_step uploaded (R rows, B chunks, L logit
  // rows; with `argmax` also the greedy ids into d_argmax): eagerly, or, for B single-token
  // chunks with graphs on, by replaying (capturing first if new) the graph for B. The graph
  // always ends with the argmax.
  void run_trunk(const std::vector<StepChunk>& chunks, int64_t R, int64_t L, bool argmax);
  void enqueue_trunk(int64_t R, int64_t B, int64_t L, bool argmax);
  cudaGraphExec_t decode_graph(int64_t B);
  // cuda_model_profile.cpp: mark() records the end of an op while a profiled step is being
  // enqueued (no-op otherwise); prof_begin() starts one, prof_end() (after the stream
  // synchronized) adds its op times to prof_totals.
  void mark(const char* op, double weight_bytes = 0);
  void prof_begin();
  void prof_end();
  void reset_slot(Stack& st, int slot);
  void free_slot(Stack& st, int slot);
};

}  // namespace nemotron::model
