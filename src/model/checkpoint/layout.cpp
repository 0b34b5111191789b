// The Hub layout of a Nemotron 3 checkpoint, walked once per config (see weights.h).
#include <cmath>

#include "model/checkpoint/weights.h"

namespace nemotron::model {
namespace {

void walk_block(const Config& c, LayerKind kind, const std::string& prefix, TensorBinder& b,
                BlockWeights& out) {
  const int64_t H = c.hidden_size;
  out.kind = kind;
  out.prefix = prefix;
  out.norm = b.param(prefix + "norm.weight", {H}, false);
  const std::string m = prefix + "mixer.";
  switch (kind) {
    case LayerKind::Mamba: {
      auto& w = out.mamba;
      const int64_t K = c.conv_kernel, C = c.conv_dim(), Hm = c.mamba_num_heads;
      w.in_proj = b.linear(m + "in_proj", c.in_proj_dim(), H, true);
      w.conv_weight = b.param(m + "conv1d.weight", {C, 1, K}, false);
      if (c.use_conv_bias) w.conv_bias = b.param(m + "conv1d.bias", {C}, false);
      w.dt_bias = b.param(m + "dt_bias", {Hm}, false);
      w.A = b.param(m + "A_log", {Hm}, true);
      for (auto& a : w.A) a = -std::exp(a);
      w.D = b.param(m + "D", {Hm}, true);
      w.norm = b.param(m + "norm.weight", {c.d_inner()}, false);
      w.out_proj = b.linear(m + "out_proj", H, c.d_inner(), true);
      break;
    }
    case LayerKind::Attention: {
      auto& w = out.attn;
      w.q = b.linear(m + "q_proj", c.q_dim(), H, true);
      w.k = b.linear(m + "k_proj", c.kv_dim(), H, true);
      w.v = b.linear(m + "v_proj", c.kv_dim(), H, true);
      w.o = b.linear(m + "o_proj", H, c.q_dim(), true);
      const float ks = b.kv_scale({m + "k_proj.k_scale", m + "k_scale"});
      const float vs = b.kv_scale({m + "v_proj.v_scale", m + "v_scale"});
      w.has_kv_scales = ks > 0 || vs > 0;
      w.k_scale = ks > 0 ? ks : 1.0f;
      w.v_scale = vs > 0 ? vs : 1.0f;
      break;
    }
    case LayerKind::MoE: {
      auto& w = out.moe;
      const int64_t E = c.n_routed_experts, Din = c.expert_input_dim(), I = c.moe_intermediate_size;
      w.gate = b.linear(m + "gate", E, H, false);
      w.gate_bias = b.param(m + "gate.e_score_correction_bias", {E}, true);
      w.up.reserve(static_cast<std::size_t>(E));
      w.down.reserve(static_cast<std::size_t>(E));
      for (int64_t e = 0; e < E; ++e) {
        const std::string ex = m + "experts." + std::to_string(e) + ".";
        w.up.push_back(b.linear(ex + "up_proj", I, Din, true));
        w.down.push_back(b.linear(ex + "down_proj", Din, I, true));
      }
      if (c.n_shared_experts > 0) {
        const int64_t Is = c.moe_shared_expert_intermediate_size;
        w.shared_up = b.linear(m + "shared_experts.up_proj", Is, H, true);
        w.shared_down = b.linear(m + "shared_experts.down_proj", H, Is, true);
      }
      if (c.moe_latent_size > 0) {
        w.fc1_latent = b.linear(m + "fc1_latent_proj", c.moe_latent_size, H, true);
        w.fc2_latent = b.linear(m + "fc2_latent_proj", H, c.moe_latent_size, true);
      }
      break;
    }
    case LayerKind::MLP: {
      out.mlp.up = b.linear(m + "up_proj", c.intermediate_size, H, true);
      out.mlp.down = b.linear(m + "down_proj", H, c.intermediate_size, true);
      break;
    }
  }
}

}  // namespace

ModelWeights walk_layout(const Config& c, TensorBinder& b) {
  const int64_t H = c.hidden_size, V = c.vocab_size;
  ModelWeights w;
  w.embeddings = b.embedding("backbone.embeddings.weight", V, H);
  w.blocks.resize(c.layers.size());
  for (std::size_t l = 0; l < c.layers.size(); ++l)
    walk_block(c, c.layers[l], "backbone.layers." + std::to_string(l) + ".", b, w.blocks[l]);
  w.norm_f = b.param("backbone.norm_f.weight", {H}, false);
  w.lm_head = b.linear("lm_head", V, H, true);
  if (c.has_mtp()) {
    w.has_mtp = true;
    auto& m = w.mtp;
    m.enorm = b.param("mtp.layers.0.enorm.weight", {H}, false);
    m.hnorm = b.param("mtp.layers.0.hnorm.weight", {H}, false);
    m.eh_proj = b.linear("mtp.layers.0.eh_proj", H, 2 * H, true);
    m.blocks.resize(c.mtp_layers.size());
    for (std::size_t j = 0; j < c.mtp_layers.size(); ++j)
      walk_block(c, c.mtp_layers[j], "mtp.layers." + std::to_string(j) + ".", b, m.blocks[j]);
    m.final_norm = b.param("mtp.layers." + std::to_string(c.mtp_layers.size() - 1) +
                               ".final_layernorm.weight", {H}, false);
  }
  return w;
}

}  // namespace nemotron::model
