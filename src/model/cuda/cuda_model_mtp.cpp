// The MTP head on the GPU (see cuda_model.h): mtp_forward for one slot, and the batched
// paths of speculative decoding: mtp_draft (one head step per draft over every verifying
// sequence, the argmax on the device) and mtp_feed (piled-up inputs in steps without logit
// rows). Every head step is enqueue_mtp: prepare_step on the head's stack, the host hidden rows
// uploaded, enorm(embedding) ; hnorm(hidden) -> eh_proj -> the head's blocks -> its final norm
// and the lm_head over the step's logit rows (mtp_draft's steps: the FP8 draft copy where the
// model keeps one, cuda_buffers.h lm_head_draft; mtp_forward: the checkpoint's lm_head).
#ifdef NEMOTRON_HAVE_CUDA

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/elementwise_cuda.h"
#include "kernels/linear_cuda.h"
#include "kernels/norm_cuda.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;

std::vector<float> CudaModel::mtp_forward(int slot, const int32_t* next_ids, const float* hidden, int64_t T,
                                          bool all_logits) {
  Impl& s = *impl_;
  const Config& c = s.model.config;
  if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  if (!hidden) throw Error("CUDA model: mtp_forward without hidden rows");
  const int64_t H = c.hidden_size;
  // More rows than a step holds (a prompt's pending pairs): in pieces of max_step_tokens, in
  // order; last_hidden() then holds the last piece's rows, whose last row is the head's last.
  const int64_t cap = s.opt.max_step_tokens;
  if (T > cap) {
    std::vector<float> out;
    for (int64_t at = 0; at < T; at += cap) {
      const int64_t n = std::min(cap, T - at);
      std::vector<float> part = mtp_forward(slot, next_ids + at, hidden + at * H, n, all_logits);
      if (all_logits || at + n == T) out.insert(out.end(), part.begin(), part.end());
    }
    return out;
  }
  const std::vector<cuda_detail::StepChunk> steps{{slot, next_ids, T, all_logits ? LogitsOut::All : LogitsOut::Last}};
  int64_t L = 0;
  s.enqueue_mtp(steps, hidden, L);
  return std::move(s.collect_logits(s.mtp, steps, L)[0]);
}

int64_t CudaModel::Impl::check_mtp_inputs(const std::vector<Backend::DraftInput>& inputs, const char* what) const {
  const std::string w = what;
  if (pending.active) throw Error("CUDA model: " + w + " while a step is pending (internal)");
  int64_t rows = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Backend::DraftInput& in = inputs[i];
    if (in.T < 1 || !in.next_ids || !in.hidden) throw Error(w + ": an input without (token, hidden) rows");
    if (in.slot < 0 || in.slot >= opt.max_seqs) throw Error(w + ": slot " + std::to_string(in.slot) + " out of range");
    for (std::size_t j = 0; j < i; ++j)
      if (in.slot == inputs[j].slot) throw Error(w + ": slot " + std::to_string(in.slot) + " twice");
    rows += in.T;
  }
  return rows;
}

void CudaModel::mtp_feed(const std::vector<DraftInput>& inputs) {
  Impl& s = *impl_;
  const Config& c = s.model.config;
  if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  s.check_mtp_inputs(inputs, "mtp_feed");
  const int64_t H = c.hidden_size, cap = s.opt.max_step_tokens;
  std::vector<cuda_detail::StepChunk> steps;
  std::vector<float> hid;
  auto run = [&] {
    if (steps.empty()) return;
    int64_t L = 0;
    s.enqueue_mtp(steps, hid.data(), L);
    check(cudaStreamSynchronize(s.stream), "MTP feed");
    s.prof_end();
    for (const auto& st : steps) s.mtp.pos[static_cast<std::size_t>(st.slot)] += st.T;
    steps.clear();
    hid.clear();
  };
  auto add = [&](int slot, const int32_t* ids, const float* h, int64_t T) {
    if (!steps.empty() && static_cast<int64_t>(hid.size()) / H + T > cap) run();
    steps.push_back({slot, ids, T, LogitsOut::None});
    hid.insert(hid.end(), h, h + T * H);
  };
  for (const DraftInput& in : inputs) {
    if (in.T <= cap) {
      add(in.slot, in.next_ids, in.hidden, in.T);
      continue;
    }
    run();  // a long input alone, in pieces of `cap` rows (one step each: a slot once per step)
    for (int64_t at = 0; at < in.T; at += cap) {
      add(in.slot, in.next_ids + at, in.hidden + at * H, std::min(cap, in.T - at));
      run();
    }
  }
  run();
}

void CudaModel::Impl::enqueue_mtp(const std::vector<StepChunk>& steps, const float* hidden, int64_t& L, bool draft) {
  const Config& c = model.config;
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.norm_eps);
  const int64_t R = prepare_step(mtp, steps, L);
  check(cudaMemcpyAsync(hid_in, hidden, static_cast<std::size_t>(R * H) * 4, cudaMemcpyHostToDevice, stream),
        "MTP hidden rows");
  prof_begin();  // profiling: this head step's ops, as "mtp.<op>" (prof_end after its sync)
  prof_prefix = "mtp.";
  // eh_proj input [R, 2H] = [enorm(embedding) ; hnorm(hidden)]; its output starts the
  // head's fp32 residual stream.
  embed_cuda(d_ids, static_cast<const uint16_t*>(embeddings.data), c.vocab_size, H, R, x, stream);
  rmsnorm_strided_cuda(x, mtp_enorm, R, H, eps, cat, 2 * H, stream);
  rmsnorm_strided_cuda(hid_in, mtp_hnorm, R, H, eps, cat + H, 2 * H, stream);
  mark("embed+norms");
  linear("eh_proj", mtp_eh_proj, cat, R, x, OutType::F32);
  const uint16_t* y2_prev = nullptr;
  const uint16_t* y_prev = run_stack(mtp, R, static_cast<int64_t>(steps.size()), &y2_prev);
  head(mtp_final_norm, y_prev, y2_prev, R, L, draft);
  prof_prefix = "";
}

std::vector<std::vector<int32_t>> CudaModel::mtp_draft(const std::vector<DraftInput>& inputs, int K) {
  Impl& s = *impl_;
  const Config& c = s.model.config;
  if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  const auto B = static_cast<int64_t>(inputs.size());
  if (B == 0 || K < 1) return std::vector<std::vector<int32_t>>(inputs.size());
  const int64_t H = c.hidden_size, V = c.vocab_size;
  const int64_t R = s.check_mtp_inputs(inputs, "mtp_draft");
  // The argmax ids go to the sampler's output buffer (no step is pending, its last results were
  // copied out by finish_step); more rows than a step holds: one input at a time.
  if (R > s.opt.max_step_tokens || B > s.sample_capacity)  // (B <= R: every input has rows)
    return Backend::mtp_draft(inputs, K);
  // Step k's chunks: the inputs' pending rows (k = 0), then each input's draft k (one row).
  std::vector<cuda_detail::StepChunk> steps;
  std::vector<float> hid(static_cast<std::size_t>(R * H));
  int64_t at = 0;
  for (const DraftInput& in : inputs) {
    steps.push_back({in.slot, in.next_ids, in.T, LogitsOut::Last});
    std::copy(in.hidden, in.hidden + in.T * H, hid.begin() + at * H);
    at += in.T;
  }
  std::vector<std::vector<int32_t>> out(inputs.size());
  for (auto& d : out) d.reserve(static_cast<std::size_t>(K));  // steps point at their last id
  std::vector<int64_t> committed(inputs.size());
  std::vector<int32_t> ids(inputs.size());
  std::vector<float> rows;  // the head's output rows [R, H] of the step (uf)
  for (int k = 0; k < K; ++k) {
    int64_t L = 0;
    s.enqueue_mtp(steps, hid.data(), L, /*draft=*/true);
    if (L != B) throw Error("mtp_draft: " + std::to_string(L) + " logit rows for " + std::to_string(B) + " inputs");
    argmax_rows_f32_cuda(s.logits, L, V, s.d_tokens, s.stream);
    check(cudaMemcpyAsync(ids.data(), s.d_tokens, static_cast<std::size_t>(B) * 4, cudaMemcpyDeviceToHost, s.stream),
          "draft ids");
    const bool chain = k + 1 < K;
    if (chain) {
      rows.resize(static_cast<std::size_t>(s.last_rows * H));
      check(cudaMemcpyAsync(rows.data(), s.uf, rows.size() * 4, cudaMemcpyDeviceToHost, s.stream), "MTP output rows");
    }
    check(cudaStreamSynchronize(s.stream), "MTP drafts");
    s.prof_end();
    int64_t row_end = 0;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const int slot = steps[i].slot;
      s.mtp.pos[static_cast<std::size_t>(slot)] += steps[i].T;
      row_end += steps[i].T;
      if (k == 0) committed[i] = s.mtp.pos[static_cast<std::size_t>(slot)];
      out[i].push_back(ids[i]);
      if (chain) {
        // Draft k + 2 chains on (draft k + 1, the head's output row for this input's last row).
        std::copy(rows.begin() + (row_end - 1) * H, rows.begin() + row_end * H, hid.begin() + static_cast<int64_t>(i) * H);
      }
    }
    if (chain) {
      for (std::size_t i = 0; i < inputs.size(); ++i) steps[i] = {steps[i].slot, &out[i].back(), 1, LogitsOut::Last};
    }
  }
  if (K > 1)
    for (std::size_t i = 0; i < inputs.size(); ++i) mtp_roll_back(inputs[i].slot, committed[i]);
  return out;
}

}  // namespace nemotron::model

#endif
