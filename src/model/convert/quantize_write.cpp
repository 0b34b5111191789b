// Calibration of input scales and writing of the NVFP4 checkpoint (see quantize.h).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <set>

#include "kernels/linear.h"
#include "model/cpu/cpu_forward.h"
#include "model/convert/quantize.h"
#include "util/error.h"

namespace nemotron::model {
namespace {

constexpr float kFp4Max = 6.0f, kFp8Max = 448.0f;

// "backbone.layers.1.mixer.experts.7.up_proj" -> "backbone.layers.1.mixer.experts.*.up_proj";
// "" for a module that is not a routed expert.
std::string expert_family(const std::string& module) {
  const std::string key = ".experts.";
  const auto p = module.find(key);
  if (p == std::string::npos) return "";
  const auto q = module.find('.', p + key.size());
  if (q == std::string::npos) return "";
  return module.substr(0, p + key.size()) + "*" + module.substr(q);
}

std::vector<uint8_t> bytes_of(const TensorInfo& t) { return {t.data, t.data + t.nbytes}; }

TensorData f32_scalar(const std::string& name, float v) {
  TensorData t{name, DType::F32, {}, std::vector<uint8_t>(4)};
  std::memcpy(t.bytes.data(), &v, 4);
  return t;
}

}  // namespace

std::map<std::string, float> calibrate_input_amax(const Model& m, const std::vector<int32_t>& ids, int64_t window) {
  if (window < 1) throw Error("calibration window must be at least 1 token");
  std::map<std::string, float> amax;
  const CpuModel cpu(m);
  LinearInputScope scope([&](const Linear& L, const float* x, int64_t rows) {
    float a = 0.0f;
    const int64_t n = rows * L.w.in;
    for (int64_t i = 0; i < n; ++i) a = std::fmax(a, std::fabs(x[i]));
    auto it = amax.find(L.name);
    if (it == amax.end()) amax.emplace(L.name, a);
    else it->second = std::fmax(it->second, a);
  });
  const int64_t n = static_cast<int64_t>(ids.size());
  for (int64_t s = 0; s < n; s += window) {
    auto state = cpu.new_state();
    cpu.forward(state, ids.data() + s, std::min(window, n - s), false);
  }
  return amax;
}

QuantizeSummary write_nvfp4_checkpoint(const Model& m, const std::string& src_dir, const std::string& out_dir,
                                       const std::map<std::string, float>& input_amax,
                                       const Json& calibration_info) {
  namespace fs = std::filesystem;
  if (!m.quant.quant_algo.empty())
    throw Error(src_dir + " is already quantized (quant_algo " + m.quant.quant_algo + " from " + m.quant.source +
                "); quantize needs a BF16 checkpoint");
  const auto plan = nvfp4_recipe(m);
  QuantizeSummary sum;
  std::map<std::string, const QuantPlanEntry*> quantized;
  std::set<std::string> excluded;
  for (const auto& e : plan) {
    if (e.linear->w.format != WeightFormat::Dense)
      throw Error(e.linear->name + " is already quantized; quantize needs a BF16 checkpoint");
    if (e.quantize) {
      if (e.linear->w.in % 16 != 0)
        throw Error("cannot NVFP4-quantize " + e.linear->name + ": in_features " + std::to_string(e.linear->w.in) +
                    " is not a multiple of 16");
      quantized[e.linear->name] = &e;
      ++sum.quantized;
    } else {
      ++sum.kept;
      if (e.listed_excluded) excluded.insert(e.linear->name);
    }
  }
  // conv1d is listed like the release does (it is never a Linear to the engine).
  for (const auto& b : m.weights.blocks)
    if (b.kind == LayerKind::Mamba) excluded.insert(b.prefix + "mixer.conv1d");
  for (const auto& b : m.weights.mtp.blocks)
    if (b.kind == LayerKind::Mamba) excluded.insert(b.prefix + "mixer.conv1d");

  // Fallback input amax of an expert that saw no calibration token: its family's max.
  std::map<std::string, float> family_amax;
  for (const auto& [name, a] : input_amax) {
    const std::string f = expert_family(name);
    if (!f.empty()) family_amax[f] = std::max(family_amax[f], a);
  }
  auto input_scale_of = [&](const std::string& module) {
    float a = 0.0f;
    if (auto it = input_amax.find(module); it != input_amax.end()) {
      a = it->second;
    } else {
      ++sum.input_scale_fallbacks;
      if (auto f = family_amax.find(expert_family(module)); f != family_amax.end()) a = f->second;
    }
    if (!(a > 0.0f) || !std::isfinite(a)) a = 1.0f;
    return a / (kFp4Max * kFp8Max);
  };

  std::vector<TensorData> out;
  for (const auto& [name, info] : m.checkpoint.all()) {
    sum.bytes_in += static_cast<int64_t>(info->nbytes);
    const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const auto q = is_weight ? quantized.find(name.substr(0, name.size() - 7)) : quantized.end();
    if (q == quantized.end()) {
      out.push_back({name, info->dtype, info->shape, bytes_of(*info)});
      continue;
    }
    const kernels::LinearWeight& w = q->second->linear->w;
    std::vector<float> dense(static_cast<std::size_t>(w.out * w.in));
    for (int64_t r = 0; r < w.out; ++r) kernels::dequantize_row(w, r, dense.data() + r * w.in);
    Nvfp4Weight enc;
    try {
      enc = quantize_nvfp4(dense.data(), w.out, w.in);
    } catch (const Error& e) {
      throw Error(name + ": " + e.what());
    }
    const std::string base = q->first;
    out.push_back({base + ".weight", DType::U8, {w.out, w.in / 2}, std::move(enc.packed)});
    out.push_back({base + ".weight_scale", DType::F8_E4M3, {w.out, w.in / 16}, std::move(enc.scales)});
    out.push_back(f32_scalar(base + ".weight_scale_2", enc.global_scale));
    out.push_back(f32_scalar(base + ".input_scale", input_scale_of(base)));
  }
  for (const auto& t : out) sum.bytes_out += static_cast<int64_t>(t.bytes.size());

  Json quant = Json::object();
  quant["quant_algo"] = "NVFP4";
  quant["kv_cache_quant_algo"] = nullptr;
  quant["group_size"] = 16;
  quant["exclude_modules"] = Json(std::vector<std::string>(excluded.begin(), excluded.end()));
  Json config = read_json_file((fs::path(src_dir) / "config.json").string());
  Json qc = Json::object();
  qc["quant_method"] = "modelopt";
  for (const auto& [k, v] : quant.items()) qc[k] = v;
  config["quantization_config"] = qc;
  Json hf = Json::object();
  hf["producer"] = {{"name", "nemotron.cpp quantize"}, {"recipe", "nemotron-3-nano-nvfp4"},
                    {"calibration", calibration_info}};
  hf["quantization"] = quant;

  write_safetensors((fs::path(out_dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  write_text_file((fs::path(out_dir) / "config.json").string(), python_json(config) + "\n");
  write_text_file((fs::path(out_dir) / "hf_quant_config.json").string(), python_json(hf) + "\n");
  return sum;
}

}  // namespace nemotron::model
