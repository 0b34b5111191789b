// config.json / hf_quant_config.json of a synthetic checkpoint, and the MIXED_PRECISION
// module map of the real Super NVFP4 release.
#include <filesystem>
#include <map>
#include <set>

#include "model/convert/synth_internal.h"
#include "util/error.h"

namespace nemotron::model::synth {
namespace {

namespace fs = std::filesystem;

// Architecture doc §4.3, Super NVFP4 (MIXED_PRECISION): layer ids of the FP8 modules.
const std::set<int> kFp8MambaIn = {0, 2, 4, 6, 9, 11, 13, 15, 18, 20, 27, 29, 31, 40,
                                   49, 51, 53, 55, 57, 60, 62, 66, 68, 71, 73, 82, 84, 86};
const std::set<int> kFp8MambaOut = {0, 2, 4, 9, 11, 13, 18, 38, 40, 42, 44, 49, 51, 53, 55,
                                    57, 60, 62, 64, 66, 68, 71, 73, 75, 77, 80, 82, 84, 86};
const std::set<int> kBf16SharedUp = {41};          // FP8 on every other MoE layer
const std::set<int> kNonFp8SharedDown = {1, 8, 76};  // FP8 on every other MoE layer
const std::set<int> kNvfp4SharedDown = {1};          // (8 and 76 stay BF16)
const std::set<int> kFp8Fc1 = {1, 3, 5};
const std::set<int> kFp8Fc2 = {3};
const std::set<int> kFp8OProj = {69, 78};

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

// hf_quant_config.json for a config.json quantization section (without quant_method).
Json hf_file_for(const Json& section) {
  Json q = section;
  q.erase("quant_method");
  return Json{{"producer", {{"name", "modelopt"}, {"version", "synthetic (nemotron synth)"}}}, {"quantization", q}};
}

}  // namespace

Json super_mixed_section(const Config& c) {
  std::map<std::string, Json> layers;  // sorted by module name, as ModelOpt writes them
  const Json fp8 = {{"quant_algo", "FP8"}};
  const Json nvfp4 = {{"quant_algo", "NVFP4"}, {"group_size", 16}};
  for (int l = 0; l < c.num_layers(); ++l) {
    const std::string m = "backbone.layers." + std::to_string(l) + ".mixer.";
    switch (c.layers[static_cast<std::size_t>(l)]) {
      case LayerKind::Mamba:
        if (kFp8MambaIn.count(l)) layers[m + "in_proj"] = fp8;
        if (kFp8MambaOut.count(l)) layers[m + "out_proj"] = fp8;
        break;
      case LayerKind::Attention:
        if (kFp8OProj.count(l)) layers[m + "o_proj"] = fp8;
        break;
      case LayerKind::MoE:
        for (int64_t e = 0; e < c.n_routed_experts; ++e) {
          const std::string ex = m + "experts." + std::to_string(e) + ".";
          layers[ex + "up_proj"] = nvfp4;
          layers[ex + "down_proj"] = nvfp4;
        }
        if (c.n_shared_experts > 0) {
          if (!kBf16SharedUp.count(l)) layers[m + "shared_experts.up_proj"] = fp8;
          if (kNvfp4SharedDown.count(l)) layers[m + "shared_experts.down_proj"] = nvfp4;
          else if (!kNonFp8SharedDown.count(l)) layers[m + "shared_experts.down_proj"] = fp8;
        }
        if (c.moe_latent_size > 0) {
          if (kFp8Fc1.count(l)) layers[m + "fc1_latent_proj"] = fp8;
          if (kFp8Fc2.count(l)) layers[m + "fc2_latent_proj"] = fp8;
        }
        break;
      case LayerKind::MLP:
        break;
    }
  }
  Json q = {{"quant_method", "modelopt"}, {"quant_algo", "MIXED_PRECISION"}, {"kv_cache_quant_algo", "FP8"}};
  Json ql = Json::object();
  for (auto& [k, v] : layers) ql[k] = std::move(v);
  q["quantized_layers"] = std::move(ql);
  return q;
}

QuantConfig write_config_files(const Options& o, Config* config) {
  if (!o.quant_path.empty() && o.super_mixed)
    throw Error("synth: give either --quant or --layout super-mixed, not both");
  const std::string text = read_file(o.config_path);
  Json cj = parse_json(text, o.config_path);
  if (!cj.is_object()) throw Error(o.config_path + ": expected a JSON object");
  *config = parse_config(text, o.config_path);

  // The config.json quantization section and hf_quant_config.json; hf_raw keeps a given file verbatim.
  Json section, hf;
  std::string hf_raw;
  if (!o.quant_path.empty()) {
    hf_raw = read_file(o.quant_path);
    hf = parse_json(hf_raw, o.quant_path);
    auto q = hf.find("quantization");
    if (!hf.is_object() || q == hf.end() || !q->is_object())
      throw Error(o.quant_path + ": expected an hf_quant_config.json with a 'quantization' object");
    section = Json{{"quant_method", "modelopt"}};
    for (auto it = q->begin(); it != q->end(); ++it)
      if (it.key() != "quant_method") section[it.key()] = it.value();
  } else if (o.super_mixed) {
    section = super_mixed_section(*config);
    hf = hf_file_for(section);
  } else if (auto q = cj.find("quantization_config"); q != cj.end() && !q->is_null()) {
    section = *q;
    hf = hf_file_for(section);
  }

  std::error_code ec;
  if (!section.is_null()) {
    // Validate with the loader's parser before anything in out_dir is touched (a directory
    // that does not exist: only the config.json section is read).
    PlainJson probe = PlainJson::object();
    probe["quantization_config"] = PlainJson::parse(section.dump());
    const std::string from = !o.quant_path.empty() ? o.quant_path : o.super_mixed ? "--layout super-mixed" : o.config_path;
    try {
      (void)load_quant_config((fs::path(o.out_dir) / "(synth: not a directory)").string(), probe);
    } catch (const Error& e) {
      throw Error("synth: invalid quantization config from " + from + ": " + e.what());
    }
  }
  fs::create_directories(o.out_dir, ec);
  if (ec || !fs::is_directory(o.out_dir)) throw Error(o.out_dir + ": cannot create the output directory: " + ec.message());
  const std::string config_out = (fs::path(o.out_dir) / "config.json").string();
  const std::string hf_out = (fs::path(o.out_dir) / "hf_quant_config.json").string();
  if (!section.is_null()) {
    cj["quantization_config"] = section;
    write_text_file(config_out, python_json(cj) + "\n");
    if (hf_raw.empty() || !same_file(o.quant_path, hf_out))
      write_text_file(hf_out, hf_raw.empty() ? python_json(hf) + "\n" : hf_raw);
  } else {
    if (!same_file(o.config_path, config_out)) write_text_file(config_out, text);
    fs::remove(hf_out, ec);  // a stale one would quantize the loader's view
  }
  QuantConfig q = load_quant_config(o.out_dir, read_plain_json_file(config_out));
  config->path = config_out;
  return q;
}

}  // namespace nemotron::model::synth
