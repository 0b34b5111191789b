#pragma once
// Helpers for reading the components of a HF tokenizer.json. Components throw SpecError with
// the JSON path at fault (e.g. "pre_tokenizer.pretokenizers[0].pattern"); Tokenizer::load
// turns it into a nemotron::Error that also names the file.
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace nemotron::text {

// tokenizer.json is parsed into nlohmann::json (std::map objects): the ordered variant used
// elsewhere has linear-time key lookup/insertion, which is quadratic for a 131k-entry vocab.
using TokJson = nlohmann::json;

class SpecError : public std::runtime_error {
 public:
  SpecError(const std::string& path, const std::string& message)
      : std::runtime_error(message), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string json_child(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}
inline std::string json_index(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// The "type" field of a component object.
inline std::string json_type(const TokJson& j, const std::string& path) {
  if (!j.is_object()) throw SpecError(path, "expected an object");
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) throw SpecError(json_child(path, "type"), "missing or not a string");
  return it->get<std::string>();
}

inline std::string json_string(const TokJson& j, const char* key, const std::string& path,
                               const std::string& fallback = "", bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) throw SpecError(json_child(path, key), "missing");
    return fallback;
  }
  if (!it->is_string()) throw SpecError(json_child(path, key), "expected a string");
  return it->get<std::string>();
}

inline bool json_bool(const TokJson& j, const char* key, const std::string& path, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw SpecError(json_child(path, key), "expected a boolean");
  return it->get<bool>();
}

inline long long json_int(const TokJson& j, const char* key, const std::string& path, long long fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) throw SpecError(json_child(path, key), "expected an integer");
  return it->get<long long>();
}

// Token ids are in [0, kMaxTokenId]. The id tables are dense (an entry per id up to the
// largest), so a larger id would only make loading allocate gigabytes (or overflow the id
// count); real vocabularies are far smaller (Nemotron 3: 131,072 ids).
constexpr long long kMaxTokenId = (1LL << 24) - 1;

// A token id value (model vocab, added tokens, post-processor ids), range-checked.
inline int32_t json_token_id(const TokJson& v, const std::string& path) {
  const bool ok = v.is_number_unsigned() ? v.get<unsigned long long>() <= static_cast<unsigned long long>(kMaxTokenId)
                  : v.is_number_integer() ? v.get<long long>() >= 0 && v.get<long long>() <= kMaxTokenId
                                          : false;
  if (!ok) throw SpecError(path, "expected a token id in [0, " + std::to_string(kMaxTokenId) + "], got " + v.dump());
  return static_cast<int32_t>(v.get<long long>());
}

inline const TokJson& json_array(const TokJson& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) throw SpecError(json_child(path, key), "missing or not an array");
  return *it;
}

}  // namespace nemotron::text
