#pragma once
// Pieces of `synth` shared between its source files (not a public interface).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/convert/synth.h"

namespace nemotron::model::synth {

// Writes out_dir/config.json and hf_quant_config.json (or removes a stale one when the
// result is unquantized) and returns the quantization config exactly as the loader will
// read it back from out_dir. Fills *config with the parsed model config.
QuantConfig write_config_files(const Options& options, Config* config);

// Produces the bytes of planned tensors. Quantized modules need a whole-tensor pass
// first (global amax; NVFP4 block scales), kept until all of the module's quantized
// tensors have been produced. Not thread-safe itself; it parallelizes internally.
class Generator {
 public:
  Generator(uint64_t seed, const Plan& plan);
  ~Generator();
  // Bytes [offset, offset + n) of `spec`; offset and n are multiples of item_bytes(spec)
  // (or n reaches the end of the tensor).
  void generate(const TensorSpec& spec, std::size_t offset, std::size_t n, uint8_t* out);
  static std::size_t item_bytes(const TensorSpec& spec);

 private:
  struct ModuleState;
  ModuleState& state(const TensorSpec& spec);
  void done_with(const TensorSpec& spec);
  template <typename Fn>
  void weight_batches(const TensorSpec& spec, const ModuleState& st, int64_t begin, int64_t end, Fn fn);
  uint64_t seed_;
  std::map<std::string, int> uses_;  // module -> quantized tensors not yet produced
  std::map<std::string, std::unique_ptr<ModuleState>> states_;
  std::vector<float> cache_;       // master values of the module named cache_owner_
  std::string cache_owner_;
  std::vector<float> block_amax_;  // NVFP4 amax pass scratch
};

}  // namespace nemotron::model::synth
