#pragma once
// The one description of a Nemotron 3 (model_type nemotron_h) model: every field the
// engine reads from config.json, with its meaning and shape role. Variants (latent MoE,
// grouped routing, MTP, dense MLP blocks) are fields, never model names.
//
// Notation used in shape comments across the code:
//   H  hidden_size          V  vocab_size
//   Hq num_attention_heads  Hkv num_key_value_heads  Dh head_dim
//   Hm mamba_num_heads      P  mamba_head_dim   N ssm_state_size   G n_groups (B/C groups)
//   K  conv_kernel          d_inner = Hm*P      conv_dim = d_inner + 2*G*N
//   E  n_routed_experts     k num_experts_per_tok  I moe_intermediate_size
//   Is moe_shared_expert_intermediate_size      L moe_latent_size (0 = no latent projection)
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace nemotron::model {

// Mixer of one block. Pattern symbols: M mamba, * attention, E moe, - mlp.
enum class LayerKind { Mamba, Attention, MoE, MLP };

char layer_symbol(LayerKind kind);
const char* layer_kind_name(LayerKind kind);

struct Config {
  // Source, for messages.
  std::string path;

  int64_t vocab_size = 0;   // V
  int64_t hidden_size = 0;  // H
  std::vector<LayerKind> layers;      // trunk blocks, in order
  std::vector<LayerKind> mtp_layers;  // MTP head blocks (empty when there is no MTP head)
  int num_nextn_predict_layers = 0;   // 0 or 1 (one MTP module made of mtp_layers)
  double norm_eps = 1e-5;             // layer_norm_epsilon (all RMSNorms)

  // Attention (NoPE GQA).
  int64_t num_attention_heads = 0;   // Hq
  int64_t num_key_value_heads = 0;   // Hkv
  int64_t head_dim = 0;              // Dh

  // Mamba-2.
  int64_t mamba_num_heads = 0;  // Hm
  int64_t mamba_head_dim = 0;   // P
  int64_t ssm_state_size = 0;   // N
  int64_t n_groups = 0;         // G
  int64_t conv_kernel = 0;      // K
  int64_t chunk_size = 0;       // SSD chunk length (prefill kernels)
  bool use_conv_bias = true;
  double time_step_limit_min = 0.0;      // dt clamp after softplus; (0, inf) = no clamp
  double time_step_limit_max = std::numeric_limits<double>::infinity();
  // The SSM state's storage type the checkpoint asks for: "float32", "bfloat16" or "float16"
  // (--mamba-ssm-cache-dtype auto follows it; every published Nemotron 3 config says float32).
  std::string mamba_ssm_cache_dtype = "float32";

  // MoE.
  int64_t n_routed_experts = 0;          // E
  int64_t num_experts_per_tok = 0;       // k
  int64_t moe_intermediate_size = 0;     // I
  int64_t moe_shared_expert_intermediate_size = 0;  // Is (0 with n_shared_experts = 0)
  int64_t n_shared_experts = 0;          // 0 or 1
  int64_t moe_latent_size = 0;           // L; 0 = experts work at width H
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = true;
  int64_t n_group = 1;                   // router groups (not Mamba groups)
  int64_t topk_group = 1;

  // Dense MLP blocks ('-').
  int64_t intermediate_size = 0;

  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1, pad_token_id = -1;
  std::vector<int64_t> eos_token_ids;  // eos_token_id: an int or a list (e.g. [2, 11])

  // Every size field is at most this (2^24; the largest real one, Nano's vocab_size, is
  // 131,072): products of two or three of them, and tensor byte counts, fit in int64_t.
  static constexpr int64_t kMaxSize = int64_t{1} << 24;

  // Derived sizes.
  int64_t d_inner() const { return mamba_num_heads * mamba_head_dim; }
  int64_t conv_dim() const { return d_inner() + 2 * n_groups * ssm_state_size; }
  int64_t in_proj_dim() const { return 2 * d_inner() + 2 * n_groups * ssm_state_size + mamba_num_heads; }
  int64_t expert_input_dim() const { return moe_latent_size > 0 ? moe_latent_size : hidden_size; }
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  int num_layers() const { return static_cast<int>(layers.size()); }
  int count(LayerKind kind) const;
  bool has_mtp() const { return num_nextn_predict_layers > 0 && !mtp_layers.empty(); }
  std::string pattern() const;      // e.g. "MEM*EMEM*E"
  std::string mtp_pattern() const;  // e.g. "*E"
};

// Parses <dir>/config.json (or a config.json path). Accepts every spelling the released
// models and transformers use (see docs/ARCHITECTURE.md#config); errors name the file and key.
Config load_config(const std::string& dir_or_file);
Config parse_config(const std::string& json_text, const std::string& source);

}  // namespace nemotron::model
