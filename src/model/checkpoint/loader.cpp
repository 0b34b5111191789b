// Binds checkpoint tensors to the layout walk and validates every one of them.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include "kernels/numeric.h"
#include "model/checkpoint/weights.h"
#include "util/error.h"

namespace nemotron::model {
namespace {

bool is_float(DType d) { return d == DType::BF16 || d == DType::F16 || d == DType::F32; }

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << '[';
  for (std::size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

kernels::ElementType element_type(DType d) {
  switch (d) {
    case DType::F32: return kernels::ElementType::F32;
    case DType::F16: return kernels::ElementType::F16;
    default: return kernels::ElementType::BF16;
  }
}

float decode_float(const TensorInfo& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: { float f; std::memcpy(&f, t.data + 4 * i, 4); return f; }
    case DType::BF16: { uint16_t v; std::memcpy(&v, t.data + 2 * i, 2); return kernels::bf16_to_float(v); }
    case DType::F16: { uint16_t v; std::memcpy(&v, t.data + 2 * i, 2); return kernels::f16_to_float(v); }
    default: return 0.0f;
  }
}

class CheckpointBinder final : public TensorBinder {
 public:
  CheckpointBinder(const Checkpoint& ckpt, const Config& config, const QuantConfig& quant)
      : ckpt_(ckpt), config_(config), quant_(quant) {}

  Linear linear(const std::string& module, int64_t out, int64_t in, bool quantizable) override {
    Linear L;
    L.name = module;
    const TensorInfo* w = find(module + ".weight");
    if (!w && module == "lm_head" && config_.tie_word_embeddings) {
      L.w = embedding("backbone.embeddings.weight", out, in);
      return L;
    }
    const WeightFormat expected = quantizable ? quant_.format_of(module) : WeightFormat::Dense;
    if (!w)
      fail("missing tensor " + module + ".weight (" + weight_format_name(expected) + " " +
           shape_str({out, in}) + ")");
    WeightFormat found;
    if (is_float(w->dtype)) found = WeightFormat::Dense;
    else if (w->dtype == DType::F8_E4M3) found = WeightFormat::FP8;
    else if (w->dtype == DType::U8) found = WeightFormat::NVFP4;
    else fail(where(*w) + " has dtype " + dtype_name(w->dtype) + ", not a weight type");
    if (found != expected) {
      if (!quantizable)
        fail(where(*w) + " is " + weight_format_name(found) + " but this module is never quantized");
      fail(where(*w) + " is stored as " + weight_format_name(found) + " but " +
           (quant_.quant_algo.empty() ? std::string("the checkpoint has no quantization config")
                                      : quant_.source + " makes it " + weight_format_name(expected)));
    }
    L.w.format = found;
    L.w.out = out;
    L.w.in = in;
    L.w.data = w->data;
    switch (found) {
      case WeightFormat::Dense:
        expect_shape(*w, {out, in});
        L.w.dense_type = element_type(w->dtype);
        break;
      case WeightFormat::FP8:
        expect_shape(*w, {out, in});
        L.w.scale = scalar(module + ".weight_scale", true);
        L.input_scale = scalar(module + ".input_scale", false);
        break;
      case WeightFormat::NVFP4: {
        if (in % 16 != 0) fail(where(*w) + ": NVFP4 needs in_features divisible by 16, got " + std::to_string(in));
        expect_shape(*w, {out, in / 2});
        const TensorInfo* s = find(module + ".weight_scale");
        if (!s) fail("missing tensor " + module + ".weight_scale (F8_E4M3 " + shape_str({out, in / 16}) + ")");
        if (s->dtype != DType::F8_E4M3) fail(where(*s) + " must be F8_E4M3, got " + dtype_name(s->dtype));
        expect_shape(*s, {out, in / 16});
        L.w.block_scale = s->data;
        L.w.scale = scalar(module + ".weight_scale_2", true);
        L.input_scale = scalar(module + ".input_scale", false);
        break;
      }
    }
    return L;
  }

  std::vector<float> param(const std::string& name, const std::vector<int64_t>& shape, bool) override {
    const TensorInfo* t = find(name);
    if (!t) fail("missing tensor " + name + " " + shape_str(shape));
    if (!is_float(t->dtype)) fail(where(*t) + " must be a float tensor (BF16, F16 or F32), got " + dtype_name(t->dtype));
    // conv1d.weight may be stored [C, 1, K] (PyTorch) or [C, K].
    if (shape.size() == 3 && t->shape.size() == 2 && shape[1] == 1 && t->shape[0] == shape[0] && t->shape[1] == shape[2]) {
    } else {
      expect_shape(*t, shape);
    }
    std::vector<float> v(static_cast<std::size_t>(t->numel()));
    for (int64_t i = 0; i < t->numel(); ++i) v[i] = decode_float(*t, i);
    return v;
  }

  kernels::LinearWeight embedding(const std::string& name, int64_t vocab, int64_t hidden) override {
    const TensorInfo* t = find(name);
    if (!t) fail("missing tensor " + name + " " + shape_str({vocab, hidden}));
    if (!is_float(t->dtype)) fail(where(*t) + " must be BF16, F16 or F32, got " + dtype_name(t->dtype));
    expect_shape(*t, {vocab, hidden});
    kernels::LinearWeight w;
    w.format = WeightFormat::Dense;
    w.dense_type = element_type(t->dtype);
    w.out = vocab;
    w.in = hidden;
    w.data = t->data;
    return w;
  }

  float kv_scale(const std::vector<std::string>& spellings) override {
    const TensorInfo* t = nullptr;
    for (const auto& n : spellings) {
      const TensorInfo* u = find(n);
      if (u && t) fail(where(*u) + " and " + where(*t) + " are the same KV-cache scale spelled twice; keep one");
      if (u) t = u;
    }
    if (!t) return 0.0f;
    if (t->dtype != DType::F32 || t->numel() != 1 || t->shape.size() > 1)
      fail(where(*t) + " (FP8 KV-cache scale) must be an F32 scalar ([] or [1]), got " + dtype_name(t->dtype) + " " +
           t->shape_string());
    const float v = decode_float(*t, 0);
    if (!std::isfinite(v) || v <= 0.0f)
      fail(where(*t) + " (FP8 KV-cache scale) must be a positive finite scale, got " + std::to_string(v));
    return v;
  }

  // After the walk: every tensor of the checkpoint must have been bound.
  void check_all_used() {
    for (const auto& [name, info] : ckpt_.all()) {
      if (used_.count(name)) continue;
      std::string hint;
      if (name.ends_with(".k_scale") || name.ends_with(".v_scale"))
        hint = " (KV-cache scales are read from an attention block's mixer.k_proj.k_scale / mixer.v_proj.v_scale "
               "or mixer.k_scale / mixer.v_scale)";
      else if (name.starts_with("mtp.") && !config_.has_mtp())
        hint = " (config.json declares no MTP head: num_nextn_predict_layers is 0)";
      fail("unexpected tensor " + name + " in " + info->file + hint + "; the config (" + config_.path +
           ", pattern " + config_.pattern() + ") has no such parameter");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { throw Error(ckpt_.dir() + ": " + msg); }

  std::string where(const TensorInfo& t) const { return "tensor " + t.name + " (" + t.file + ")"; }

  // Exact name, or the spellings other exporters use (model. prefix, embedding(s)/embed_tokens).
  const TensorInfo* find(const std::string& name) {
    std::vector<std::string> candidates{name};
    if (name.starts_with("backbone.")) candidates.push_back("model." + name.substr(9));
    if (name == "backbone.embeddings.weight") {
      candidates.push_back("backbone.embedding.weight");
      candidates.push_back("model.embed_tokens.weight");
    }
    for (const auto& n : candidates) {
      if (const TensorInfo* t = ckpt_.find(n)) {
        used_.insert(n);
        return t;
      }
    }
    return nullptr;
  }

  void expect_shape(const TensorInfo& t, const std::vector<int64_t>& shape) const {
    if (t.shape != shape)
      fail(where(t) + " has shape " + t.shape_string() + ", expected " + shape_str(shape) + " from " + config_.path);
  }

  // A per-tensor F32 scale stored as [] or [1]; 0 when optional and absent.
  float scalar(const std::string& name, bool required) {
    const TensorInfo* t = find(name);
    if (!t) {
      if (required) fail("missing tensor " + name + " (F32 scalar)");
      return 0.0f;
    }
    if (t->dtype != DType::F32 || t->numel() != 1 || t->shape.size() > 1)
      fail(where(*t) + " must be an F32 scalar, got " + dtype_name(t->dtype) + " " + t->shape_string());
    const float v = decode_float(*t, 0);
    if (!std::isfinite(v) || v <= 0.0f) fail(where(*t) + " must be a positive finite scale, got " + std::to_string(v));
    return v;
  }

  const Checkpoint& ckpt_;
  const Config& config_;
  const QuantConfig& quant_;
  std::set<std::string> used_;
};

}  // namespace

Model Model::load(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a model directory");
  Model m;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  m.config = load_config(dir);
  m.quant = load_quant_config(dir, read_plain_json_file(config_path));
  m.checkpoint = Checkpoint::open(dir);
  CheckpointBinder binder(m.checkpoint, m.config, m.quant);
  m.weights = walk_layout(m.config, binder);
  binder.check_all_used();
  return m;
}

}  // namespace nemotron::model
