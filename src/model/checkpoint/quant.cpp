#include "model/checkpoint/quant.h"

#include <filesystem>

#include "util/error.h"

namespace nemotron::model {

bool wildcard_match(const std::string& pattern, const std::string& name) {
  // Iterative matcher with single-star backtracking; classes [abc], [a-z], [!a].
  std::size_t p = 0, n = 0, star_p = std::string::npos, star_n = 0;
  auto match_class = [&](std::size_t& pp, char c) -> bool {
    // pattern[pp] == '['; on return pp is past ']'. An unterminated class matches literally.
    std::size_t q = pp + 1;
    bool negate = false;
    if (q < pattern.size() && (pattern[q] == '!' || pattern[q] == '^')) { negate = true; ++q; }
    bool ok = false;
    std::size_t start = q;
    while (q < pattern.size() && (pattern[q] != ']' || q == start)) {
      if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
        if (c >= pattern[q] && c <= pattern[q + 2]) ok = true;
        q += 3;
      } else {
        if (c == pattern[q]) ok = true;
        ++q;
      }
    }
    if (q >= pattern.size()) {  // no closing bracket: literal '['
      ++pp;
      return c == '[';
    }
    pp = q + 1;
    return ok != negate;
  };
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = p++;
      star_n = n;
      continue;
    }
    if (p < pattern.size()) {
      std::size_t pp = p;
      bool ok;
      if (pattern[p] == '?') { ok = true; pp = p + 1; }
      else if (pattern[p] == '[') ok = match_class(pp, name[n]);
      else { ok = pattern[p] == name[n]; pp = p + 1; }
      if (ok) { p = pp; ++n; continue; }
    }
    if (star_p == std::string::npos) return false;
    p = star_p + 1;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

WeightFormat QuantConfig::format_of(const std::string& module) const {
  if (quant_algo.empty()) return WeightFormat::Dense;
  if (quant_algo == "MIXED_PRECISION") {
    auto it = quantized_layers.find(module);
    return it == quantized_layers.end() ? WeightFormat::Dense : it->second;
  }
  for (const auto& pat : exclude_modules)
    if (wildcard_match(pat, module)) return WeightFormat::Dense;
  return quant_algo == "NVFP4" ? WeightFormat::NVFP4 : WeightFormat::FP8;
}

namespace {

WeightFormat parse_algo(const PlainJson& v, const std::string& where) {
  if (!v.is_string()) throw Error(where + ": expected a string quant_algo, got " + v.dump());
  const std::string s = v.get<std::string>();
  if (s == "NVFP4" || s == "W4A16_NVFP4") return WeightFormat::NVFP4;
  if (s == "FP8") return WeightFormat::FP8;
  throw Error(where + ": unsupported quant_algo \"" + s + "\" (supported: NVFP4, FP8, MIXED_PRECISION)");
}

// Parses one "quantization" object (hf_quant_config.json) or "quantization_config" (config.json).
QuantConfig parse_section(const PlainJson& q, const std::string& where) {
  if (!q.is_object()) throw Error(where + ": expected an object");
  QuantConfig c;
  c.source = where;
  if (auto m = q.find("quant_method"); m != q.end() && !m->is_null()) {
    if (!m->is_string() || m->get<std::string>() != "modelopt")
      throw Error(where + ": key 'quant_method': unsupported " + m->dump() + " (only ModelOpt checkpoints, \"modelopt\", are supported)");
  }
  auto algo = q.find("quant_algo");
  if (algo == q.end() || algo->is_null()) throw Error(where + ": key 'quant_algo' missing");
  if (!algo->is_string()) throw Error(where + ": key 'quant_algo': expected a string");
  c.quant_algo = algo->get<std::string>();
  if (c.quant_algo == "W4A16_NVFP4") c.quant_algo = "NVFP4";
  if (c.quant_algo != "NVFP4" && c.quant_algo != "FP8" && c.quant_algo != "MIXED_PRECISION")
    throw Error(where + ": key 'quant_algo': unsupported \"" + c.quant_algo +
                "\" (supported: NVFP4, FP8, MIXED_PRECISION)");
  if (auto g = q.find("group_size"); g != q.end() && !g->is_null()) {
    if (!g->is_number_integer() || g->get<int>() != 16)
      throw Error(where + ": key 'group_size': only 16 is supported, got " + g->dump());
  }
  if (auto kv = q.find("kv_cache_quant_algo"); kv != q.end()) c.kv_cache_quant_algo_given = true;
  if (auto kv = q.find("kv_cache_quant_algo"); kv != q.end() && !kv->is_null()) {
    if (!kv->is_string() || kv->get<std::string>() != "FP8")
      throw Error(where + ": key 'kv_cache_quant_algo': unsupported " + kv->dump() +
                  " (supported: null, \"FP8\")");
    c.kv_cache_quant_algo = "FP8";
  }
  if (auto ex = q.find("exclude_modules"); ex != q.end() && !ex->is_null()) {
    if (!ex->is_array()) throw Error(where + ": key 'exclude_modules': expected a list");
    for (const auto& e : *ex) {
      if (!e.is_string()) throw Error(where + ": key 'exclude_modules': entries must be strings");
      c.exclude_modules.push_back(e.get<std::string>());
    }
  }
  if (c.quant_algo == "MIXED_PRECISION") {
    auto ql = q.find("quantized_layers");
    if (ql == q.end() || !ql->is_object())
      throw Error(where + ": key 'quantized_layers': MIXED_PRECISION needs a module map");
    for (auto it = ql->begin(); it != ql->end(); ++it) {
      const std::string w = where + ": quantized_layers[\"" + it.key() + "\"]";
      if (!it->is_object() || !it->contains("quant_algo")) throw Error(w + ": expected {\"quant_algo\": ...}");
      const WeightFormat f = parse_algo((*it)["quant_algo"], w);
      if (auto g = it->find("group_size"); g != it->end() && !g->is_null()) {
        if (!g->is_number_integer() || g->get<int>() != 16)
          throw Error(w + ": only group_size 16 is supported, got " + g->dump());
      }
      c.quantized_layers[it.key()] = f;
    }
  }
  return c;
}

}  // namespace

QuantConfig load_quant_config(const std::string& dir, const PlainJson& config_json) {
  namespace fs = std::filesystem;
  QuantConfig from_file, from_config;
  bool have_file = false, have_config = false;
  const std::string hf_path = (fs::path(dir) / "hf_quant_config.json").string();
  std::error_code ec;
  if (fs::exists(hf_path, ec)) {
    const PlainJson j = read_plain_json_file(hf_path);
    auto q = j.find("quantization");
    if (q == j.end()) throw Error(hf_path + ": key 'quantization' missing");
    from_file = parse_section(*q, hf_path + ": quantization");
    have_file = true;
  }
  if (auto q = config_json.find("quantization_config"); q != config_json.end() && !q->is_null()) {
    from_config = parse_section(*q, (fs::path(dir) / "config.json").string() + ": quantization_config");
    have_config = true;
  }
  if (have_file && have_config) {
    if (from_file.quant_algo != from_config.quant_algo)
      throw Error(hf_path + " says quant_algo " + from_file.quant_algo + " but config.json says " +
                  from_config.quant_algo);
    if (from_file.kv_cache_quant_algo_given && from_config.kv_cache_quant_algo_given &&
        from_file.kv_cache_quant_algo != from_config.kv_cache_quant_algo)
      throw Error(hf_path + " says kv_cache_quant_algo " +
                  (from_file.kv_cache_quant_algo.empty() ? std::string("null") : from_file.kv_cache_quant_algo) +
                  " but config.json says " +
                  (from_config.kv_cache_quant_algo.empty() ? std::string("null") : from_config.kv_cache_quant_algo));
    if (from_file.exclude_modules != from_config.exclude_modules ||
        from_file.quantized_layers != from_config.quantized_layers)
      throw Error(hf_path + " and config.json quantization_config list different modules");
  }
  if (have_file && !from_file.kv_cache_quant_algo_given && have_config && from_config.kv_cache_quant_algo_given) {
    from_file.kv_cache_quant_algo = from_config.kv_cache_quant_algo;
    from_file.kv_cache_quant_algo_given = true;
  }
  if (have_file) return from_file;
  if (have_config) return from_config;
  return QuantConfig{};
}

}  // namespace nemotron::model
