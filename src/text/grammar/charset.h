#pragma once
// Sets of Unicode scalar values (code points minus surrogates) and their lowering to UTF-8
// byte sequences, the way character classes of regexes and EBNF become byte-level grammar.
#include <cstdint>
#include <utility>
#include <vector>

#include "text/grammar/ir.h"

namespace nemotron::text::grammar {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

class CharSet {
 public:
  CharSet() = default;
  static CharSet of(uint32_t cp) { return range(cp, cp); }
  static CharSet range(uint32_t lo, uint32_t hi) {
    CharSet s;
    s.add(lo, hi);
    return s;
  }
  static CharSet any();  // every scalar value

  void add(uint32_t lo, uint32_t hi);
  void add(const CharSet& o);
  CharSet complement() const;  // within the scalar values
  CharSet minus(const CharSet& o) const { return intersect(o.complement()); }
  CharSet intersect(const CharSet& o) const;
  bool contains(uint32_t cp) const;
  bool empty() const { return r_.empty(); }
  // Sorted, disjoint, non-adjacent ranges; surrogates never included.
  const std::vector<std::pair<uint32_t, uint32_t>>& ranges() const { return r_; }

 private:
  std::vector<std::pair<uint32_t, uint32_t>> r_;
};

// Alternatives of UTF-8 byte-range sequences matching exactly the characters of s (one
// character each). An empty set gives Expr::nothing().
Expr utf8_expr(const CharSet& s);

// The same character set as it appears inside a JSON string literal: characters that JSON
// must escape (", \ and U+0000..U+001F) as their escape sequence (\" \\ \n \t \r \b \f, else
// \u00XX), every other character as its raw UTF-8 bytes.
Expr json_char_expr(const CharSet& s);

// Regex shorthand classes as a (narrow, wide) pair. The regex dialects disagree outside
// ASCII (ECMAScript's \d is [0-9], Python's any Unicode digit), and a generated text must
// satisfy both: a class uses the NARROW set where it matches positively and the complement
// of the WIDE set where it is negated (\D, [^\d]), so every character produced is right in
// either dialect. See charset.cpp for the sets.
struct ClassPair {
  CharSet narrow, wide;
  ClassPair negated() const { return {wide.complement(), narrow.complement()}; }
};
ClassPair class_digit();  // \d
ClassPair class_word();   // \w
ClassPair class_space();  // \s
ClassPair class_dot();    // . (no line terminators)

}  // namespace nemotron::text::grammar
