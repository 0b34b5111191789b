// One step of a CudaModel block stack: step inputs, the blocks' kernel sequences, the final
// norm and lm_head (see cuda_model.h, cuda_model_internal.h). Host-side orchestration only;
// the device code is in src/kernels/cuda (one launcher per op).
#ifdef NEMOTRON_HAVE_CUDA

#include <algorithm>
#include <cstring>
#include <set>

#include "kernels/elementwise_cuda.h"
#include "kernels/mamba_cuda.h"
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
  int32_t* ids = h_step;
  int32_t *qseq = ids + R, *qpos = qseq + R, *slot_map = qpos + R, *logit_rows = slot_map + R;
  int32_t *cu = logit_rows + R, *slots = cu + B + 1;
  int64_t row = 0, nlogit = 0;
  cu[0] = 0;
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
      if (ch.all_logits || t == ch.T - 1) logit_rows[nlogit++] = static_cast<int32_t>(row);
    }
    cu[i + 1] = static_cast<int32_t>(row);
    slots[i] = ch.slot;
  }
  const int64_t words = 5 * R + 2 * B + 1;
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
  L = nlogit;
  last_rows = R;
  std::fill(route_rows.begin(), route_rows.end(), 0);
  return R;
}

const uint16_t* CudaModel::Impl::run_stack(const Stack& st, int64_t R, int64_t B, const uint16_t** y2_last) {
  const Config& c = model.config;
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.norm_eps);
  cudaStream_t sm = stream;
  cudaStream_t ls = sm;  // the stream `linear` launches on (side_stream for the shared experts)
  auto linear = [&](const char* op, const LinearWeight& w, const uint16_t* xin, int64_t rows, void* out,
                    OutType t = OutType::BF16, bool relu2 = false) {
    LinearCudaArgs a;
    a.w = w;
    a.x = xin;
    a.T = rows;
    a.y = out;
    a.y_type = t;
    a.relu2 = relu2;
    linear_cuda(a, ls);
    mark(op, static_cast<double>(w.stored_bytes()));
  };
  // A block's output is y_prev, plus y2_prev (BF16, added to it with BF16 rounding) after an
  // MoE block with shared experts: the next norm kernel does that add (add2_rmsnorm_f32_cuda).
  const uint16_t *y_prev = nullptr, *y2_prev = nullptr;
  // combine_k > 0: the previous block was an MoE block without latent projection whose
  // weighted combine of the k expert outputs (yk, route_w) is folded into this block's norm
  // (combine_add2_rmsnorm_f32_cuda: the same BF16 rounding points as moe_combine_cuda).
  int64_t combine_k = 0;
  for (const DBlock& b : st.blocks) {
    // MoE blocks with router_fp32 also keep the unrounded normed rows for the router.
    const bool f32_router = b.kind == LayerKind::MoE && opt.router_fp32;
    if (combine_k > 0)
      combine_add2_rmsnorm_f32_cuda(x, yk, route_w, combine_k, y2_prev, b.norm, R, H, eps, u, f32_router ? uf : nullptr,
                                    sm);
    else
      add2_rmsnorm_f32_cuda(x, y_prev, y2_prev, b.norm, R, H, eps, u, f32_router ? uf : nullptr, sm);
    mark("add+norm");
    y2_prev = nullptr;
    combine_k = 0;
    switch (b.kind) {
      case LayerKind::Mamba: {
        const int64_t W = c.in_proj_dim(), di = c.d_inner(), C = c.conv_dim();
        linear("mamba.in_proj", b.m.in_proj, u, R, big);  // [R, z | xBC | dt]
        // Decode-only steps (every chunk one token: R == B, row i is sequence i): conv update,
        // state update and gated norm in one kernel.
        if (R == B && mamba_decode_fused_supported(c.mamba_num_heads, c.mamba_head_dim, c.ssm_state_size, c.n_groups,
                                                   c.conv_kernel)) {
          MambaDecodeArgs da;
          da.in_proj = big;
          da.in_stride = W;
          da.conv_state = b.m.conv_state;
          da.conv_w = b.m.conv_w;
          da.conv_b = b.m.conv_b;
          da.ssm_state = b.m.ssm_state;
          da.dt_bias = b.m.dt_bias;
          da.A = b.m.A;
          da.D = b.m.D;
          da.norm_w = b.m.norm;
          da.slot = d_slots;
          da.rows = R;
          da.heads = c.mamba_num_heads;
          da.head_dim = c.mamba_head_dim;
          da.state_dim = c.ssm_state_size;
          da.groups = c.n_groups;
          da.K = c.conv_kernel;
          da.dt_min = static_cast<float>(c.time_step_limit_min);
          da.dt_max = static_cast<float>(c.time_step_limit_max);
          da.eps = eps;
          da.out = g;
          mamba_decode_fused_cuda(da, sm);
          mark("mamba.fused_decode");
          linear("mamba.out_proj", b.m.out_proj, g, R, y);
          break;
        }
        ConvPrefillArgs ca;
        ca.xbc = big + di;
        ca.xbc_stride = W;
        ca.state = b.m.conv_state;
        ca.slot = d_slots;
        ca.cu_rows = d_cu;
        ca.w = b.m.conv_w;
        ca.bias = b.m.conv_b;
        ca.B = B;
        ca.rows = R;
        ca.C = C;
        ca.K = c.conv_kernel;
        ca.out = conv_out;
        conv1d_prefill_silu_cuda(ca, sm);
        mark("mamba.conv");
        SsmScanArgs sa;
        sa.xbc = conv_out;
        sa.xbc_stride = C;
        sa.dt_raw = big + di + C;
        sa.dt_stride = W;
        sa.dt_bias = b.m.dt_bias;
        sa.A = b.m.A;
        sa.D = b.m.D;
        sa.state = b.m.ssm_state;
        sa.slot = d_slots;
        sa.cu_rows = d_cu;
        sa.B = B;
        sa.rows = R;
        sa.heads = c.mamba_num_heads;
        sa.head_dim = c.mamba_head_dim;
        sa.state_dim = c.ssm_state_size;
        sa.groups = c.n_groups;
        sa.dt_min = static_cast<float>(c.time_step_limit_min);
        sa.dt_max = static_cast<float>(c.time_step_limit_max);
        sa.y = ssm_y;
        ssm_scan_cuda(sa, sm);
        mark("mamba.scan");
        gated_rmsnorm_cuda(ssm_y, big, W, b.m.norm, R, di, di / c.n_groups, eps, g, sm);
        mark("mamba.gated_norm");
        linear("mamba.out_proj", b.m.out_proj, g, R, y);
        break;
      }
      case LayerKind::Attention: {
        {  // one launch for the three where the warp-row GEMV serves them (decode, BF16 / FP8)
          const LinearCudaArgs qkv[3] = {{b.a.q, u, R, q}, {b.a.k, u, R, kb}, {b.a.v, u, R, vb}};
          linear_group_cuda(qkv, 3, sm);
          mark("attn.qkv", static_cast<double>(b.a.q.stored_bytes() + b.a.k.stored_bytes() + b.a.v.stored_bytes()));
        }
        kv_cache_write_cuda(b.a.cache, kb, vb, d_slot_mapping, R, sm);
        mark("attn.kv_write");
        PagedAttentionArgs pa;
        pa.q = q;
        pa.T = R;
        pa.q_heads = c.num_attention_heads;
        pa.query_seq = d_query_seq;
        pa.query_pos = d_query_pos;
        pa.block_tables = st.block_tables;
        pa.max_pages = num_pages;
        pa.cache = b.a.cache;
        pa.out = o;
        pa.workspace = attn_ws;
        pa.workspace_bytes = attn_ws_bytes;
        paged_attention_cuda(pa, sm);
        mark("attn.attention");
        linear("attn.o", b.a.o, o, R, y);
        break;
      }
      case LayerKind::MoE: {
        const int64_t k = c.num_experts_per_tok, Din = c.expert_input_dim();
        // The shared expert reads only u: it runs on the side stream, concurrently with the
        // router and the routed experts, and joins before the next block's norm (which adds
        // its output sd). Profiled steps keep everything on the main stream, so that each op
        // is timed alone.
        // LatentMoE's input projection (r = u fc1^T) does not depend on the routing either: it
        // runs first on the side stream, overlapping the gate and top-k (latent_ev).
        const bool shared = c.n_shared_experts > 0, latent = c.moe_latent_size > 0;
        const bool side = (shared || latent) && !prof_active;
        if (side) {
          check(cudaEventRecord(fork_ev, sm), "MoE fork");
          check(cudaStreamWaitEvent(side_stream, fork_ev, 0), "MoE fork");
          ls = side_stream;
        }
        if (latent) {
          linear("moe.latent_in", b.e.fc1, u, R, r);
          if (side) check(cudaEventRecord(latent_ev, side_stream), "MoE latent");
        }
        if (shared) {
          linear("moe.shared_up", b.e.shared_up, u, R, sh, OutType::BF16, true);  // relu² in the epilogue
          linear("moe.shared_down", b.e.shared_down, sh, R, sd);
        }
        ls = sm;
        if (side) check(cudaEventRecord(join_ev, side_stream), "MoE join");
        const auto* gate_w = static_cast<const uint16_t*>(b.e.gate.data);
        if (f32_router)
          router_logits_f32_cuda(uf, gate_w, R, c.n_routed_experts, H, router_logits, sm);
        else if (R <= kLinearGemvMaxRows && b.e.gate.format == WeightFormat::Dense && H % 8 == 0)
          gate_logits_bf16_cuda(u, gate_w, R, c.n_routed_experts, H, router_logits, sm);
        else
          linear_cuda({b.e.gate, u, R, router_logits, OutType::F32}, sm);
        mark("moe.gate", static_cast<double>(b.e.gate.stored_bytes()));
        RouterParams rp{c.n_routed_experts, k, c.n_group, c.topk_group, c.norm_topk_prob,
                        static_cast<float>(c.routed_scaling_factor)};
        route_topk_cuda(router_logits, b.e.bias, rp, R, d_route_ids, route_w, sm);
        mark("moe.topk");
        if (record_routing) {
          check(cudaMemcpyAsync(route_log + static_cast<int64_t>(b.index) * opt.max_step_tokens * k, d_route_ids,
                                static_cast<std::size_t>(R * k) * 4, cudaMemcpyDeviceToDevice, sm),
                "routing record");
          route_rows[static_cast<std::size_t>(b.index)] = R;
        }
        const uint16_t* rin = latent ? r : u;
        if (latent && side) check(cudaStreamWaitEvent(sm, latent_ev, 0), "MoE latent");
        ExpertGemvArgs ea;
        ea.w = b.e.up;
        ea.ids = d_route_ids;
        ea.T = R;
        ea.k = k;
        ea.x = rin;
        ea.relu2 = true;
        ea.y = h;
        // From kExpertGroupedMinPairs pairs on, expert_gemv_cuda runs the grouped GEMM in this
        // workspace (each selected expert read once per row tile instead of once per pair).
        ea.workspace = moe_ws;
        ea.workspace_bytes = moe_ws_bytes;
        expert_gemv_cuda(ea, sm);
        mark("moe.experts_up");
        ea.w = b.e.down;
        ea.x = h;
        ea.x_per_slot = true;
        ea.relu2 = false;
        ea.y = yk;
        expert_gemv_cuda(ea, sm);
        mark("moe.experts_down");
        if (c.moe_latent_size > 0) {
          moe_combine_cuda(yk, route_w, R, k, Din, acc, sm);
          mark("moe.combine");
          linear("moe.latent_out", b.e.fc2, acc, R, y);
        } else if (&b != &st.blocks.back() && Din == H) {
          combine_k = k;  // done by the next block's norm
        } else {
          moe_combine_cuda(yk, route_w, R, k, Din, y, sm);
          mark("moe.combine");
        }
        if (side) check(cudaStreamWaitEvent(sm, join_ev, 0), "MoE join");
        if (shared) y2_prev = sd;  // y + sd: added by the next norm
        break;
      }
      case LayerKind::MLP:
        linear("mlp.up", b.mlp_up, u, R, h, OutType::BF16, true);  // relu² in the epilogue
        linear("mlp.down", b.mlp_down, h, R, y);
        break;
    }
    y_prev = y;
  }
  *y2_last = y2_prev;
  return y_prev;
}

void CudaModel::Impl::head(const uint16_t* final_norm, const uint16_t* y_prev, const uint16_t* y2_prev, int64_t R,
                           int64_t L) {
  const Config& c = model.config;
  const int64_t H = c.hidden_size;
  add2_rmsnorm_f32_cuda(x, y_prev, y2_prev, final_norm, R, H, static_cast<float>(c.norm_eps), u, uf, stream);
  mark("final_norm");
  // L == R: every row needs logits, and prepare_step lists them in order (logit_rows[i] = i).
  if (L != R) {
    gather_rows_bf16_cuda(u, d_logit_rows, L, H, ug, stream);
    mark("head.gather");
  }
  LinearCudaArgs a;
  a.w = lm_head;
  a.x = L == R ? u : ug;
  a.T = L;
  a.y = logits;
  a.y_type = OutType::F32;
  linear_cuda(a, stream);
  mark("lm_head", static_cast<double>(lm_head.stored_bytes()));
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
    const int64_t n = chunks[i].all_logits ? chunks[i].T : 1;
    out[i].assign(host.begin() + static_cast<int64_t>(next) * V, host.begin() + static_cast<int64_t>(next + n) * V);
    next += static_cast<std::size_t>(n);
    st.pos[chunks[i].slot] += chunks[i].T;
  }
  return out;
}

std::vector<int32_t> CudaModel::Impl::collect_greedy(Stack& st, const std::vector<StepChunk>& chunks, int64_t L) {
  check(cudaMemcpyAsync(h_argmax, d_argmax, static_cast<std::size_t>(L) * 4, cudaMemcpyDeviceToHost, stream),
        "greedy ids");
  check(cudaStreamSynchronize(stream), "forward");
  prof_end();
  for (const auto& ch : chunks) st.pos[ch.slot] += ch.T;
  return std::vector<int32_t>(h_argmax, h_argmax + L);
}

void CudaModel::Impl::reset_slot(Stack& st, int slot) {
  const Config& c = model.config;
  st.pos[slot] = 0;
  for (auto& b : st.blocks) {
    if (b.kind != LayerKind::Mamba) continue;
    const int64_t conv = (c.conv_kernel - 1) * c.conv_dim();
    const int64_t ssm = c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size;
    check(cudaMemsetAsync(b.m.conv_state + slot * conv, 0, static_cast<std::size_t>(conv) * 4, stream), "reset slot");
    check(cudaMemsetAsync(b.m.ssm_state + slot * ssm, 0, static_cast<std::size_t>(ssm) * 4, stream), "reset slot");
  }
}

void CudaModel::Impl::free_slot(Stack& st, int slot) {
  for (int32_t p : st.pages[slot]) st.free_pages.push_back(p);
  st.pages[slot].clear();
  st.pos[slot] = 0;
}

}  // namespace nemotron::model

#endif
