// hf_quant_config.json (model/checkpoint/quant.cpp): the input is the file's text, read from a
// checkpoint directory by load_quant_config, alone and together with a config.json
// quantization_config it must agree with; then format_of over a few module names, and
// wildcard_match with each exclude pattern. Anything else than a result must be a
// nemotron::Error.
#include "fuzz_common.h"
#include "model/checkpoint/quant.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::model;

namespace {

const char* kModules[] = {"backbone.layers.0.mixer.in_proj", "backbone.layers.12.mixer.experts.7.up_proj",
                          "backbone.layers.3.mixer.q_proj", "lm_head", "mtp.layers.0.eh_proj",
                          "backbone.layers.1.mixer.shared_experts.down_proj", ""};

void use(const QuantConfig& q) {
  for (const char* m : kModules) {
    const WeightFormat f = q.format_of(m);
    (void)weight_format_name(f);
  }
  for (const auto& pat : q.exclude_modules)
    for (const char* m : kModules) (void)wildcard_match(pat, m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string dir = fuzz::scratch_dir();
  fuzz::write_file(dir + "/hf_quant_config.json", text);
  try {
    use(load_quant_config(dir, PlainJson::object()));
  } catch (const Error&) {
  }
  // With config.json's quantization_config: the same section when the file has one.
  try {
    const PlainJson j = parse_plain_json(text, "hf_quant_config.json");
    if (j.is_object() && j.contains("quantization")) {
      const PlainJson config = {{"quantization_config", j["quantization"]}};
      use(load_quant_config(dir, config));
    }
  } catch (const Error&) {
  }
  // wildcard_match on arbitrary patterns and names: the input split in two.
  const std::size_t half = text.size() / 2;
  (void)wildcard_match(text.substr(0, half), text.substr(half));
  return 0;
}
