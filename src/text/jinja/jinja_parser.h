#pragma once
// Recursive-descent parser from the token stream to the syntax tree, following the
// grammar and operator precedence of jinja2.parser (including its quirks: `**` is left
// associative, unary minus binds tighter than `**`, filters bind tighter than `~`).
#include <string>

#include "text/jinja/jinja_ast.h"

namespace nemotron::text::jinja {

struct ParseLimits {
  int max_depth = 256;  // nesting of expressions and of block statements
};

// Throws nemotron::Error "template syntax error (line N): ..." on invalid templates.
Body parse_template(const std::string& source, const ParseLimits& limits = {});

}  // namespace nemotron::text::jinja
