#pragma once
// Which storage format each linear module of a checkpoint uses, from the ModelOpt
// quantization config (hf_quant_config.json "quantization" and/or config.json
// "quantization_config"):
//   quant_algo NVFP4           every linear is NVFP4 except those matching exclude_modules
//                              (entries are fnmatch-style wildcards: *, ?, [..]).
//   quant_algo FP8             every linear is FP8 per-tensor except exclude_modules.
//   quant_algo MIXED_PRECISION quantized_layers maps module name -> {quant_algo: NVFP4|FP8};
//                              a module not listed is unquantized.
//   no config                  everything unquantized.
// The router gate, embeddings, norms and conv1d are never quantized by ModelOpt.
// kv_cache_quant_algo (same sections): null/absent = none, "FP8" = the KV cache may be FP8 E4M3
// with per-layer scales; when only one of the two sources has the key, its value holds (attention k_proj.k_scale / v_proj.v_scale, 1 when absent; see
// kernels/numeric.h kv_fp8_encode); any other value is an error naming the file and key.
// The MTP head is quantized only when listed (MIXED_PRECISION) or under NVFP4/FP8 unless
// excluded, exactly like trunk modules; the loader cross-checks against the tensors found.
#include <map>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "util/json.h"

namespace nemotron::model {

using kernels::WeightFormat;   // Dense | FP8 | NVFP4, see kernels/linear.h
using kernels::weight_format_name;

struct QuantConfig {
  std::string source;     // file(s) it came from, for messages
  std::string quant_algo; // "" (none), "NVFP4", "FP8", "MIXED_PRECISION"
  int group_size = 16;    // NVFP4 block size (only 16 is supported)
  std::string kv_cache_quant_algo;  // "" (none) or "FP8"
  bool kv_cache_quant_algo_given = false;  // the key was present (null counts): sources are merged on it
  std::vector<std::string> exclude_modules;
  std::map<std::string, WeightFormat> quantized_layers;  // MIXED_PRECISION

  // Format the config prescribes for a linear module, e.g. "backbone.layers.3.mixer.q_proj".
  WeightFormat format_of(const std::string& module) const;
};

// Reads the quantization config of a checkpoint directory. `config_json` is the parsed
// config.json. Both sources may be present; they must agree on quant_algo.
QuantConfig load_quant_config(const std::string& dir, const PlainJson& config_json);

// fnmatch-style match of `name` against `pattern` (* matches any run, ? one char, [..] a class).
bool wildcard_match(const std::string& pattern, const std::string& name);

}  // namespace nemotron::model
