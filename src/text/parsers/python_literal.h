#pragma once
// A safe parser for Python literal expressions, used by the tool-call parser as the
// fallback that vLLM implements with ast.literal_eval (serving doc §4.2 step 6).
//
// Accepted (with Python's spelling rules): None/True/False; int literals (decimal,
// 0x/0o/0b, '_' separators) that fit in 64 bits; float literals (1., .5, 1e-3, 1_0.5);
// one unary +/- on a number; str literals with ' " ''' """ quotes, r/u prefixes, all
// escapes except \N{...}, and implicit concatenation of adjacent literals; lists, tuples
// (→ JSON arrays), dicts (keys converted like json.dumps does: str kept, int/float
// spelled as numbers, True/False/None → "true"/"false"/"null"); parentheses; comments.
//
// Rejected with nemotron::Error (the caller then keeps the raw string): anything else,
// including bytes and f-strings, sets (no JSON image), complex numbers, integers beyond
// 64 bits, floats that overflow to inf, lone surrogates, non-literal expressions, and
// nesting deeper than 256 levels.
#include <string_view>

#include "util/json.h"

namespace nemotron::text {

Json parse_python_literal(std::string_view text);

}  // namespace nemotron::text
