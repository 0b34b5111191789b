#pragma once
// RAII wrapper around a compiled PCRE2 pattern with the flags the HF tokenizers' Oniguruma
// regexes behave like: UTF, Unicode properties for \d \s \w (UCP), and ^/$ matching at line
// boundaries (Oniguruma's Ruby syntax). Patterns are JIT-compiled when possible.
//
// Subjects must be valid UTF-8 (matching skips PCRE2's UTF check for speed).
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nemotron::text {

class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message and the offset of the error.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls fn(start, end) for each match, iterating like Rust's regex/onig `find_iter`: an
  // empty match that ends where the previous match ended is skipped and the search moves on
  // one character. Throws nemotron::Error if PCRE2 fails (e.g. match limit exceeded).
  void find_all(std::string_view subject,
                const std::function<void(std::size_t, std::size_t)>& fn) const;
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view subject) const;

  // `subject` with every match (as find_all) replaced by `content` (taken literally).
  std::string replace_all(std::string_view subject, std::string_view content) const;

  // True if the pattern matches starting exactly at `pos` (anchored there).
  bool matches_at(std::string_view subject, std::size_t pos, std::size_t* end = nullptr) const;

  const std::string& pattern() const { return pattern_; }

  // Rewrites an Oniguruma pattern (as found in tokenizer.json) for PCRE2: \s \S \w \W get
  // Oniguruma's Unicode meanings (White_Space; Alphabetic + marks + Nd + Pc + joiners), which
  // differ from PCRE2's UCP ones (e.g. for U+180E, combining marks, No digits). \W inside a
  // character class is left as is (PCRE2 10.42 has no class set operations).
  static std::string from_oniguruma(std::string_view pattern);

  // Escapes all regex metacharacters so that the result matches `literal` exactly.
  static std::string escape(std::string_view literal);

 private:
  // Returns false when there is no match at or after `start`.
  bool search(std::string_view subject, std::size_t start, bool anchored, std::size_t& ms,
              std::size_t& me) const;

  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace nemotron::text
