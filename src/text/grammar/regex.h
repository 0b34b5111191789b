#pragma once
// Regex front end: an ECMAScript-like subset compiled to grammar IR over bytes.
//
// Supported: literal characters (UTF-8), escapes (\n \r \t \f \v \0 \xHH \uHHHH \u{H...}
// \cX, escaped punctuation), shorthand classes \d \w \s and their negations, character
// classes with ranges and negation, `.` (any character but line terminators), groups ( ),
// (?: ) and (?<name> ), alternation |, quantifiers ? * + {m} {m,} {m,n} (lazy forms too:
// same language), and ^ / $ at the start / end of a top-level alternative.
// Refused with an Error naming the position: backreferences, lookarounds, word boundaries,
// Unicode property escapes, inline flags, anchors elsewhere.
//
// Semantics: a whole-text match (anchors implicit), except in `search` mode (JSON Schema's
// `pattern`), where each top-level alternative not anchored at a side may have any text
// (`.` characters) there. In `json_string` mode every character is produced as it appears
// inside a JSON string literal (json_char_expr), so the DECODED string is what the regex
// matches. Shorthand classes outside ASCII follow charset.h's narrow/wide rule.
#include <string>

#include "text/grammar/ir.h"

namespace nemotron::text::grammar {

struct RegexMode {
  bool json_string = false;
  bool search = false;
};

// Throws nemotron::Error "<what> /pattern/: <problem> at position N" (N: characters from 0).
Expr compile_regex(const std::string& pattern, RegexMode mode, const std::string& what = "regex");

}  // namespace nemotron::text::grammar
