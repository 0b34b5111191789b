// One step of a CudaModel block stack: step inputs, the blocks' kernel sequences, the final
// norm and lm_head (see cuda_model.h, cuda_model_internal.h). Host-side orchestration only;
// the device code is in src/kernels/cuda (one launcher per op).
#ifdef NEMOTRON_HAVE_CUDA

#include <algorithm>
#include <cstring>
#include <set>

#include "kernels/elementwise_cuda.h"
#include "kernels/norm_cuda.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;
using cuda_detail::kPage;

int64_t CudaModel::Impl::prepare_step(Stack& st, const std::vector<StepChunk>& chunks, int64_t& L) {
  const int64_t V = model.config.vocab_size;
  int64_t R = 0;
  std::set<int> seen;
  for (const auto& ch : chunks) {
    if (ch.slot < 0 || ch.slot >= static_cast<int>(in_use.size()) || !in_use[ch.slot])
      throw Error("CUDA model: slot " + std::to_string(ch.slot) + " is not in use");
    if (!seen.insert(ch.slot).second) throw Error("CUDA model: slot " + std::to_string(ch.slot) + " twice in one step");
    if (ch.T <= 0) throw Error("CUDA model: a chunk with no tokens");
    if (!ch.ids) throw Error("CUDA model: a chunk without token ids");
    for (int64_t t = 0; t < ch.T; ++t)
      if (ch.ids[t] < 0 || ch.ids[t] >= V)
        throw Error("token id " + std::to_string(ch.ids[t]) + " is outside the vocabulary [0, " + std::to_string(V) +
                    ")");
    R += ch.T;
  }
  if (R > opt.max_step_tokens)
    throw Error("CUDA model: " + std::to_string(R) + " rows exceed max_step_tokens " +
                std::to_string(opt.max_step_tokens));
  int64_t want = 0;  // logit rows
  for (const auto& ch : chunks) want += ch.logits == LogitsOut::All ? ch.T : ch.logits == LogitsOut::Last ? 1 : 0;
  if (want > logit_capacity)
    throw Error("CUDA model: " + std::to_string(want) + " logit rows in one step; this model holds " +
                std::to_string(logit_capacity) + " (sampled rows only: CudaModelOptions::sampled_logits_only)");
  // Pages first for every chunk, so that a full cache leaves no chunk half-advanced.
  std::size_t needed = 0;
  for (const auto& ch : chunks) {
    const int64_t pages = (st.pos[ch.slot] + ch.T + kPage - 1) / kPage;
    needed += static_cast<std::size_t>(std::max<int64_t>(0, pages - static_cast<int64_t>(st.pages[ch.slot].size())));
  }
  if (needed > st.free_pages.size()) throw Error("CUDA model: the KV cache is full");
  // The pinned buffers may still feed the copies of a step that failed before its wait.
  check(cudaEventSynchronize(inputs_done), "step inputs");
  const int64_t B = static_cast<int64_t>(chunks.size());
  bool marks = false;  // some chunk marks only part of its rows seen: a mark_seq array follows
  for (const auto& ch : chunks) marks = marks || (ch.seen_rows >= 0 && ch.seen_rows < ch.T);
  int32_t* ids = h_step;
  int32_t *qseq = ids + R, *qpos = qseq + R, *slot_map = qpos + R, *logit_rows = slot_map + R;
  int32_t *cu = logit_rows + R, *slots = cu + B + 1, *mark = slots + B;
  int64_t row = 0, nlogit = 0;
  cu[0] = 0;
  attn_runs.clear();
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const auto& ch = chunks[i];
    auto& pg = st.pages[ch.slot];
    const int64_t end = st.pos[ch.slot] + ch.T;
    const std::size_t first_new = pg.size();
    while (static_cast<int64_t>(pg.size()) * kPage < end) {
      pg.push_back(st.free_pages.back());
      st.free_pages.pop_back();
      st.block_tables_host[static_cast<std::size_t>(ch.slot * num_pages) + pg.size() - 1] = pg.back();
    }
    // Pages are only appended: upload just this slot's new block-table entries.
    if (pg.size() > first_new) {
      const std::size_t at = static_cast<std::size_t>(ch.slot * num_pages) + first_new;
      check(cudaMemcpyAsync(st.block_tables + at, st.block_tables_host + at, (pg.size() - first_new) * 4,
                            cudaMemcpyHostToDevice, stream),
            "block table");
    }
    for (int64_t t = 0; t < ch.T; ++t, ++row) {
      const int64_t p = st.pos[ch.slot] + t;
      ids[row] = ch.ids[t];
      qseq[row] = ch.slot;
      qpos[row] = static_cast<int32_t>(p);
      slot_map[row] = static_cast<int32_t>(pg[p / kPage] * kPage + p % kPage);
      if (marks) mark[row] = ch.seen_rows < 0 || t < ch.seen_rows ? ch.slot : -1;
      if (ch.logits == LogitsOut::All || (ch.logits == LogitsOut::Last && t == ch.T - 1))
        logit_rows[nlogit++] = static_cast<int32_t>(row);
    }
    cu[i + 1] = static_cast<int32_t>(row);
    slots[i] = ch.slot;
    if (ch.T >= kAttentionRunRows) attn_runs.push_back({row - ch.T, ch.T});
  }
  const int64_t words = 5 * R + 2 * B + 1 + (marks ? R : 0);
  check(cudaMemcpyAsync(d_step, h_step, static_cast<std::size_t>(words) * 4, cudaMemcpyHostToDevice, stream),
        "step inputs");
  check(cudaEventRecord(inputs_done, stream), "step inputs");
  d_ids = d_step;
  d_query_seq = d_ids + R;
  d_query_pos = d_query_seq + R;
  d_slot_mapping = d_query_pos + R;
  d_logit_rows = d_slot_mapping + R;
  d_cu = d_logit_rows + R;
  d_slots = d_cu + B + 1;
  d_mark_seq = marks ? d_slots + B : d_query_seq;
  L = nlogit;
  last_rows = R;
  lead_single = 0;
  while (lead_single < B && chunks[static_cast<std::size_t>(lead_single)].T == 1) ++lead_single;
  std::fill(route_rows.begin(), route_rows.end(), 0);
  return R;
}

void CudaModel::Impl::linear(const char* op, const LinearWeight& w, const uint16_t* xin, int64_t rows, void* out,
                             OutType t, bool relu2, cudaStream_t on) {
  LinearCudaArgs a;
  a.w = w;
  a.x = xin;
  a.T = rows;
  a.y = out;
  a.y_type = t;
  a.relu2 = relu2;
  const cudaStream_t s = on ? on : stream;
  use_split_ws(a, s);
  linear_cuda(a, s);
  mark(op, static_cast<double>(w.stored_bytes()));
}

const uint16_t* CudaModel::Impl::run_stack(const Stack& st, int64_t R, int64_t B, const uint16_t** y2_last) {
  const Config& c = model.config;
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.norm_eps);
  // A block's output is y, plus what it folds into the next norm (Folded): a second BF16
  // addend y2 (the shared experts' output, added to y with BF16 rounding), or the weighted
  // combine of the k expert outputs (yk, route_w) of an MoE block without latent projection
  // (combine_add2_rmsnorm_f32_cuda: the same BF16 rounding points as moe_combine_cuda).
  const uint16_t* y_prev = nullptr;
  Folded folded;
  for (const DBlock& b : st.blocks) {
    // MoE blocks with router_fp32 also keep the unrounded normed rows for the router.
    const bool f32_router = b.kind == LayerKind::MoE && opt.router_fp32;
    if (folded.combine_k > 0)
      combine_add2_rmsnorm_f32_cuda(x, yk, route_w, folded.combine_k, folded.y2, b.norm, R, H, eps, u,
                                    f32_router ? uf : nullptr, stream);
    else
      add2_rmsnorm_f32_cuda(x, y_prev, folded.y2, b.norm, R, H, eps, u, f32_router ? uf : nullptr, stream);
    mark("add+norm");
    folded = {};
    switch (b.kind) {
      case LayerKind::Mamba: mamba_block(b, R, B); break;
      case LayerKind::Attention: attention_block(st, b, R); break;
      case LayerKind::MoE: folded = moe_block(b, R, &b == &st.blocks.back()); break;
      case LayerKind::MLP: mlp_block(b, R); break;
    }
    reduce_block(b.kind, R);  // sharded: the ranks' partial outputs summed (moe_block folds nothing then)
    y_prev = y;
  }
  *y2_last = folded.y2;
  return y_prev;
}

void CudaModel::Impl::head(const uint16_t* final_norm, const uint16_t* y_prev, const uint16_t* y2_prev, int64_t R,
                           int64_t L, bool draft) {
  const Config& c = model.config;
  const int64_t H = c.hidden_size;
  add2_rmsnorm_f32_cuda(x, y_prev, y2_prev, final_norm, R, H, static_cast<float>(c.norm_eps), u, uf, stream);
  mark("final_norm");
  if (L == 0) return;  // no chunk of the step needs logits (prefill chunks before the last)
  // L == R: every row needs logits, and prepare_step lists them in order (logit_rows[i] = i).
  if (L != R) {
    gather_rows_bf16_cuda(u, d_logit_rows, L, H, ug, stream);
    mark("head.gather");
  }
  LinearCudaArgs a;
  a.w = draft && lm_head_draft.data ? lm_head_draft : lm_head;
  a.x = L == R ? u : ug;
  a.T = L;
  a.y = sharded() ? logits_part : logits;  // a vocab shard: this rank's columns, then the gather
  a.y_type = OutType::F32;
  use_split_ws(a, stream);
  linear_cuda(a, stream);
  mark("lm_head", static_cast<double>(a.w.stored_bytes()));
  if (sharded()) gather_logits(L);
}

std::vector<std::vector<float>> CudaModel::Impl::collect_logits(Stack& st, const std::vector<StepChunk>& chunks,
                                                                int64_t L) {
  const int64_t V = model.config.vocab_size;
  std::vector<float> host(static_cast<std::size_t>(L * V));
  check(cudaMemcpyAsync(host.data(), logits, host.size() * 4, cudaMemcpyDeviceToHost, stream), "logits");
  check(cudaStreamSynchronize(stream), "forward");
  prof_end();

  std::vector<std::vector<float>> out(chunks.size());
  std::size_t next = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const int64_t n = chunks[i].logits == LogitsOut::All ? chunks[i].T : chunks[i].logits == LogitsOut::Last ? 1 : 0;
    out[i].assign(host.begin() + static_cast<int64_t>(next) * V, host.begin() + static_cast<int64_t>(next + n) * V);
    next += static_cast<std::size_t>(n);
    st.pos[chunks[i].slot] += chunks[i].T;
  }
  return out;
}

void CudaModel::Impl::reset_slot(Stack& st, int slot) {
  const Config& c = model.config;
  st.pos[slot] = 0;
  for (auto& b : st.blocks) {
    if (b.kind != LayerKind::Mamba) continue;
    const int64_t conv = (c.conv_kernel - 1) * c.conv_dim();
    const int64_t ssm = ssm_slot_bytes();
    check(cudaMemsetAsync(b.m.conv_state + slot * conv, 0, static_cast<std::size_t>(conv) * 4, stream), "reset slot");
    check(cudaMemsetAsync(b.m.ssm_state + slot * ssm, 0, static_cast<std::size_t>(ssm), stream), "reset slot");
  }
}

void CudaModel::Impl::free_slot(Stack& st, int slot) {
  for (int32_t p : st.pages[slot]) st.free_pages.push_back(p);
  st.pages[slot].clear();
  st.pos[slot] = 0;
}

}  // namespace nemotron::model

#endif
