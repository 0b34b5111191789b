#pragma once
// HF `normalizers`: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, StripAccents,
// Sequence. A normalizer rewrites a whole segment of text (offsets are not tracked).
#include <memory>
#include <string>

#include "text/tokenizer/tokenizer_json.h"

namespace nemotron::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

class Regex;
// A `pattern` object as HF writes it: {"String": "literal"} or {"Regex": "pcre"}, compiled
// to a Regex either way. Throws SpecError naming `path`.
std::unique_ptr<Regex> make_pattern(const TokJson& j, const std::string& path);

// Throws SpecError naming `path` for unknown types or bad fields. Returns nullptr for JSON null.
std::unique_ptr<Normalizer> make_normalizer(const TokJson& j, const std::string& path);

}  // namespace nemotron::text
