#include "text/grammar/json_schema_norm.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "util/error.h"

namespace nemotron::text::grammar {

namespace {
constexpr std::size_t kMaxBranches = 256;
constexpr int kMaxDepth = 24;
}  // namespace

std::string json_pointer_child(const std::string& ptr, const std::string& key) {
  std::string k;
  for (char c : key) {
    if (c == '~') k += "~0";
    else if (c == '/') k += "~1";
    else k += c;
  }
  return ptr + "/" + k;
}

std::string where(const std::string& ptr) { return ptr.empty() ? "/" : ptr; }

bool SchemaNormalizer::is_annotation(const std::string& k) {
  static const std::set<std::string> a = {"$schema",  "$id",          "id",         "$comment",        "title",
                                          "description", "default",   "examples",   "readOnly",        "writeOnly",
                                          "deprecated", "contentMediaType", "contentEncoding", "contentSchema",
                                          "definitions", "$defs",     "$anchor",    "$vocabulary"};
  return a.count(k) != 0;
}

bool SchemaNormalizer::has_assertions(const Json& s) {
  if (s.is_boolean()) return !s.get<bool>();
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!is_annotation(it.key())) return true;
  return false;
}

bool SchemaNormalizer::is_pure_ref(const Json& s) {
  if (!s.is_object() || !s.contains("$ref")) return false;
  for (auto it = s.begin(); it != s.end(); ++it)
    if (it.key() != "$ref" && !is_annotation(it.key())) return false;
  return true;
}

const Json& SchemaNormalizer::resolve(const std::string& ref, const std::string& at, std::string& ptr_out) const {
  auto bad = [&](const std::string& why) {
    return Error("unsupported JSON Schema keyword '$ref' at " + where(at) + ": " + why);
  };
  if (ref.empty() || ref[0] != '#')
    throw bad("only local references ('#/...') are supported, not '" + ref + "'");
  if (ref.size() > 1 && ref[1] != '/') throw bad("anchor references ('" + ref + "') are not supported");
  // URI-decode, then split the JSON pointer.
  std::string p;
  for (std::size_t i = 1; i < ref.size(); ++i) {
    if (ref[i] == '%' && i + 2 < ref.size()) {
      p += static_cast<char>(std::stoi(ref.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      p += ref[i];
    }
  }
  const Json* cur = &root_;
  ptr_out.clear();
  std::size_t i = 0;
  while (i < p.size()) {
    const std::size_t j = p.find('/', i + 1);
    std::string tok = p.substr(i + 1, (j == std::string::npos ? p.size() : j) - i - 1);
    std::string key;
    for (std::size_t k = 0; k < tok.size(); ++k) {
      if (tok[k] == '~' && k + 1 < tok.size()) {
        key += tok[k + 1] == '1' ? '/' : '~';
        ++k;
      } else {
        key += tok[k];
      }
    }
    if (cur->is_object() && cur->contains(key)) {
      cur = &(*cur)[key];
    } else if (cur->is_array() && !key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }) &&
               std::stoul(key) < cur->size()) {
      cur = &(*cur)[std::stoul(key)];
    } else {
      throw bad("'" + ref + "' does not resolve");
    }
    ptr_out = json_pointer_child(ptr_out, key);
    if (j == std::string::npos) break;
    i = j;
  }
  return *cur;
}

std::vector<Json> SchemaNormalizer::normalize(const Json& s, const std::string& ptr, int depth) const {
  if (depth > kMaxDepth)
    throw Error("unsupported JSON Schema keyword '$ref' at " + where(ptr) + ": references nested too deep to combine with other keywords");
  if (s.is_boolean()) return {s};
  if (!s.is_object()) throw Error("invalid JSON Schema at " + where(ptr) + ": a schema must be an object or a boolean");
  Json base = Json::object();
  for (auto it = s.begin(); it != s.end(); ++it)
    if (it.key() != "allOf" && it.key() != "anyOf" && it.key() != "oneOf") base[it.key()] = it.value();
  const bool combinators = base.size() != s.size();
  std::vector<std::vector<Json>> conj;
  if (base.contains("$ref")) {
    if (!base["$ref"].is_string()) throw Error("invalid JSON Schema at " + where(ptr) + ": '$ref' must be a string");
    if (is_pure_ref(base)) {
      if (!combinators) return {base};
      conj.push_back({Json{{"$ref", base["$ref"]}}});
    } else {
      std::string tptr;
      const Json& target = resolve(base["$ref"].get<std::string>(), ptr, tptr);
      conj.push_back(normalize(target, tptr, depth + 1));
    }
    base.erase("$ref");
  }
  auto list = [&](const char* key) -> const Json* {
    auto it = s.find(key);
    if (it == s.end()) return nullptr;
    if (!it->is_array() || it->empty())
      throw Error("invalid JSON Schema at " + where(json_pointer_child(ptr, key)) + ": must be a non-empty array");
    return &*it;
  };
  if (const Json* all = list("allOf"))
    for (std::size_t i = 0; i < all->size(); ++i)
      conj.push_back(normalize((*all)[i], json_pointer_child(json_pointer_child(ptr, "allOf"), std::to_string(i)), depth));
  for (const char* key : {"anyOf", "oneOf"})
    if (const Json* any = list(key)) {
      std::vector<Json> options;
      for (std::size_t i = 0; i < any->size(); ++i)
        for (Json& o : normalize((*any)[i], json_pointer_child(json_pointer_child(ptr, key), std::to_string(i)), depth))
          options.push_back(std::move(o));
      conj.push_back(std::move(options));
    }
  std::vector<Json> result{base};
  for (const auto& options : conj) {
    std::vector<Json> next;
    for (const Json& r : result)
      for (const Json& o : options)
        for (Json& m : merge(r, o, ptr, depth)) {
          if (m.is_boolean() && !m.get<bool>()) continue;
          next.push_back(std::move(m));
          if (next.size() > kMaxBranches)
            throw Error("unsupported JSON Schema keyword 'anyOf' at " + where(ptr) + ": more than " +
                        std::to_string(kMaxBranches) + " combinations of allOf/anyOf/oneOf branches");
        }
    result = std::move(next);
  }
  if (result.empty()) return {Json(false)};
  return result;
}

std::vector<Json> SchemaNormalizer::merge(const Json& a, const Json& b, const std::string& ptr, int depth) const {
  if (a.is_boolean()) return {a.get<bool>() ? b : Json(false)};
  if (b.is_boolean()) return {b.get<bool>() ? a : Json(false)};
  if (!has_assertions(b)) return {a};
  if (!has_assertions(a)) return {b};
  // A reference merged with assertions: inline its target.
  for (int side = 0; side < 2; ++side) {
    const Json& r = side ? b : a;
    const Json& other = side ? a : b;
    if (is_pure_ref(r)) {
      std::string tptr;
      const Json& target = resolve(r["$ref"].get<std::string>(), ptr, tptr);
      std::vector<Json> out;
      for (const Json& t : normalize(target, tptr, depth + 1))
        for (Json& m : merge(t, other, ptr, depth + 1)) out.push_back(std::move(m));
      return out;
    }
  }
  return {merge_simple(a, b, ptr)};
}

namespace {

std::set<std::string> type_set(const Json& t) {
  std::set<std::string> out;
  if (t.is_string()) out.insert(t.get<std::string>());
  else if (t.is_array())
    for (const Json& x : t)
      if (x.is_string()) out.insert(x.get<std::string>());
  return out;
}

Json all_of(const Json& x, const Json& y) {
  if (x == y || (y.is_boolean() && y.get<bool>())) return x;
  if (x.is_boolean() && x.get<bool>()) return y;
  return Json{{"allOf", Json::array({x, y})}};
}

// What schema `s` applies to property `name` (true when nothing).
Json property_schema(const Json& s, const std::string& name) {
  if (s.contains("properties") && s["properties"].is_object() && s["properties"].contains(name)) return s["properties"][name];
  if (s.contains("additionalProperties")) return s["additionalProperties"];
  return Json(true);
}

}  // namespace

Json SchemaNormalizer::merge_simple(const Json& a, const Json& b, const std::string& ptr) const {
  auto conflict = [&](const std::string& key) {
    return Error("unsupported JSON Schema keyword 'allOf' at " + where(ptr) + ": conflicting values of '" + key + "'");
  };
  // const -> enum, so that the two combine by intersection.
  auto enums = [](Json s) {
    if (s.contains("const")) {
      Json e = Json::array({s["const"]});
      if (s.contains("enum") && s["enum"].is_array()) {
        Json keep = Json::array();
        for (const Json& v : s["enum"])
          if (v == s["const"]) keep.push_back(v);
        e = keep;
      }
      s.erase("const");
      s["enum"] = e;
    }
    return s;
  };
  const Json x = enums(a), y = enums(b);
  Json out = x;
  for (auto it = y.begin(); it != y.end(); ++it) {
    const std::string& k = it.key();
    const Json& vb = it.value();
    if (!out.contains(k)) {
      out[k] = vb;
      continue;
    }
    const Json va = out[k];
    if (va == vb || is_annotation(k)) continue;
    if (k == "type") {
      std::set<std::string> ta = type_set(va), tb = type_set(vb), t;
      for (const std::string& s : ta)
        if (tb.count(s)) t.insert(s);
      if (ta.count("number") && tb.count("integer")) t.insert("integer");
      if (tb.count("number") && ta.count("integer")) t.insert("integer");
      if (t.count("integer") && t.count("number")) t.erase("integer");
      if (t.empty()) return Json(false);
      Json arr = Json::array();
      for (const std::string& s : t) arr.push_back(s);
      out[k] = arr;
    } else if (k == "properties") {
      if (!va.is_object() || !vb.is_object()) throw conflict(k);
      Json m = va;
      for (auto p = vb.begin(); p != vb.end(); ++p) m[p.key()] = m.contains(p.key()) ? all_of(m[p.key()], p.value()) : p.value();
      out[k] = m;
    } else if (k == "required") {
      Json m = va;
      for (const Json& r : vb)
        if (std::find(m.begin(), m.end(), r) == m.end()) m.push_back(r);
      out[k] = m;
    } else if (k == "additionalProperties" || k == "additionalItems" || (k == "items" && va.is_object() && vb.is_object()) ||
               (k == "items" && (va.is_boolean() || vb.is_boolean()) && !va.is_array() && !vb.is_array())) {
      out[k] = all_of(va, vb);
    } else if (k == "minimum" || k == "minLength" || k == "minItems" ||
               (k == "exclusiveMinimum" && va.is_number() && vb.is_number())) {
      if (!va.is_number() || !vb.is_number()) throw conflict(k);
      out[k] = va.get<double>() >= vb.get<double>() ? va : vb;
    } else if (k == "maximum" || k == "maxLength" || k == "maxItems" ||
               (k == "exclusiveMaximum" && va.is_number() && vb.is_number())) {
      if (!va.is_number() || !vb.is_number()) throw conflict(k);
      out[k] = va.get<double>() <= vb.get<double>() ? va : vb;
    } else if (k == "enum") {
      if (!va.is_array() || !vb.is_array()) throw conflict(k);
      Json keep = Json::array();
      for (const Json& v : va)
        if (std::find(vb.begin(), vb.end(), v) != vb.end()) keep.push_back(v);
      if (keep.empty()) return Json(false);
      out[k] = keep;
    } else if (k == "uniqueItems" && va.is_boolean() && vb.is_boolean()) {
      out[k] = va.get<bool>() || vb.get<bool>();
    } else {
      throw conflict(k);
    }
  }
  // Each side's additionalProperties governs the other side's property names.
  if (out.contains("properties") && out["properties"].is_object()) {
    Json& props = out["properties"];
    for (auto p = props.begin(); p != props.end(); ++p) {
      const std::string& name = p.key();
      p.value() = all_of(property_schema(x, name), property_schema(y, name));
    }
  }
  return out;
}

}  // namespace nemotron::text::grammar
