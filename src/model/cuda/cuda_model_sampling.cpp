// Sampling on the device for CudaModel steps (kernels/sampling_cuda.h): the per-row
// parameters, the penalty state of every slot, and the copies of the results to the host.
// The buffers are placed by the buffer walk (cuda_buffers.h).
#ifdef NEMOTRON_HAVE_CUDA

#include <algorithm>

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
  // Each sampled row: its chunk, its index j among the chunk's sampled rows, its logit row,
  // and the sampler launch (wave) it joins: a penalized chunk's row j joins wave j, so that its
  // draw sees the draws of rows < j in the slot's penalty state (the sampler allows a slot once
  // per launch); every other row joins wave 0.
  struct Row {
    std::size_t chunk;
    int64_t j;
    int32_t logit_row;
    int32_t penalty_slot;
  };
  std::vector<std::vector<Row>> waves(1);
  int64_t logit_row = 0;
  pending.sample_at.assign(chunks.size(), {});
  pending.logprobs = false;
  static const SamplingParams kGreedy{.temperature = 0.0f};
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const model::StepChunk& ch = chunks[i];
    const StepChunk& st = steps[i];
    const int64_t rows = st.logits == LogitsOut::All ? st.T : st.logits == LogitsOut::Last ? 1 : 0;
    const int64_t base = logit_row;
    logit_row += rows;
    if (!ch.sample && !all_rows) continue;
    // Rows that do not sample (placeholders of a decode graph's batch) are greedy, without
    // penalties or logprobs; their results are dropped.
    const bool real = ch.sample && ch.sampling;
    const SamplingParams& p = real ? *ch.sampling : kGreedy;
    const int32_t penalty_slot = real && p.penalized() ? ch.slot : -1;
    const int64_t S = ch.sample ? ch.sample_rows : 1;
    for (int64_t j = 0; j < S; ++j) {
      // Chunk row T - S + j: its logit row (All: one per chunk row; else the last row only,
      // and then S == 1).
      const int64_t lr = st.logits == LogitsOut::All ? base + st.T - S + j : base + rows - 1;
      const std::size_t w = penalty_slot >= 0 && S > 1 ? static_cast<std::size_t>(j) : 0;
      if (waves.size() <= w) waves.resize(w + 1);
      waves[w].push_back({i, j, static_cast<int32_t>(lr), penalty_slot});
    }
    pending.logprobs = pending.logprobs || (real && p.logprobs > 0);
  }
  // Constrained rows: sampled row j of a chunk with `allowed` takes that chunk's mask j
  // (allowed + j * words), packed into h_masks in sample-row order (at most sample_capacity
  // masks: one per sampled row); h_mask_rows[n] is row n's mask, -1 for none.
  const int64_t words = kernels::token_mask_words(model.config.vocab_size);
  int64_t n = 0, masks = 0;
  sample_waves.assign(1, 0);
  for (const auto& wave : waves) {
    for (const Row& r : wave) {
      const model::StepChunk& ch = chunks[r.chunk];
      const SamplingParams& p = ch.sample && ch.sampling ? *ch.sampling : kGreedy;
      if (n >= sample_capacity)
        throw Error("CUDA model: more sampled rows than the sampler's " + std::to_string(sample_capacity));
      h_sample_rows[n] =
          kernels::make_sample_row(p, r.logit_row, r.penalty_slot, ch.seed, ch.draw + static_cast<uint64_t>(r.j));
      h_mask_rows[n] = -1;
      if (ch.sample && ch.allowed) {
        const uint32_t* m = ch.allowed + r.j * words;
        std::copy(m, m + words, h_masks + masks * words);
        h_mask_rows[n] = static_cast<int32_t>(masks++);
      }
      if (ch.sample) pending.sample_at[r.chunk].push_back(static_cast<int32_t>(n));
      ++n;
    }
    sample_waves.push_back(n);
  }
  pending.masks = masks > 0;
  if (masks > 0) mask_rows_stale = std::max(mask_rows_stale == INT64_MAX ? sample_capacity : mask_rows_stale, n);
  // pending.sample_at lists each chunk's rows in row order: waves are visited in order, and a
  // chunk's rows are all in wave 0 or one per wave.
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
    } else if (mask_rows_stale > 0) {
      // No masks: rows an earlier step masked (or never set) back to -1, for the decode graphs.
      const int64_t count = std::max(n, std::min(mask_rows_stale, sample_capacity));
      std::fill(h_mask_rows + n, h_mask_rows + count, -1);
      check(cudaMemcpyAsync(d_mask_rows, h_mask_rows, static_cast<std::size_t>(count) * 4, cudaMemcpyHostToDevice,
                            stream),
            "token mask rows");
      mask_rows_stale = 0;
    }
    check(cudaEventRecord(inputs_done, stream), "step inputs");
  }
  return n;
}

void CudaModel::Impl::enqueue_sampling(int64_t n_samples) {
  const int64_t V = model.config.vocab_size;
  // Constrained rows: disallowed tokens' logits to -inf, for every sampled row at once before
  // the first wave (the masks are known up front; the draws of earlier waves do not change
  // them). A decode graph always carries this launch (rows without a mask skip it: their
  // d_mask_rows entry is -1); an eager step launches it when some row has a mask.
  if (pending.masks || capturing)
    kernels::mask_logits_cuda(logits, V, d_sample_rows, d_mask_rows, d_masks, n_samples, stream);
  // The launches of pack_samples (a decode graph's capture: one launch of its B rows).
  std::vector<int64_t> waves = sample_waves;
  if (waves.size() < 2 || waves.back() != n_samples) waves = {0, n_samples};
  for (std::size_t w = 0; w + 1 < waves.size(); ++w) {
    const int64_t first = waves[w], rows = waves[w + 1] - waves[w];
    if (rows == 0) continue;
    kernels::SampleCudaArgs a;
    a.logits = logits;
    a.V = V;
    a.rows = d_sample_rows + first;
    a.n_rows = rows;
    a.counts = pen_counts;
    a.seen = pen_seen;
    a.penalty_slots = opt.max_seqs;
    a.token = d_tokens + first;
    a.logprob = d_logprobs + first;
    a.top_ids = d_top_ids + first * kMaxTopLogprobs;
    a.top_logprobs = d_top_lp + first * kMaxTopLogprobs;
    a.workspace = sample_ws;
    a.workspace_bytes = sample_ws_bytes;
    kernels::sample_cuda(a, stream);
    mark("sample");
  }
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
