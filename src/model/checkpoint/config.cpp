#include "model/checkpoint/config.h"

#include <cmath>
#include <filesystem>
#include <initializer_list>

#include "util/error.h"
#include "util/json.h"

namespace nemotron::model {

char layer_symbol(LayerKind kind) {
  switch (kind) {
    case LayerKind::Mamba: return 'M';
    case LayerKind::Attention: return '*';
    case LayerKind::MoE: return 'E';
    case LayerKind::MLP: return '-';
  }
  return '?';
}

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::Mamba: return "mamba";
    case LayerKind::Attention: return "attention";
    case LayerKind::MoE: return "moe";
    case LayerKind::MLP: return "mlp";
  }
  return "?";
}

int Config::count(LayerKind kind) const {
  int n = 0;
  for (auto k : layers) n += (k == kind);
  return n;
}

std::string Config::pattern() const {
  std::string s;
  for (auto k : layers) s += layer_symbol(k);
  return s;
}

std::string Config::mtp_pattern() const {
  std::string s;
  for (auto k : mtp_layers) s += layer_symbol(k);
  return s;
}

namespace {

bool is_python_special(const PlainJson& v) {
  return v.is_string() && (v == "NaN" || v == "Infinity" || v == "-Infinity");
}

// The Mamba time-step clamp's upper bound: transformers' default is Infinity (no clamp).
bool infinity_allowed(const std::string& key) { return key == "time_step_limit[1]" || key == "mamba_dt_limit[1]"; }

// The one accessor for a float of config.json: a finite number (Infinity only where
// infinity_allowed). Errors name the file and key.
double finite_number(const PlainJson& v, const std::string& source, const std::string& key) {
  const double d = json_number(v, source + ": key '" + key + "'");
  if (!std::isfinite(d) && !(infinity_allowed(key) && d > 0))
    throw Error(source + ": key '" + key + "': must be a finite number, got " + (is_python_special(v) ? v.get<std::string>() : v.dump()));
  return d;
}

// Every number in config.json must be finite, whether this parser reads its key or not (a NaN
// rope_theta, which this model does not use, still marks a broken file). Python writes NaN,
// Infinity and -Infinity as bare tokens, which parse_plain_json keeps as those strings.
void reject_non_finite(const PlainJson& v, const std::string& key, const std::string& source) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it)
      reject_non_finite(it.value(), key.empty() ? it.key() : key + "." + it.key(), source);
  } else if (v.is_array()) {
    for (std::size_t i = 0; i < v.size(); ++i) reject_non_finite(v[i], key + "[" + std::to_string(i) + "]", source);
  } else if (is_python_special(v) || v.is_number_float()) {
    finite_number(v, source, key);
  }
}

// Reads config keys with their aliases; every error names the file and key.
class Reader {
 public:
  Reader(const PlainJson& j, std::string source) : j_(j), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(source_ + ": key '" + key + "': " + what);
  }

  // The first of `keys` present with a non-null value, or nullptr.
  const PlainJson* find(std::initializer_list<const char*> keys, std::string* found = nullptr) const {
    for (const char* k : keys) {
      auto it = j_.find(k);
      if (it != j_.end() && !it->is_null()) {
        if (found) *found = k;
        return &*it;
      }
    }
    return nullptr;
  }

  int64_t integer(std::initializer_list<const char*> keys, int64_t fallback, bool required) const {
    std::string key;
    const PlainJson* v = find(keys, &key);
    if (!v) {
      if (required) fail(*keys.begin(), "missing (required for this model)");
      return fallback;
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::floor(d) == d && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
    }
    fail(key, "expected an integer, got " + v->dump());
  }

  // A size (a dimension or a count). Bounded by kMaxSize, so that the products the rest of the
  // code forms (config.h's derived sizes, tensor element and byte counts) cannot overflow.
  int64_t positive(std::initializer_list<const char*> keys, bool required, int64_t fallback = 0) const {
    const int64_t v = integer(keys, fallback, required);
    if (required && v <= 0) fail(*keys.begin(), "must be positive, got " + std::to_string(v));
    if (v < 0) fail(*keys.begin(), "must not be negative, got " + std::to_string(v));
    if (v > Config::kMaxSize)
      fail(*keys.begin(), std::to_string(v) + " is larger than the supported " + std::to_string(Config::kMaxSize));
    return v;
  }

  double number(std::initializer_list<const char*> keys, double fallback) const {
    std::string key;
    const PlainJson* v = find(keys, &key);
    if (!v) return fallback;
    return finite_number(*v, source_, key);
  }

  bool boolean(std::initializer_list<const char*> keys, bool fallback) const {
    std::string key;
    const PlainJson* v = find(keys, &key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "expected true or false, got " + v->dump());
    return v->get<bool>();
  }

  std::string string(std::initializer_list<const char*> keys, const std::string& fallback) const {
    std::string key;
    const PlainJson* v = find(keys, &key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, "expected a string, got " + v->dump());
    return v->get<std::string>();
  }

  // A layer pattern given as a symbol string ("MEM*E") or a list of block-type names.
  std::vector<LayerKind> pattern(const std::string& key) const {
    const PlainJson& v = j_.at(key);
    std::vector<LayerKind> out;
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      for (std::size_t i = 0; i < s.size(); ++i) {
        switch (s[i]) {
          case 'M': out.push_back(LayerKind::Mamba); break;
          case '*': out.push_back(LayerKind::Attention); break;
          case 'E': out.push_back(LayerKind::MoE); break;
          case '-': out.push_back(LayerKind::MLP); break;
          default:
            fail(key, "unknown layer symbol '" + std::string(1, s[i]) + "' at position " +
                          std::to_string(i) + " (expected M, *, E or -)");
        }
      }
    } else if (v.is_array()) {
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string()) fail(key, "entry " + std::to_string(i) + " is not a string");
        const std::string s = v[i].get<std::string>();
        if (s == "mamba" || s == "linear_attention") out.push_back(LayerKind::Mamba);
        else if (s == "attention" || s == "full_attention") out.push_back(LayerKind::Attention);
        else if (s == "moe") out.push_back(LayerKind::MoE);
        else if (s == "mlp") out.push_back(LayerKind::MLP);
        else fail(key, "unknown block type '" + s + "' at index " + std::to_string(i));
      }
    } else {
      fail(key, "expected a string or a list, got " + v.dump());
    }
    return out;
  }

  bool has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }

 private:
  const PlainJson& j_;
  std::string source_;
};

}  // namespace

Config parse_config(const std::string& json_text, const std::string& source) {
  const PlainJson j = parse_plain_json(json_text, source);
  if (!j.is_object()) throw Error(source + ": expected a JSON object");
  reject_non_finite(j, "", source);
  Reader r(j, source);
  Config c;
  c.path = source;

  const std::string model_type = r.string({"model_type"}, "");
  if (model_type.empty()) r.fail("model_type", "missing (expected \"nemotron_h\")");
  if (model_type != "nemotron_h")
    r.fail("model_type", "unsupported model type \"" + model_type + "\" (expected \"nemotron_h\")");

  // Trunk pattern: list form wins when both are given, and then they must agree.
  const bool has_list = r.has("layers_block_type"), has_string = r.has("hybrid_override_pattern");
  if (!has_list && !has_string)
    r.fail("hybrid_override_pattern", "missing (neither hybrid_override_pattern nor layers_block_type is set)");
  if (has_list) c.layers = r.pattern("layers_block_type");
  if (has_string) {
    auto from_string = r.pattern("hybrid_override_pattern");
    if (has_list && from_string != c.layers)
      r.fail("hybrid_override_pattern", "disagrees with layers_block_type");
    c.layers = std::move(from_string);
  }
  if (c.layers.empty()) r.fail(has_list ? "layers_block_type" : "hybrid_override_pattern", "no layers");
  if (r.has("num_hidden_layers")) {
    const int64_t n = r.integer({"num_hidden_layers"}, 0, true);
    if (n != static_cast<int64_t>(c.layers.size()))
      r.fail("num_hidden_layers", std::to_string(n) + " disagrees with the layer pattern's " +
                                      std::to_string(c.layers.size()) + " layers");
  }

  c.vocab_size = r.positive({"vocab_size"}, true);
  c.hidden_size = r.positive({"hidden_size"}, true);
  c.norm_eps = r.number({"layer_norm_epsilon", "norm_eps", "rms_norm_eps"}, 1e-5);
  if (!(c.norm_eps > 0)) r.fail("layer_norm_epsilon", "must be a positive number");
  c.tie_word_embeddings = r.boolean({"tie_word_embeddings"}, false);
  c.bos_token_id = r.integer({"bos_token_id"}, -1, false);
  c.pad_token_id = r.integer({"pad_token_id"}, -1, false);
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    const PlainJson list = it->is_array() ? *it : PlainJson::array({*it});
    for (const auto& v : list) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        r.fail("eos_token_id", "expected a token id or a list of token ids, got " + it->dump());
      c.eos_token_ids.push_back(v.get<int64_t>());
    }
  }

  // MTP head.
  c.num_nextn_predict_layers = static_cast<int>(r.integer({"num_nextn_predict_layers"}, 0, false));
  if (c.num_nextn_predict_layers < 0 || c.num_nextn_predict_layers > 1)
    r.fail("num_nextn_predict_layers", "only 0 or 1 MTP modules are supported, got " +
                                           std::to_string(c.num_nextn_predict_layers));
  if (c.num_nextn_predict_layers > 0) {
    if (r.has("mtp_layers_block_type")) c.mtp_layers = r.pattern("mtp_layers_block_type");
    if (r.has("mtp_hybrid_override_pattern")) {
      auto s = r.pattern("mtp_hybrid_override_pattern");
      if (r.has("mtp_layers_block_type") && s != c.mtp_layers)
        r.fail("mtp_hybrid_override_pattern", "disagrees with mtp_layers_block_type");
      c.mtp_layers = std::move(s);
    }
    if (c.mtp_layers.empty()) c.mtp_layers = {LayerKind::Attention, LayerKind::MoE};  // transformers' default "*E"
    for (auto k : c.mtp_layers)
      if (k == LayerKind::Mamba)
        r.fail(r.has("mtp_layers_block_type") ? "mtp_layers_block_type" : "mtp_hybrid_override_pattern",
               "Mamba blocks in the MTP head are not supported");
  }

  auto uses = [&](LayerKind k) {
    for (auto l : c.layers) if (l == k) return true;
    for (auto l : c.mtp_layers) if (l == k) return true;
    return false;
  };

  if (uses(LayerKind::Mamba)) {
    c.mamba_num_heads = r.positive({"mamba_num_heads"}, true);
    c.mamba_head_dim = r.positive({"mamba_head_dim"}, true);
    c.ssm_state_size = r.positive({"ssm_state_size", "mamba_d_state", "mamba_state_dim"}, true);
    c.n_groups = r.positive({"n_groups", "mamba_n_groups"}, true);
    c.conv_kernel = r.positive({"conv_kernel", "mamba_d_conv"}, true);
    c.chunk_size = r.positive({"chunk_size", "mamba_chunk_size"}, false, 128);
    c.use_conv_bias = r.boolean({"use_conv_bias", "mamba_conv_bias"}, true);
    if (r.boolean({"use_bias", "mamba_proj_bias"}, false))
      r.fail("use_bias", "biases on Mamba in_proj/out_proj are not supported");
    const std::string act = r.string({"mamba_hidden_act"}, "silu");
    if (act != "silu") r.fail("mamba_hidden_act", "unsupported activation \"" + act + "\" (expected silu)");
    c.mamba_ssm_cache_dtype = r.string({"mamba_ssm_cache_dtype"}, "float32");
    if (c.mamba_ssm_cache_dtype != "float32" && c.mamba_ssm_cache_dtype != "bfloat16" &&
        c.mamba_ssm_cache_dtype != "float16")
      r.fail("mamba_ssm_cache_dtype",
             "unsupported \"" + c.mamba_ssm_cache_dtype + "\" (expected float32, bfloat16 or float16)");
    if (c.mamba_num_heads % c.n_groups != 0)
      r.fail("n_groups", "mamba_num_heads (" + std::to_string(c.mamba_num_heads) +
                             ") must be a multiple of n_groups (" + std::to_string(c.n_groups) + ")");
    std::string key;
    if (const PlainJson* lim = r.find({"time_step_limit", "mamba_dt_limit"}, &key)) {
      if (!lim->is_array() || lim->size() != 2) r.fail(key, "expected [min, max]");
      c.time_step_limit_min = finite_number((*lim)[0], source, key + "[0]");
      c.time_step_limit_max = finite_number((*lim)[1], source, key + "[1]");
      if (!(c.time_step_limit_min >= 0) || !(c.time_step_limit_max > c.time_step_limit_min))
        r.fail(key, "expected 0 <= min < max");
    }
  }
  if (uses(LayerKind::Attention)) {
    c.num_attention_heads = r.positive({"num_attention_heads"}, true);
    c.num_key_value_heads = r.positive({"num_key_value_heads"}, false, c.num_attention_heads);
    if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
    c.head_dim = r.positive({"head_dim", "attention_head_dim"}, false, 0);
    if (c.head_dim == 0) {
      if (c.hidden_size % c.num_attention_heads != 0)
        r.fail("head_dim", "missing and hidden_size is not a multiple of num_attention_heads");
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    if (c.num_attention_heads % c.num_key_value_heads != 0)
      r.fail("num_key_value_heads", "num_attention_heads (" + std::to_string(c.num_attention_heads) +
                                        ") must be a multiple of num_key_value_heads (" +
                                        std::to_string(c.num_key_value_heads) + ")");
    if (r.boolean({"attention_bias"}, false)) r.fail("attention_bias", "attention biases are not supported");
  }
  if (uses(LayerKind::MoE)) {
    c.n_routed_experts = r.positive({"n_routed_experts"}, true);
    c.num_experts_per_tok = r.positive({"num_experts_per_tok"}, true);
    c.moe_intermediate_size = r.positive({"moe_intermediate_size"}, true);
    c.n_shared_experts = r.integer({"n_shared_experts"}, 1, false);
    if (c.n_shared_experts < 0 || c.n_shared_experts > 1)
      r.fail("n_shared_experts", "only 0 or 1 shared experts are supported");
    if (c.n_shared_experts > 0)
      c.moe_shared_expert_intermediate_size = r.positive({"moe_shared_expert_intermediate_size"}, true);
    c.moe_latent_size = r.positive({"moe_latent_size"}, false, 0);
    c.routed_scaling_factor = r.number({"routed_scaling_factor"}, 1.0);
    c.norm_topk_prob = r.boolean({"norm_topk_prob"}, true);
    c.n_group = r.positive({"n_group"}, false, 1);
    c.topk_group = r.positive({"topk_group"}, false, 1);
    if (c.n_group == 0) c.n_group = 1;
    if (c.topk_group == 0) c.topk_group = 1;
    if (c.n_routed_experts % c.n_group != 0)
      r.fail("n_group", "n_routed_experts (" + std::to_string(c.n_routed_experts) +
                            ") must be a multiple of n_group (" + std::to_string(c.n_group) + ")");
    if (c.topk_group > c.n_group) r.fail("topk_group", "must not exceed n_group");
    if (c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group))
      r.fail("num_experts_per_tok", "exceeds the experts available in topk_group groups");
    if (c.n_group > 1 && c.n_routed_experts / c.n_group < 2)
      r.fail("n_group", "grouped routing needs at least 2 experts per group");
    const std::string act = r.string({"mlp_hidden_act"}, "relu2");
    if (act != "relu2") r.fail("mlp_hidden_act", "unsupported activation \"" + act + "\" (expected relu2)");
  }
  if (uses(LayerKind::MLP)) {
    c.intermediate_size = r.positive({"intermediate_size"}, true);
    const std::string act = r.string({"mlp_hidden_act"}, "relu2");
    if (act != "relu2") r.fail("mlp_hidden_act", "unsupported activation \"" + act + "\" (expected relu2)");
    if (r.boolean({"mlp_bias"}, false)) r.fail("mlp_bias", "MLP biases are not supported");
  }
  return c;
}

Config load_config(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  std::string path = dir_or_file;
  std::error_code ec;
  if (fs::is_directory(path, ec)) path = (fs::path(path) / "config.json").string();
  if (!fs::exists(path, ec)) throw Error(path + ": file not found");
  return parse_config(read_file(path), path);
}

}  // namespace nemotron::model
