// The trunk step of a CudaModel, eager or as a replayed CUDA graph (see cuda_model.h,
// cuda_model_internal.h).
//
// Decode graphs: graphs[B] holds the whole trunk step for B single-token chunks (embedding,
// every block, final norm, lm_head over the B rows, penalty marks and the sampling of B rows),
// captured the first time such a step runs and replayed afterwards. What varies from step to
// step lives in device memory at addresses fixed for that B, written by prepare_step's async
// copies before the replay: token ids, sequences, positions, KV slot mapping, chunk
// boundaries, state slots (d_step), block-table entries (Stack::block_tables) and the B rows'
// sampling parameters (d_sample_rows). Every captured kernel reads those;
// the host-side launch parameters depend only on B:
//   - linear / MoE / norm / Mamba kernels: shapes from B and the config; MoE routing is on
//     the device already (route_topk_cuda -> expert ids read by expert_gemv_cuda).
//   - paged attention: called without max_context, so its grid (number of splits) is sized
//     for the whole cache (max_pages * page_size); each block reads its row's context length
//     from query_pos on the device and derives the row's split length there (the context
//     spread over as many splits as keep >= 2 tiles each); splits past the context exit at
//     once. The eager path makes the same call, so both launch identical kernels with
//     identical shapes and give bit-identical results. Its partials go to the preallocated
//     attn_ws (no allocation inside the graph).
// Verify graphs (verify_graph): speculative decoding's verify steps of up to 8 sequences, every
// chunk a keep_states chunk of the same T rows that draws every row in one sampler launch,
// replay the same way, keyed by (B, T): begin_keep's state saves and its row-save table go on
// the stream before the replay (host-built, outside the graph); the Mamba blocks' row-save
// copies inside it read that table at its fixed address with a count fixed by (B, T).
// Draft graphs (draft_graph, mtp_draft): the MTP head's drafting steps after the first (B
// single-token chunks: the previous drafts, read from d_tokens by a device copy into the step's
// ids, and the head's previous output rows, copied into hid_in) replay the same way.
// Capture uses cudaStreamCaptureModeRelaxed: kernel launchers may query occupancy or set a
// kernel's shared-memory attribute on the host while being captured (not stream work).
#ifdef NEMOTRON_HAVE_CUDA

#include "kernels/elementwise_cuda.h"
#include "kernels/sampling_cuda.h"
#include "kernels/norm_cuda.h"
#include "model/cuda/cuda_memory.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;

void CudaModel::Impl::enqueue_trunk(int64_t R, int64_t B, int64_t L, int64_t n_samples) {
  const Config& c = model.config;
  embed(R);
  mark("embed");
  const uint16_t* y2_prev = nullptr;
  const uint16_t* y_prev = run_stack(trunk, R, B, &y2_prev);
  head(norm_f, y_prev, y2_prev, R, L);
  // Every input row joins its slot's seen set, in every step (prompt tokens for the repetition
  // penalty, also of prefill chunks that draw nothing; a decode row's token was already marked
  // when it was drawn), but the drafts of a chunk that samples several rows (d_mark_seq: -1
  // there; each is counted and marked when the row before it draws it).
  kernels::penalty_mark_seen_cuda(d_ids, d_mark_seq, R, pen_seen, c.vocab_size, stream);
  if (n_samples > 0) enqueue_sampling(n_samples);
}

bool CudaModel::Impl::graph_step(int64_t R, int64_t B, int64_t L, int64_t n_samples) const {
  // R == B: every chunk is one token; the graph computes B logit rows, masks the constrained
  // ones and samples B rows. A step with keep_states chunks (it saves Mamba rows as it goes)
  // runs eagerly.
  return opt.cuda_graphs && !record_routing && !profiling && !keep_step && R == B && L == B && n_samples == B &&
         B < static_cast<int64_t>(graphs.size());
}

template <class Enqueue>
cudaGraphExec_t CudaModel::Impl::capture_graph(Enqueue&& enqueue, const std::string& what) {
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), "CUDA graph capture");
  cudaGraph_t g = nullptr;
  try {
    capturing = true;
    enqueue();
    capturing = false;
  } catch (...) {
    capturing = false;
    cudaStreamEndCapture(stream, &g);  // leaves the stream usable again
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    throw;
  }
  check(cudaStreamEndCapture(stream, &g), "CUDA graph capture (" + what + ")");
  std::size_t nodes = 0, free0 = 0, free1 = 0, total = 0;
  cudaGraphGetNodes(g, nullptr, &nodes);
  cudaMemGetInfo(&free0, &total);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  if (e == cudaSuccess && cudaMemGetInfo(&free1, &total) == cudaSuccess) {
    graph_nodes += static_cast<int64_t>(nodes);
    graph_bytes += static_cast<int64_t>(free0) - static_cast<int64_t>(free1);
  }
  if (e != cudaSuccess) check(e, "CUDA graph instantiation (" + what + ")");
  return exec;
}

bool CudaModel::Impl::verify_graph_step(int64_t R, int64_t B, int64_t L, int64_t n_samples) const {
  // One sampler launch (sample_waves {0, n}): no penalized chunk draws rows in waves.
  return opt.cuda_graphs && !record_routing && !profiling && keep_step && verify_T >= 2 && R == B * verify_T &&
         L == R && n_samples == R && sample_waves.size() == 2 && B <= kMaxSpecGraphSeqs;
}

cudaGraphExec_t CudaModel::Impl::verify_graph(int64_t B, int64_t T) {
  cudaGraphExec_t& exec = verify_graphs[{B, T}];
  if (!exec)
    exec = capture_graph([&] { enqueue_trunk(B * T, B, B * T, B * T); },
                         "verify, B = " + std::to_string(B) + ", T = " + std::to_string(T));
  return exec;
}

cudaGraphExec_t CudaModel::Impl::decode_graph(int64_t B) {
  cudaGraphExec_t& exec = graphs.at(static_cast<std::size_t>(B));
  if (!exec) exec = capture_graph([&] { enqueue_trunk(B, B, B, B); }, "decode, B = " + std::to_string(B));
  return exec;
}

cudaGraphExec_t CudaModel::Impl::draft_graph(int64_t B) {
  cudaGraphExec_t& exec = draft_graphs.at(static_cast<std::size_t>(B));
  if (!exec)
    exec = capture_graph([&] { enqueue_mtp_body(B, B, B, /*draft=*/true); }, "MTP drafts, B = " + std::to_string(B));
  return exec;
}

void CudaModel::Impl::run_trunk(const std::vector<StepChunk>& chunks, int64_t R, int64_t L, int64_t n_samples) {
  const int64_t B = static_cast<int64_t>(chunks.size());
  if (verify_graph_step(R, B, L, n_samples)) {
    check(cudaGraphLaunch(verify_graph(B, verify_T), stream),
          "CUDA graph launch (verify, B = " + std::to_string(B) + ")");
    return;
  }
  if (!graph_step(R, B, L, n_samples)) {
    prof_begin();
    enqueue_trunk(R, B, L, n_samples);
    return;
  }
  check(cudaGraphLaunch(decode_graph(B), stream), "CUDA graph launch (decode, B = " + std::to_string(B) + ")");
}

}  // namespace nemotron::model

#endif
