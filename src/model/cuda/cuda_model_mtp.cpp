// The MTP head on the GPU (see cuda_model.h): mtp_forward for one slot, and the batched
// paths of speculative decoding: mtp_draft (one head step per draft over every verifying
// sequence, the argmax and the chaining on the device, later drafts as graphs) and mtp_feed
// (piled-up inputs in steps without logit rows). Every head step is prepare_step on the head's
// stack, its hidden rows (from the host, or the head's previous output rows) in hid_in, then
// enqueue_mtp_body: enorm(embedding) ; hnorm(hidden) -> eh_proj -> the head's blocks -> its final norm
// and the lm_head over the step's logit rows (mtp_draft's steps: the FP8 draft copy where the
// model keeps one, cuda_buffers.h lm_head_draft; mtp_forward: the checkpoint's lm_head).
#ifdef NEMOTRON_HAVE_CUDA

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
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
  s.enqueue_mtp(steps, {hidden}, L);
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
  std::vector<const float*> hid;  // each step chunk's hidden rows
  int64_t rows = 0;
  // No wait for the head's steps: nothing comes back from them, and the next step (or the next
  // of these) is ordered after them on the stream.
  auto run = [&] {
    if (steps.empty()) return;
    int64_t L = 0;
    s.enqueue_mtp(steps, hid, L);
    if (s.profiling) {
      check(cudaStreamSynchronize(s.stream), "MTP feed");
      s.prof_end();
    }
    for (const auto& st : steps) s.mtp.pos[static_cast<std::size_t>(st.slot)] += st.T;
    steps.clear();
    hid.clear();
    rows = 0;
  };
  auto add = [&](int slot, const int32_t* ids, const float* h, int64_t T) {
    if (!steps.empty() && rows + T > cap) run();
    steps.push_back({slot, ids, T, LogitsOut::None});
    hid.push_back(h);
    rows += T;
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

void CudaModel::Impl::enqueue_mtp(const std::vector<StepChunk>& steps, const std::vector<const float*>& hidden,
                                  int64_t& L, bool draft) {
  const int64_t H = model.config.hidden_size;
  const int64_t R = prepare_step(mtp, steps, L);  // waits until the last inputs' copies are done
  // Staged in page-locked memory: the copy does not wait for the stream, and inputs_done (the
  // next prepare_step's wait) now also covers it.
  int64_t at = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    std::memcpy(h_hid_in + at * H, hidden.at(i), static_cast<std::size_t>(steps[i].T * H) * 4);
    at += steps[i].T;
  }
  check(cudaMemcpyAsync(hid_in, h_hid_in, static_cast<std::size_t>(R * H) * 4, cudaMemcpyHostToDevice, stream),
        "MTP hidden rows");
  check(cudaEventRecord(inputs_done, stream), "MTP hidden rows");
  enqueue_mtp_body(R, static_cast<int64_t>(steps.size()), L, draft);
}

void CudaModel::Impl::enqueue_mtp_body(int64_t R, int64_t B, int64_t L, bool draft) {
  const Config& c = model.config;
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.norm_eps);
  prof_begin();  // profiling: this head step's ops, as "mtp.<op>" (prof_end after its sync)
  prof_prefix = "mtp.";
  // eh_proj input [R, 2H] = [enorm(embedding) ; hnorm(hidden)]; its output starts the
  // head's fp32 residual stream.
  embed(R);
  rmsnorm_strided_cuda(x, mtp_enorm, R, H, eps, cat, 2 * H, stream);
  rmsnorm_strided_cuda(hid_in, mtp_hnorm, R, H, eps, cat + H, 2 * H, stream);
  mark("embed+norms");
  linear("eh_proj", mtp_eh_proj, cat, R, x, OutType::F32);
  const uint16_t* y2_prev = nullptr;
  const uint16_t* y_prev = run_stack(mtp, R, B, &y2_prev);
  head(mtp_final_norm, y_prev, y2_prev, R, L, draft);
  if (draft) argmax_rows_f32_cuda(logits, L, c.vocab_size, d_tokens, stream);
  prof_prefix = "";
}

// Drafting: step 0 feeds each input's pending rows (eager: the rows vary); steps 1..K-1 are B
// single-token chunks whose ids are the previous step's drafts (d_tokens, copied into the step's
// ids on the device) and whose hidden rows are the head's previous output rows (uf, gathered
// into hid_in), replayed as draft graphs where graphs are on. Every draft goes to d_draft_ids;
// the host reads them once at the end (one synchronization per call, not per draft).
std::vector<std::vector<int32_t>> CudaModel::mtp_draft(const std::vector<DraftInput>& inputs, int K) {
  Impl& s = *impl_;
  const Config& c = s.model.config;
  if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  const auto B = static_cast<int64_t>(inputs.size());
  if (B == 0 || K < 1) return std::vector<std::vector<int32_t>>(inputs.size());
  const int64_t H = c.hidden_size;
  const int64_t R = s.check_mtp_inputs(inputs, "mtp_draft");
  // More rows than a step holds, or more drafts than d_draft_ids holds: one input at a time.
  if (R > s.opt.max_step_tokens || K > cuda_detail::kMaxDraftTokens) return Backend::mtp_draft(inputs, K);
  // Step k's chunks: the inputs' pending rows (k = 0), then one placeholder id each (k >= 1).
  std::vector<cuda_detail::StepChunk> steps;
  std::vector<const float*> hid;
  for (const DraftInput& in : inputs) {
    steps.push_back({in.slot, in.next_ids, in.T, LogitsOut::Last});
    hid.push_back(in.hidden);
  }
  const std::vector<int32_t> placeholder(static_cast<std::size_t>(B), 0);
  std::vector<int64_t> committed(inputs.size());
  for (int k = 0; k < K; ++k) {
    int64_t L = 0;
    if (k == 0) {
      s.enqueue_mtp(steps, hid, L, /*draft=*/true);
    } else {
      s.prepare_step(s.mtp, steps, L);
      check(cudaMemcpyAsync(s.d_ids, s.d_tokens, static_cast<std::size_t>(B) * 4, cudaMemcpyDeviceToDevice, s.stream),
            "draft ids");
      if (s.opt.cuda_graphs && !s.profiling && !s.record_routing && B < static_cast<int64_t>(s.draft_graphs.size()))
        check(cudaGraphLaunch(s.draft_graph(B), s.stream), "CUDA graph launch (MTP drafts)");
      else
        s.enqueue_mtp_body(B, B, B, /*draft=*/true);
    }
    if (L != B) throw Error("mtp_draft: " + std::to_string(L) + " logit rows for " + std::to_string(B) + " inputs");
    check(cudaMemcpyAsync(s.d_draft_ids + k * B, s.d_tokens, static_cast<std::size_t>(B) * 4, cudaMemcpyDeviceToDevice,
                          s.stream),
          "draft ids");
    // Draft k + 2 chains on (draft k + 1, the head's output row for the input's last row).
    if (k + 1 < K)
      kernels::gather_rows_bf16_cuda(reinterpret_cast<const uint16_t*>(s.uf), s.d_logit_rows, B, 2 * H,
                                     reinterpret_cast<uint16_t*>(s.hid_in), s.stream);
    if (s.profiling) {
      check(cudaStreamSynchronize(s.stream), "MTP drafts");
      s.prof_end();
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const int slot = steps[i].slot;
      s.mtp.pos[static_cast<std::size_t>(slot)] += steps[i].T;
      if (k == 0) committed[i] = s.mtp.pos[static_cast<std::size_t>(slot)];
      steps[i] = {slot, placeholder.data() + i, 1, LogitsOut::Last};
    }
  }
  std::vector<int32_t> ids(static_cast<std::size_t>(K * B));
  check(cudaMemcpyAsync(ids.data(), s.d_draft_ids, ids.size() * 4, cudaMemcpyDeviceToHost, s.stream), "draft ids");
  check(cudaStreamSynchronize(s.stream), "MTP drafts");
  std::vector<std::vector<int32_t>> out(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i)
    for (int k = 0; k < K; ++k) out[i].push_back(ids[static_cast<std::size_t>(k * B) + i]);
  if (K > 1)
    for (std::size_t i = 0; i < inputs.size(); ++i) mtp_roll_back(inputs[i].slot, committed[i]);
  return out;
}

}  // namespace nemotron::model

#endif
