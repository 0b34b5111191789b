#include "model/accounting.h"

#include <algorithm>

namespace nemotron::model {
namespace {

int64_t params_of(const Linear& L) { return L.w.out * L.w.in; }

class Accumulator {
 public:
  void module(const std::string& cls, const Linear& L) {
    if (!L.w.data) return;
    auto& m = modules_[cls];
    m.module_class = cls;
    m.formats[kernels::weight_format_name(L.w.format)]++;
    m.params += params_of(L);
    m.bytes += L.w.stored_bytes();
  }
  void token(const std::string& component, int64_t params, int64_t bytes) {
    auto& c = components_[component];
    c.component = component;
    c.params += params;
    c.bytes += bytes;
  }
  void token(const std::string& component, const Linear& L) {
    if (L.w.data) token(component, params_of(L), L.w.stored_bytes());
  }
  std::map<std::string, ModuleFormatCount> modules_;
  std::map<std::string, ComponentBytes> components_;
};

int64_t small_param_count(const BlockWeights& b) {
  const auto& m = b.mamba;
  return static_cast<int64_t>(b.norm.size() + m.conv_weight.size() + m.conv_bias.size() + m.dt_bias.size() +
                              m.A.size() + m.D.size() + m.norm.size() + b.moe.gate_bias.size());
}

void block_modules(Accumulator& acc, const BlockWeights& b, const std::string& prefix) {
  switch (b.kind) {
    case LayerKind::Mamba:
      acc.module(prefix + "mamba.in_proj", b.mamba.in_proj);
      acc.module(prefix + "mamba.out_proj", b.mamba.out_proj);
      break;
    case LayerKind::Attention:
      acc.module(prefix + "attention.q_proj", b.attn.q);
      acc.module(prefix + "attention.k_proj", b.attn.k);
      acc.module(prefix + "attention.v_proj", b.attn.v);
      acc.module(prefix + "attention.o_proj", b.attn.o);
      break;
    case LayerKind::MoE:
      acc.module(prefix + "moe.router", b.moe.gate);
      for (const auto& e : b.moe.up) acc.module(prefix + "moe.experts.up_proj", e);
      for (const auto& e : b.moe.down) acc.module(prefix + "moe.experts.down_proj", e);
      acc.module(prefix + "moe.shared_experts.up_proj", b.moe.shared_up);
      acc.module(prefix + "moe.shared_experts.down_proj", b.moe.shared_down);
      acc.module(prefix + "moe.fc1_latent_proj", b.moe.fc1_latent);
      acc.module(prefix + "moe.fc2_latent_proj", b.moe.fc2_latent);
      break;
    case LayerKind::MLP:
      acc.module(prefix + "mlp.up_proj", b.mlp.up);
      acc.module(prefix + "mlp.down_proj", b.mlp.down);
      break;
  }
}

}  // namespace

ModelAccounting account(const Model& model, kernels::StateDType ssm, int64_t kv_element_bytes) {
  const Config& c = model.config;
  const ModelWeights& w = model.weights;
  Accumulator acc;
  ModelAccounting out;
  const int64_t emb_row_bytes = w.embeddings.stored_bytes() / std::max<int64_t>(1, w.embeddings.out);
  acc.token("embedding (one row)", c.hidden_size, emb_row_bytes);
  out.total_params += w.embeddings.out * w.embeddings.in;
  for (const auto& b : w.blocks) {
    block_modules(acc, b, "");
    out.total_params += small_param_count(b);
    acc.token("norms, conv, A, D (small)", small_param_count(b), 4 * small_param_count(b));
    switch (b.kind) {
      case LayerKind::Mamba:
        acc.token("mamba in/out_proj", b.mamba.in_proj);
        acc.token("mamba in/out_proj", b.mamba.out_proj);
        break;
      case LayerKind::Attention:
        for (const Linear* L : {&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o}) acc.token("attention q/k/v/o", *L);
        break;
      case LayerKind::MoE: {
        acc.token("router", b.moe.gate);
        acc.token("latent fc1/fc2", b.moe.fc1_latent);
        acc.token("latent fc1/fc2", b.moe.fc2_latent);
        acc.token("shared experts", b.moe.shared_up);
        acc.token("shared experts", b.moe.shared_down);
        // k experts per token, at the mean size of this layer's experts.
        int64_t p = 0, by = 0;
        for (std::size_t e = 0; e < b.moe.up.size(); ++e) {
          p += params_of(b.moe.up[e]) + params_of(b.moe.down[e]);
          by += b.moe.up[e].w.stored_bytes() + b.moe.down[e].w.stored_bytes();
        }
        const int64_t E = std::max<int64_t>(1, static_cast<int64_t>(b.moe.up.size()));
        acc.token("routed experts (active)", p / E * c.num_experts_per_tok, by / E * c.num_experts_per_tok);
        out.total_params += p;
        break;
      }
      case LayerKind::MLP:
        acc.token("dense MLP", b.mlp.up);
        acc.token("dense MLP", b.mlp.down);
        break;
    }
  }
  acc.token("lm_head", w.lm_head);
  // Trunk parameter total: every stored linear (routed experts counted above) + norms.
  for (const auto& [name, comp] : acc.components_) {
    if (name == "routed experts (active)" || name == "embedding (one row)" || name == "norms, conv, A, D (small)") continue;
    out.total_params += comp.params;
  }
  out.total_params += static_cast<int64_t>(w.norm_f.size());
  for (auto& [name, comp] : acc.components_) {
    out.per_token.push_back(comp);
    if (name != "embedding (one row)") out.active_params += comp.params;
    out.weight_bytes_per_token += comp.bytes;
  }
  std::sort(out.per_token.begin(), out.per_token.end(),
            [](const ComponentBytes& a, const ComponentBytes& b) { return a.bytes > b.bytes; });
  if (w.has_mtp) {
    Accumulator mtp;
    mtp.module("mtp.eh_proj", w.mtp.eh_proj);
    for (const auto& b : w.mtp.blocks) block_modules(mtp, b, "mtp.");
    for (auto& [name, m] : mtp.modules_) {
      out.mtp_params += m.params;
      acc.modules_[name] = m;
    }
  }
  for (auto& [name, m] : acc.modules_) out.modules.push_back(m);
  const int64_t mamba = c.count(LayerKind::Mamba);
  out.state_bytes_per_token = mamba * (2 * kernels::state_dtype_bytes(ssm) * c.mamba_num_heads * c.mamba_head_dim *
                                           c.ssm_state_size +
                                       2 * 2 * (c.conv_kernel - 1) * c.conv_dim());
  out.kv_bytes_per_token_per_position = c.count(LayerKind::Attention) * 2 * c.kv_dim() * kv_element_bytes;
  return out;
}

}  // namespace nemotron::model
