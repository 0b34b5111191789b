#pragma once
// Post-training quantization of a BF16 checkpoint into the ModelOpt NVFP4 layout that the
// loader reads (docs/nemotron3-architecture.md §4.2-4.3, model/quant.h).
//
// Encoding of one weight W [out, in] (in % 16 == 0), the reference semantics of
// tools/make_fixtures.py nvfp4(), computed in fp32 with the same operation order:
//   g        = amax|W| / (6*448)                          -> X.weight_scale_2, F32 scalar []
//   s[r, b]  = e4m3(amax|W[r, 16b..16b+16)| / (6*g)), 0 -> 1.0  (RNE, saturating)
//                                                          -> X.weight_scale, F8_E4M3 [out, in/16]
//   q[r, i]  = W[r, i] / (s[r, i/16] * g); code = index of the nearest E2M1 magnitude
//              {0,.5,1,1.5,2,3,4,6} to |q| (ties to the LOWER index, as torch argmin; this
//              differs from the hardware's ties-to-even), plus 8 when q < 0
//   packed   = code[2j] | code[2j+1] << 4                  -> X.weight, U8 [out, in/2]
//   input    = calibrated amax of the module's input / (6*448) -> X.input_scale, F32 scalar []
//
// Recipe (the published Nemotron 3 Nano NVFP4 one, `quant_algo: NVFP4` + exclude_modules):
//   NVFP4: routed experts up/down_proj, shared expert up/down_proj, Mamba in_proj/out_proj,
//          dense MLP up/down_proj ('-' blocks: not in Nano; quantized as ModelOpt's default
//          NVFP4 config does for every linear it does not exclude).
//   BF16 (listed in exclude_modules): in/out_proj of the Mamba layer immediately before each
//          attention layer; attention q/k/v/o; every conv1d; LatentMoE fc1/fc2_latent_proj
//          (Super keeps them FP8 or BF16, never NVFP4); lm_head; every MTP-head module.
//   Never quantized (not listed, as in the release): embeddings, norms, router gate + bias,
//          A_log, D, dt_bias.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/checkpoint/weights.h"

namespace nemotron::model {

// ---- encoder ----------------------------------------------------------------------------
struct Nvfp4Weight {
  std::vector<uint8_t> packed;  // [out, in/2]
  std::vector<uint8_t> scales;  // E4M3 [out, in/16]
  float global_scale = 0.0f;    // weight_scale_2
};

// Quantizes W [out, in] (row-major fp32). Throws Error when in % 16 != 0 or W is not finite.
Nvfp4Weight quantize_nvfp4(const float* w, int64_t out, int64_t in);

// E2M1 code of a scaled value: nearest magnitude, ties to the lower one, sign bit for q < 0.
uint8_t e2m1_code_argmin(float q);

// ---- recipe -----------------------------------------------------------------------------
struct QuantPlanEntry {
  const Linear* linear = nullptr;  // into the source model's weights
  bool quantize = false;
  bool listed_excluded = false;    // written to exclude_modules (false for the gate)
};

// Every linear module of `m`, in layout order, with the recipe's decision.
std::vector<QuantPlanEntry> nvfp4_recipe(const Model& m);

// ---- calibration ------------------------------------------------------------------------
// Runs the CPU reference over `ids` in consecutive windows of `window` tokens (each from a
// fresh state) and returns the amax of every linear's input, by module name. A routed expert
// only sees the tokens routed to it; modules that saw no token are absent.
std::map<std::string, float> calibrate_input_amax(const Model& m, const std::vector<int32_t>& ids,
                                                  int64_t window);

// ---- whole checkpoint -------------------------------------------------------------------
struct QuantizeSummary {
  int quantized = 0, kept = 0;        // linear modules
  int input_scale_fallbacks = 0;      // quantized modules with no calibration data
  int64_t bytes_in = 0, bytes_out = 0;
};

// Writes <out_dir>/model.safetensors, config.json (with quantization_config) and
// hf_quant_config.json. `out_dir` must exist. Input-scale fallback for a module that saw no
// calibration token (a routed expert nobody was routed to): the largest amax of the same
// projection among the layer's experts, else 1.0 (what make_fixtures.py uses).
QuantizeSummary write_nvfp4_checkpoint(const Model& m, const std::string& src_dir, const std::string& out_dir,
                                       const std::map<std::string, float>& input_amax,
                                       const Json& calibration_info);

}  // namespace nemotron::model
