#pragma once
// `nemotron synth`: random-weight checkpoints in the exact Hub layout of a config, streamed
// to disk one tensor at a time (real-scale models never live in memory).
//
// Every tensor comes from fp32 "master" values, a pure function of (seed, master name,
// element index): a counter-based hash, so the output is byte-identical for any thread
// count or chunking. A linear module's master name is "<module>.weight" whatever its
// storage format, so a BF16 and an NVFP4 synth of one config with one seed hold the same
// weights up to quantization error. Masters are encoded per the quantization config,
// exactly as the loader resolves formats (QuantConfig::format_of; the router gate never):
//   Dense  weight BF16 [out, in]
//   FP8    weight F8_E4M3 [out, in] = e4m3(W / weight_scale); weight_scale F32 [] = amax/448;
//          input_scale F32 []
//   NVFP4  weight U8 [out, in/2] (element 2j low nibble) = e2m1(W / (block_scale * scale_2));
//          weight_scale F8_E4M3 [out, in/16] = e4m3(amax_block / (6 * scale_2)), 1.0 for
//          all-zero blocks; weight_scale_2 F32 [] = amax/(6*448); input_scale F32 []
//   params BF16, except A_log, D and e_score_correction_bias F32 (as in the releases).
//   With kv_cache_quant_algo FP8: every attention block's mixer.k_proj.k_scale and
//   mixer.v_proj.v_scale, F32 [] = kSynthKvScale.
#include <cstdint>
#include <string>
#include <vector>

#include "model/checkpoint/config.h"
#include "model/checkpoint/quant.h"
#include "model/checkpoint/safetensors.h"
#include "util/json.h"

namespace nemotron::model::synth {

// Distribution of master values: mean + std * z with z ~ N(0, 1) (Irwin-Hall(4) approx.,
// bounded by 2*sqrt(3)), or one of the Mamba parameter laws.
enum class Law { Normal, ALog, DtBias };
struct Master {
  Law law = Law::Normal;
  float mean = 0.0f, std = 1.0f;
};

// What the bytes of a tensor encode.
enum class Encoding {
  BF16, F32,                 // master values of `master`
  FP8Weight, FP8Scale,       // module `module` (master `module.weight`)
  NVFP4Weight, NVFP4BlockScale, NVFP4Scale2,
  InputScale,                // constant `value` (input scales, FP8 KV-cache scales)
};

// The k_scale / v_scale synth writes for an FP8 KV cache: K / V rows of amax ~8 (8 / 448).
inline constexpr float kSynthKvScale = 8.0f / 448.0f;

struct TensorSpec {
  std::string name;          // tensor name in the checkpoint
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  std::size_t nbytes = 0;
  Encoding encoding = Encoding::BF16;
  std::string master;        // RNG key of the master values
  Master law;
  std::string module;        // quantized linears: the module name (shared quantization state)
  int64_t rows = 0, cols = 0;  // master shape [out, in] of a linear (cols = numel for params)
  float value = 0.0f;        // InputScale
};

struct Plan {
  std::vector<TensorSpec> tensors;  // in layout-walk order
  uint64_t total_bytes = 0;
};

// Records every tensor the layout walk of `config` asks for, in the formats `quant`
// prescribes. Throws Error when a quantized module's shape cannot hold its format.
Plan plan_checkpoint(const Config& config, const QuantConfig& quant);

// Master values [begin, end) of `master` (flattened row-major).
void master_values(uint64_t seed, const std::string& master, const Master& law, int64_t begin, int64_t end,
                   float* out);

// The ModelOpt MIXED_PRECISION quantization section of the real Super NVFP4 release
// (architecture doc §4.3), restricted to the modules `config` has: FP8 per the table's layer
// lists, NVFP4 routed experts and the layer-1 shared down_proj, everything else (and MTP)
// unlisted = BF16. Returns {"quant_method", "quant_algo", "kv_cache_quant_algo",
// "quantized_layers": {module: {"quant_algo": ..[, "group_size": 16]}}}.
Json super_mixed_section(const Config& config);

struct Options {
  std::string config_path;   // input config.json
  std::string quant_path;    // hf_quant_config.json to apply ("" = none)
  bool super_mixed = false;  // --layout super-mixed
  std::string out_dir;
  uint64_t seed = 0;
  double shard_gb = 5.0;     // a checkpoint larger than this is split into shards
  bool progress = true;      // progress lines on stderr
};

struct Result {
  std::size_t tensors = 0;
  uint64_t bytes = 0;        // tensor bytes
  int shards = 1;            // 1 = a single model.safetensors
  double seconds = 0;
};

// Writes out_dir/config.json (+ quantization_config), hf_quant_config.json when quantized,
// and model.safetensors or model-0000i-of-0000n.safetensors + model.safetensors.index.json.
// Other files in out_dir are left alone; stale outputs of a previous synth are replaced.
Result synthesize(const Options& options);

}  // namespace nemotron::model::synth
