// config.json parsing (model/checkpoint/config.cpp) and its quantization_config section
// (quant.cpp): the input is config.json's text. A config that parses must have sizes the
// rest of the code can use: every derived dimension (config.h) computed without overflow
// (UBSan checks the arithmetic). Anything else must be a nemotron::Error.
#include "fuzz_common.h"
#include "model/checkpoint/config.h"
#include "model/checkpoint/quant.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::model;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const Config c = parse_config(text, "config.json");
    FUZZ_CHECK(!c.layers.empty());
    FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0);
    (void)c.pattern();
    (void)c.mtp_pattern();
    (void)c.has_mtp();
    for (auto k : {LayerKind::Mamba, LayerKind::Attention, LayerKind::MoE, LayerKind::MLP}) {
      if (c.count(k) == 0 && !(c.has_mtp() && k != LayerKind::Mamba)) continue;
      (void)layer_kind_name(k);
    }
    if (c.count(LayerKind::Mamba) > 0) {
      FUZZ_CHECK(c.d_inner() > 0 && c.conv_dim() > 0 && c.in_proj_dim() > 0);
    }
    if (c.count(LayerKind::Attention) > 0) FUZZ_CHECK(c.q_dim() > 0 && c.kv_dim() > 0);
    if (c.count(LayerKind::MoE) > 0) FUZZ_CHECK(c.expert_input_dim() > 0);
  } catch (const Error&) {
  }
  // The quantization_config section (hf_quant_config.json has its own target).
  try {
    const PlainJson j = parse_plain_json(text, "config.json");
    if (j.is_object()) {
      const QuantConfig q = load_quant_config("/nonexistent-fuzz-dir", j);
      for (const char* m : {"backbone.layers.0.mixer.in_proj", "lm_head", "mtp.layers.0.eh_proj",
                            "backbone.layers.1.mixer.experts.0.up_proj"})
        (void)q.format_of(m);
    }
  } catch (const Error&) {
  }
  return 0;
}
