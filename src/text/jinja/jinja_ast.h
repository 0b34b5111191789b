#pragma once
// Syntax tree of a parsed Jinja template. Immutable after parsing; the interpreter walks
// it directly. Expression depth and statement nesting are bounded by the parser, so the
// recursive evaluator cannot overflow the stack on hostile templates.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/jinja_value.h"

namespace nemotron::text::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Const,    // value
    Name,     // name
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]] (null parts allowed)
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs); args[0] null inside {% filter %}
    Test,     // args[0] is [not] name(args[1..], kwargs)
    Neg,      // -args[0]
    Pos,      // +args[0]
    Not,      // not args[0]
    Binary,   // args[0] <name> args[1]: + - * / // % **
    And,
    Or,
    Concat,   // args joined with ~
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    Cond,     // args[1] if args[0] else args[2] (args[2] null => undefined)
    List,
    Tuple,
    Dict,     // args = k0, v0, k1, v1, ...
  };
  Kind kind;
  int line = 0;
  int depth = 1;  // height of this subtree, bounded by the parser
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    Text,         // text
    Print,        // {{ expr }}
    If,           // conds[i] -> bodies[i]; else_body
    For,          // for targets in expr [if cond]: body; else_body
    Set,          // set targets = expr  |  set targets[0].attr = expr (attr non-empty)
    SetBlock,     // set targets[0] %}body{% endset
    Macro,        // macro name(params = defaults): body
    CallBlock,    // call(params) expr: body (body is `caller`)
    FilterBlock,  // filter expr (a Filter chain whose innermost subject is null): body
    Break,
    Continue,
    Do,           // do expr
    With,         // with targets[i] = conds[i]: body
    Scope,        // body only ({% generation %})
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
  std::vector<std::string> targets;
  bool target_tuple = false;
  std::string attr;
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null when no default
};

}  // namespace nemotron::text::jinja
