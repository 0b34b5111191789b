// Sampling on the device for CudaModel steps (kernels/sampling_cuda.h): the per-row
// parameters, the penalty state of every slot, and the copies of the results to the host.
// The buffers are placed by the buffer walk (cuda_buffers.h).
#ifdef NEMOTRON_HAVE_CUDA

#include "kernels/token_mask.h"
#include "kernels/token_mask_cuda.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using cuda_detail::check;
using kernels::kMaxTopLogprobs;
using kernels::SampleRow;

void CudaModel::Impl::reset_penalties(int slot) {
  kernels::penalty_reset_slot_cuda(pen_counts, pen_seen, model.config.vocab_size, slot, stream);
}

int64_t CudaModel::Impl::pack_samples(const std::vector<model::StepChunk>& chunks, const std::vector<StepChunk>& steps,
                                      bool all_rows) {
  int64_t n = 0, logit_row = 0, masks = 0;
  const int64_t words = kernels::token_mask_words(model.config.vocab_size);
  pending.sample_row.assign(chunks.size(), -1);
  pending.logprobs = false;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const model::StepChunk& ch = chunks[i];
    const StepChunk& st = steps[i];
    logit_row += st.logits == LogitsOut::All ? st.T : st.logits == LogitsOut::Last ? 1 : 0;
    if (!ch.sample && !all_rows) continue;
    // Rows that do not sample (placeholders of a decode graph's batch) are greedy, without
    // penalties or logprobs; their results are dropped.
    static const SamplingParams kGreedy{.temperature = 0.0f};
    const bool real = ch.sample && ch.sampling;
    const SamplingParams& p = real ? *ch.sampling : kGreedy;
    const int32_t penalty_slot = real && p.penalized() ? ch.slot : -1;
    h_sample_rows[n] = kernels::make_sample_row(p, static_cast<int32_t>(logit_row - 1), penalty_slot, ch.seed, ch.draw);
    pending.logprobs = pending.logprobs || (real && p.logprobs > 0);
    h_mask_rows[n] = -1;
    if (ch.sample && ch.allowed) {
      std::copy(ch.allowed, ch.allowed + words, h_masks + masks * words);
      h_mask_rows[n] = static_cast<int32_t>(masks++);
    }
    if (ch.sample) pending.sample_row[i] = static_cast<int>(n);
    ++n;
  }
  pending.masks = masks > 0;
  if (n > 0) {
    check(cudaMemcpyAsync(d_sample_rows, h_sample_rows, static_cast<std::size_t>(n) * sizeof(SampleRow),
                          cudaMemcpyHostToDevice, stream),
          "sampling parameters");
    if (masks > 0) {
      check(cudaMemcpyAsync(d_mask_rows, h_mask_rows, static_cast<std::size_t>(n) * 4, cudaMemcpyHostToDevice, stream),
            "token masks");
      check(cudaMemcpyAsync(d_masks, h_masks, static_cast<std::size_t>(masks * words) * 4, cudaMemcpyHostToDevice,
                            stream),
            "token masks");
    }
    check(cudaEventRecord(inputs_done, stream), "step inputs");
  }
  return n;
}

void CudaModel::Impl::enqueue_sampling(int64_t n_samples) {
  const int64_t V = model.config.vocab_size;
  // Constrained rows: disallowed tokens' logits to -inf (eager steps only: a step with masks
  // never replays a decode graph).
  if (pending.masks) kernels::mask_logits_cuda(logits, V, d_sample_rows, d_mask_rows, d_masks, n_samples, stream);
  kernels::SampleCudaArgs a;
  a.logits = logits;
  a.V = V;
  a.rows = d_sample_rows;
  a.n_rows = n_samples;
  a.counts = pen_counts;
  a.seen = pen_seen;
  a.penalty_slots = opt.max_seqs;
  a.token = d_tokens;
  a.logprob = d_logprobs;
  a.top_ids = d_top_ids;
  a.top_logprobs = d_top_lp;
  a.workspace = sample_ws;
  a.workspace_bytes = sample_ws_bytes;
  kernels::sample_cuda(a, stream);
  mark("sample");
}

void CudaModel::Impl::enqueue_sample_copies() {
  const auto n = static_cast<std::size_t>(pending.n_samples);
  check(cudaMemcpyAsync(h_tokens, d_tokens, n * 4, cudaMemcpyDeviceToHost, stream), "sampled ids");
  check(cudaMemcpyAsync(h_logprobs, d_logprobs, n * 4, cudaMemcpyDeviceToHost, stream), "sampled logprobs");
  if (pending.logprobs) {
    const std::size_t top = n * kMaxTopLogprobs * 4;
    check(cudaMemcpyAsync(h_top_ids, d_top_ids, top, cudaMemcpyDeviceToHost, stream), "top logprobs");
    check(cudaMemcpyAsync(h_top_lp, d_top_lp, top, cudaMemcpyDeviceToHost, stream), "top logprobs");
  }
}

}  // namespace nemotron::model

#endif
