#include "model/cuda/cuda_memory.h"

#include <algorithm>

#include "kernels/attention_splits.h"
#include "kernels/linear_cuda.h"
#include "kernels/moe_cuda.h"

namespace nemotron::model {
namespace {

using kernels::LinearWeight;
using kernels::WeightFormat;

int64_t round_up32(int64_t v) { return (v + 31) / 32 * 32; }

// Device bytes of a linear uploaded as [out_pad, in_pad] (cuda_model_upload.cpp).
int64_t linear_bytes(const LinearWeight& w, int64_t out_pad, int64_t in_pad) {
  if (!w.data) return 0;
  switch (w.format) {
    case WeightFormat::Dense: return out_pad * in_pad * 2;
    case WeightFormat::FP8: return out_pad * in_pad;
    case WeightFormat::NVFP4: return out_pad * in_pad / 2 + out_pad * in_pad / 16;
  }
  return 0;
}
int64_t linear_bytes(const LinearWeight& w) { return linear_bytes(w, w.out, w.in); }
int64_t bf16_bytes(const std::vector<float>& v) { return static_cast<int64_t>(v.size()) * 2; }
int64_t f32_bytes(const std::vector<float>& v) { return static_cast<int64_t>(v.size()) * 4; }

struct Acc {
  CudaMemory mem;
  int64_t attention_blocks = 0;
};

void add_block(const Config& c, const CudaModelOptions& o, int64_t pages, const BlockWeights& b, Acc& a) {
  const int64_t S = o.max_seqs;
  a.mem.weights += bf16_bytes(b.norm);
  switch (b.kind) {
    case LayerKind::Mamba: {
      const auto& m = b.mamba;
      a.mem.weights += linear_bytes(m.in_proj.w) + linear_bytes(m.out_proj.w) + bf16_bytes(m.conv_weight) +
                       bf16_bytes(m.conv_bias) + bf16_bytes(m.norm) + f32_bytes(m.dt_bias) + f32_bytes(m.A) +
                       f32_bytes(m.D);
      a.mem.state += S * 4 * ((c.conv_kernel - 1) * c.conv_dim() + c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size);
      break;
    }
    case LayerKind::Attention:
      a.mem.weights += linear_bytes(b.attn.q.w) + linear_bytes(b.attn.k.w) + linear_bytes(b.attn.v.w) +
                       linear_bytes(b.attn.o.w);
      a.mem.kv += 2 * pages * 16 * c.kv_dim() * (o.kv_fp8 ? 1 : 2);
      ++a.attention_blocks;
      break;
    case LayerKind::MoE: {
      const auto& e = b.moe;
      const int64_t Din = c.expert_input_dim(), I_pad = round_up32(c.moe_intermediate_size),
                    Is_pad = round_up32(c.moe_shared_expert_intermediate_size);
      a.mem.weights += linear_bytes(e.gate.w) + f32_bytes(e.gate_bias);
      for (const auto* table : {&e.up, &e.down}) {
        if (table->empty()) continue;
        const bool up = table == &e.up;
        for (const auto& x : *table) a.mem.weights += linear_bytes(x.w, up ? I_pad : Din, up ? Din : I_pad);
        a.mem.weights += static_cast<int64_t>(table->size()) * (8 + 8 + 4);  // data, block-scale pointers, scale
      }
      if (c.n_shared_experts > 0)
        a.mem.weights += linear_bytes(e.shared_up.w, Is_pad, c.hidden_size) +
                         linear_bytes(e.shared_down.w, c.hidden_size, Is_pad);
      if (c.moe_latent_size > 0) a.mem.weights += linear_bytes(e.fc1_latent.w) + linear_bytes(e.fc2_latent.w);
      break;
    }
    case LayerKind::MLP: {
      const int64_t Imlp_pad = round_up32(c.intermediate_size);
      a.mem.weights += linear_bytes(b.mlp.up.w, Imlp_pad, c.hidden_size) + linear_bytes(b.mlp.down.w, c.hidden_size, Imlp_pad);
      break;
    }
  }
}

}  // namespace

int64_t cuda_kv_pages(const CudaModelOptions& o) { return (o.kv_tokens + 15) / 16 + o.max_seqs; }

CudaMemory cuda_memory(const Model& m, const CudaModelOptions& o, int sms) {
  const Config& c = m.config;
  const ModelWeights& w = m.weights;
  const int64_t S = o.max_seqs, R = o.max_step_tokens, pages = cuda_kv_pages(o), H = c.hidden_size;
  Acc a;
  a.mem.weights += linear_bytes(w.embeddings) + linear_bytes(w.lm_head.w) + bf16_bytes(w.norm_f);
  for (const auto& b : w.blocks) add_block(c, o, pages, b, a);
  const int64_t stacks = c.has_mtp() ? 2 : 1;
  if (c.has_mtp()) {
    const MtpWeights& t = w.mtp;
    a.mem.weights += bf16_bytes(t.enorm) + bf16_bytes(t.hnorm) + bf16_bytes(t.final_norm) + linear_bytes(t.eh_proj.w);
    for (const auto& b : t.blocks) add_block(c, o, pages, b, a);
  }
  a.mem.tables = stacks * S * pages * 4;

  // Step buffers (CudaModel::Impl::alloc_activations; element sizes 4 = int32/fp32, 2 = BF16).
  const int64_t k = std::max<int64_t>(1, c.num_experts_per_tok), one = 1;
  const int64_t I_pad = round_up32(c.moe_intermediate_size), Is_pad = round_up32(c.moe_shared_expert_intermediate_size),
                Imlp_pad = round_up32(c.intermediate_size), Din = std::max(one, c.expert_input_dim());
  int64_t f32 = 0, bf16 = 0, i32 = 0;
  i32 += (5 * R + 2 * S + 1) + R + R * k;  // step inputs, argmax, expert ids
  f32 += 2 * R * H + R * std::max(one, c.conv_dim()) + R * std::max(one, c.d_inner()) +
         R * std::max(one, c.n_routed_experts) + R * k + R * c.vocab_size + (c.has_mtp() ? R * H : 0);
  bf16 += 2 * R * H + R * std::max(one, c.in_proj_dim()) + R * std::max(one, c.d_inner()) +
          2 * R * std::max(one, c.q_dim()) + 2 * R * std::max(one, c.kv_dim()) + R * Din +
          R * k * std::max({I_pad, Imlp_pad, one}) + R * k * Din + R * Din + R * std::max(one, Is_pad) + 2 * R * H +
          (c.has_mtp() ? R * 2 * H : 0);
  a.mem.activations = 4 * (f32 + i32) + 2 * bf16;
  if (c.n_routed_experts > 0 && R * k >= kernels::kExpertGroupedMinPairs)
    a.mem.activations += kernels::expert_gemv_workspace_bytes(R, k, c.n_routed_experts);
  a.mem.pinned_host = 4 * ((5 * R + 2 * S + 1) + R + stacks * S * pages);

  if (a.attention_blocks > 0 && c.num_attention_heads > 0 && c.num_key_value_heads > 0) {
    kernels::PagedAttentionArgs pa;
    pa.q_heads = c.num_attention_heads;
    pa.max_pages = pages;
    pa.cache.num_pages = pages;
    pa.cache.page_size = 16;
    pa.cache.kv_heads = c.num_key_value_heads;
    pa.cache.head_dim = c.head_dim;
    for (pa.T = 1; pa.T <= R; ++pa.T)
      a.mem.attention_workspace =
          std::max(a.mem.attention_workspace, kernels::attention_splits::workspace_bytes(pa, sms));
  }
  const int64_t nodes = 8 + kGraphNodesPerBlock * static_cast<int64_t>(w.blocks.size());
  a.mem.graphs = S * (kGraphBytesPerGraph + nodes * kGraphBytesPerNode);
  return a.mem;
}

}  // namespace nemotron::model
