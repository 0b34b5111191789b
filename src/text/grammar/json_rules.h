#pragma once
// Shared JSON grammar pieces, declared on first use in a GrammarBuilder:
//
//   ws      ::= ( " " | "\r"? "\n" [ \t]{0,max_indent} )?     (nothing when max_indent is 0)
//   value   ::= object | array | string | number | "true" | "false" | "null"
//   object  ::= "{" ws ( "}" | member obj-tail )
//   obj-tail::= ws ( "," ws member obj-tail | "}" )
//   member  ::= string ws ":" ws value
//   array   ::= "[" ws ( "]" | value arr-tail )
//   arr-tail::= ws ( "," ws value arr-tail | "]" )
//   string  ::= "\"" char* "\""
//   char    ::= any character but " \ U+0000..U+001F (raw UTF-8)
//             | "\" ( ["\/bfnrt] | "u" 4 hex digits, not a surrogate )
//   number  ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [+-]? [0-9]{1,2} )?
//   integer ::= "-"? ( "0" | [1-9] [0-9]{0,17} )
//
// Whitespace appears exactly once between two tokens (never two ws in a row), so the bound
// holds and the grammar stays unambiguous. Numbers have bounded digits (a model cannot
// ramble in a number either; 1e99 at most, integers below 10^18). \u escapes exclude
// surrogates: a pair would decode to one character and break string length counting.
#include "text/grammar/grammar.h"

namespace nemotron::text::grammar {

class JsonRules {
 public:
  JsonRules(GrammarBuilder& b, const JsonOptions& opt) : b_(b), opt_(opt) {}
  Expr ws();
  Expr value();
  Expr object();
  Expr array();
  Expr string();
  Expr chr();  // one string character (raw or escaped)
  Expr number();
  Expr integer();
  GrammarBuilder& builder() { return b_; }

 private:
  int32_t get(int32_t& slot, const std::string& name);
  GrammarBuilder& b_;
  JsonOptions opt_;
  int32_t ws_ = -1, value_ = -1, object_ = -1, array_ = -1, string_ = -1, char_ = -1, number_ = -1, integer_ = -1;
};

}  // namespace nemotron::text::grammar
