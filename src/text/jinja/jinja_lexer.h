#pragma once
// Jinja2 lexer with the whitespace rules of transformers' environment:
// trim_blocks=True (one "\n" after a block/comment tag is dropped), lstrip_blocks=True
// (spaces/tabs between a line start and a block/comment tag are dropped), "-" and "+"
// tag modifiers, keep_trailing_newline=False, newlines normalized to "\n" first, and
// {% raw %} blocks. Produces a flat token stream like jinja2.lexer.
#include <string>
#include <vector>

namespace nemotron::text::jinja {

struct Token {
  enum class Type { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
  Type type;
  std::string value;  // Data text, name, decoded string literal, number text, operator
  int line = 1;
};

// Throws nemotron::Error "template syntax error (line N): ..." on malformed input.
std::vector<Token> tokenize(const std::string& source);

const char* token_type_name(Token::Type type);

}  // namespace nemotron::text::jinja
