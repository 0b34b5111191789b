#pragma once
// The weights of a loaded model, bound to a checkpoint. Linear weights stay in their
// checkpoint format inside the safetensors mmap (kernels::LinearWeight points there);
// small parameters (norms, conv, A, D, biases) are decoded to fp32 vectors at load.
//
// Tensor names (Hub layout; `backbone.` prefix, `mtp.` for the MTP head):
//   backbone.embeddings.weight [V, H]            lm_head.weight [V, H]   backbone.norm_f.weight [H]
//   backbone.layers.{l}.norm.weight [H]
//   M  mixer.in_proj [in_proj_dim, H]  mixer.conv1d.weight [conv_dim, 1, K]  mixer.conv1d.bias [conv_dim]
//      mixer.dt_bias / A_log / D [Hm]  mixer.norm.weight [d_inner]  mixer.out_proj [H, d_inner]
//   *  mixer.q_proj [Hq*Dh, H]  k_proj, v_proj [Hkv*Dh, H]  o_proj [H, Hq*Dh]
//   E  mixer.gate.weight [E, H]  mixer.gate.e_score_correction_bias [E]
//      mixer.experts.{e}.up_proj [I, Din]  .down_proj [Din, I]     (Din = L or H)
//      mixer.shared_experts.up_proj [Is, H]  .down_proj [H, Is]
//      mixer.fc1_latent_proj [L, H]  mixer.fc2_latent_proj [H, L]  (when L > 0)
//   -  mixer.up_proj [I', H]  mixer.down_proj [H, I']   (I' = intermediate_size)
//   mtp.layers.0.{enorm,hnorm}.weight [H]  mtp.layers.0.eh_proj [H, 2H]
//   mtp.layers.{j}.norm.weight, mtp.layers.{j}.mixer.* as above; mtp.layers.{last}.final_layernorm.weight [H]
//      (optional, ModelOpt FP8 KV) mixer.k_proj.k_scale, mixer.v_proj.v_scale F32 [] or [1]
//      -- also spelled mixer.k_scale / mixer.v_scale; trunk and MTP head alike
// A linear `X` is X.weight (+ X.weight_scale, X.weight_scale_2, X.input_scale when quantized).
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "model/checkpoint/config.h"
#include "model/checkpoint/quant.h"
#include "model/checkpoint/safetensors.h"

namespace nemotron::model {

struct Linear {
  std::string name;             // module name, e.g. "backbone.layers.0.mixer.in_proj"
  kernels::LinearWeight w;      // format, dims, pointers into the mmap
  float input_scale = 0.0f;     // calibration scale when present (unused by weight-only math)
};

struct MambaWeights {
  Linear in_proj, out_proj;
  std::vector<float> conv_weight;  // [conv_dim, K]
  std::vector<float> conv_bias;    // [conv_dim] (empty without use_conv_bias)
  std::vector<float> dt_bias;      // [Hm]
  std::vector<float> A;            // [Hm] = -exp(A_log)
  std::vector<float> D;            // [Hm]
  std::vector<float> norm;         // [d_inner]
};

struct AttentionWeights {
  Linear q, k, v, o;
  // FP8 KV-cache scales (kernels/numeric.h kv_fp8_encode): the checkpoint's k_scale / v_scale,
  // 1 when it has none (Nano NVFP4); used only with an FP8 KV cache.
  float k_scale = 1.0f, v_scale = 1.0f;
  bool has_kv_scales = false;  // the checkpoint carried them (both, or one and 1 for the other)
};

struct MoEWeights {
  Linear gate;                      // router [E, H], always dense; computed in fp32
  std::vector<float> gate_bias;     // e_score_correction_bias [E]
  std::vector<Linear> up, down;     // per routed expert
  Linear shared_up, shared_down;    // (absent when n_shared_experts = 0)
  Linear fc1_latent, fc2_latent;    // (absent when moe_latent_size = 0)
};

struct MLPWeights {
  Linear up, down;
};

struct BlockWeights {
  LayerKind kind = LayerKind::Mamba;
  std::string prefix;               // "backbone.layers.3." / "mtp.layers.1."
  std::vector<float> norm;          // pre-mixer RMSNorm [H]
  MambaWeights mamba;               // filled for the block's kind only
  AttentionWeights attn;
  MoEWeights moe;
  MLPWeights mlp;
};

struct MtpWeights {
  std::vector<float> enorm, hnorm;  // [H]
  Linear eh_proj;                   // [H, 2H]; input = [enorm(embedding) ; hnorm(hidden)]
  std::vector<BlockWeights> blocks; // config.mtp_layers
  std::vector<float> final_norm;    // [H]
};

struct ModelWeights {
  kernels::LinearWeight embeddings; // [V, H] viewed as a dense "linear" for row lookup
  std::vector<BlockWeights> blocks;
  std::vector<float> norm_f;        // [H]
  Linear lm_head;                   // [V, H]
  bool has_mtp = false;
  MtpWeights mtp;
};

// A loaded model: config, quantization config, checkpoint (owning the mmaps), weights.
struct Model {
  Config config;
  QuantConfig quant;
  Checkpoint checkpoint;
  ModelWeights weights;

  // Loads and validates <dir>: config.json, quantization config, every tensor (name,
  // shape, dtype, format). Missing, unexpected or malformed tensors are errors naming them.
  static Model load(const std::string& dir);
};

// What the layout walk asks for. One walk over the config describes every tensor; the
// loader implements it by binding checkpoint tensors, `synth` by generating them.
class TensorBinder {
 public:
  virtual ~TensorBinder() = default;
  // A linear module [out, in]; `quantizable` is false for the router gate.
  virtual Linear linear(const std::string& module, int64_t out, int64_t in, bool quantizable) = 0;
  // A small float parameter decoded to fp32. `f32_on_disk`: stored as F32 in real
  // checkpoints (A_log, D, router bias); others are BF16 (any float type is accepted).
  virtual std::vector<float> param(const std::string& name, const std::vector<int64_t>& shape,
                                   bool f32_on_disk) = 0;
  // An optional F32 scalar found under one of `spellings` (the first is the canonical name,
  // the one synth writes): an FP8 KV-cache scale. Returns 0 when absent; a present one must be
  // an F32 [] / [1], finite and > 0 (else an Error naming it); two spellings at once are an error.
  virtual float kv_scale(const std::vector<std::string>& spellings) = 0;
  // The embedding table [V, H] (read row by row).
  virtual kernels::LinearWeight embedding(const std::string& name, int64_t vocab, int64_t hidden) = 0;
};

// Walks the layout of `config`, asking `binder` for every tensor, and assembles the weights.
ModelWeights walk_layout(const Config& config, TensorBinder& binder);

}  // namespace nemotron::model
