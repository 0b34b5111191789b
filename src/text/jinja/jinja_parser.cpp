#include "text/jinja/jinja_parser.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <set>

#include "text/jinja/jinja_lexer.h"
#include "util/error.h"

namespace nemotron::text::jinja {

namespace {

using T = Token::Type;

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseLimits& limits)
      : toks_(std::move(tokens)), limits_(limits) {}

  Body parse() {
    Body body;
    std::string end = subparse(body, {});
    (void)end;
    return body;
  }

 private:
  std::vector<Token> toks_;
  std::size_t i_ = 0;
  ParseLimits limits_;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::string> open_blocks_;

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > p.limits_.max_depth)
        p.fail("template nested too deeply (limit " + std::to_string(p.limits_.max_depth) + ")");
    }
    ~DepthGuard() { --p.depth_; }
  };

  const Token& cur() const { return toks_[i_]; }
  const Token& peek(std::size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  void next() {
    if (i_ + 1 < toks_.size()) ++i_;
  }

  [[noreturn]] void fail(const std::string& msg) const {
    throw Error("template syntax error (line " + std::to_string(cur().line) + "): " + msg);
  }

  static std::string describe(const Token& t) {
    if (t.type == T::Name || t.type == T::Op) return "'" + t.value + "'";
    return token_type_name(t.type);
  }

  bool is_op(const char* op) const { return cur().type == T::Op && cur().value == op; }
  bool is_name(const char* name) const { return cur().type == T::Name && cur().value == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected '") + op + "', got " + describe(cur()));
  }
  void expect(T type) {
    if (cur().type != type)
      fail(std::string("expected ") + token_type_name(type) + ", got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().type != T::Name) fail("expected name, got " + describe(cur()));
    std::string v = cur().value;
    next();
    return v;
  }

  // Computes the node's tree depth; every finished node passes through here so that
  // left-deep chains (a.b.c..., a+b+c...) are bounded too.
  ExprPtr seal(ExprPtr e) {
    int d = 0;
    for (const auto& a : e->args)
      if (a) d = std::max(d, a->depth);
    for (const auto& kv : e->kwargs) d = std::max(d, kv.second->depth);
    e->depth = d + 1;
    if (e->depth > limits_.max_depth)
      fail("expression nested too deeply (limit " + std::to_string(limits_.max_depth) + ")");
    return e;
  }

  ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---- statements ----

  // Parses statements until a block tag whose name is in `ends` (consumed; its name is
  // returned, the stream is left after it) or until end of input (returns "").
  std::string subparse(Body& body, const std::set<std::string>& ends) {
    DepthGuard guard(*this);
    while (true) {
      const Token& t = cur();
      if (t.type == T::Eof) {
        if (!ends.empty()) {
          std::string expected;
          for (const auto& e : ends) expected += (expected.empty() ? "'" : " or '") + e + "'";
          fail("unexpected end of template; expected " + expected + " to close '" +
               (open_blocks_.empty() ? "block" : open_blocks_.back()) + "'");
        }
        return "";
      }
      if (t.type == T::Data) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Text;
        s->line = t.line;
        s->text = t.value;
        body.push_back(std::move(s));
        next();
      } else if (t.type == T::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Print;
        s->line = t.line;
        next();
        s->expr = parse_tuple(true, true);
        expect(T::VarEnd);
        body.push_back(std::move(s));
      } else if (t.type == T::BlockBegin) {
        next();
        if (cur().type != T::Name) fail("tag name expected");
        if (ends.count(cur().value)) {
          std::string name = cur().value;
          next();
          return name;
        }
        body.push_back(parse_statement());
      } else {
        fail("unexpected " + describe(t));
      }
    }
  }

  void end_block() { expect(T::BlockEnd); }

  StmtPtr parse_statement() {
    static const std::set<std::string> kEndTags = {"endif", "elif", "else", "endfor", "endset",
                                                   "endmacro", "endcall", "endfilter", "endwith",
                                                   "endgeneration", "endraw"};
    auto s = std::make_unique<Stmt>();
    s->line = cur().line;
    std::string tag = cur().value;
    if (kEndTags.count(tag)) fail("encountered unknown tag '" + tag + "'" +
                                   (open_blocks_.empty() ? "" : " inside '" + open_blocks_.back() + "'"));
    next();
    open_blocks_.push_back(tag);
    if (tag == "if") {
      s->kind = Stmt::Kind::If;
      s->conds.push_back(parse_tuple(false, true));
      end_block();
      while (true) {
        s->bodies.emplace_back();
        std::string end = subparse(s->bodies.back(), {"elif", "else", "endif"});
        if (end == "elif") {
          s->conds.push_back(parse_tuple(false, true));
          end_block();
          continue;
        }
        if (end == "else") {
          end_block();
          subparse(s->else_body, {"endif"});
        }
        break;
      }
      end_block();
    } else if (tag == "for") {
      s->kind = Stmt::Kind::For;
      parse_targets(*s, false);
      if (!skip_name("in")) fail("expected 'in', got " + describe(cur()));
      s->expr = parse_tuple(false, false);
      if (skip_name("if")) s->cond = parse_expression(true);
      if (is_name("recursive")) fail("recursive for loops are not supported");
      end_block();
      ++loop_depth_;
      std::string end = subparse(s->body, {"endfor", "else"});
      --loop_depth_;
      if (end == "else") {
        end_block();
        subparse(s->else_body, {"endfor"});
      }
      end_block();
    } else if (tag == "set") {
      parse_targets(*s, true);
      if (skip_op("=")) {
        s->kind = Stmt::Kind::Set;
        s->expr = parse_tuple(false, true);
        end_block();
      } else {
        if (s->target_tuple || !s->attr.empty()) fail("block set needs a single name");
        s->kind = Stmt::Kind::SetBlock;
        if (is_op("|")) fail("filtered block set is not supported");
        end_block();
        subparse(s->body, {"endset"});
        end_block();
      }
    } else if (tag == "macro") {
      s->kind = Stmt::Kind::Macro;
      s->name = expect_name();
      parse_signature(*s);
      end_block();
      int saved = loop_depth_;
      loop_depth_ = 0;
      subparse(s->body, {"endmacro"});
      loop_depth_ = saved;
      if (cur().type == T::Name) next();  // {% endmacro name %}
      end_block();
    } else if (tag == "call") {
      s->kind = Stmt::Kind::CallBlock;
      if (is_op("(")) parse_signature(*s);
      s->expr = parse_expression(true);
      if (s->expr->kind != Expr::Kind::Call) fail("expected call");
      end_block();
      int saved = loop_depth_;
      loop_depth_ = 0;
      subparse(s->body, {"endcall"});
      loop_depth_ = saved;
      end_block();
    } else if (tag == "filter") {
      s->kind = Stmt::Kind::FilterBlock;
      ExprPtr node;  // null subject: the block's output
      do {
        node = seal(parse_filter(std::move(node)));
      } while (skip_op("|"));
      s->expr = std::move(node);
      end_block();
      subparse(s->body, {"endfilter"});
      end_block();
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail("'" + tag + "' outside of a loop");
      s->kind = tag == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue;
      end_block();
    } else if (tag == "do") {
      s->kind = Stmt::Kind::Do;
      s->expr = parse_tuple(false, true);
      end_block();
    } else if (tag == "with") {
      s->kind = Stmt::Kind::With;
      while (cur().type != T::BlockEnd) {
        if (!s->targets.empty()) expect_op(",");
        s->targets.push_back(expect_name());
        expect_op("=");
        s->conds.push_back(parse_expression(true));
      }
      end_block();
      subparse(s->body, {"endwith"});
      end_block();
    } else if (tag == "generation") {
      s->kind = Stmt::Kind::Scope;
      end_block();
      subparse(s->body, {"endgeneration"});
      end_block();
    } else {
      fail("encountered unknown tag '" + tag + "'");
    }
    open_blocks_.pop_back();
    return s;
  }

  // for/set targets: name | name, name, ... | (set only) name.attr
  void parse_targets(Stmt& s, bool allow_attr) {
    bool parens = skip_op("(");
    s.targets.push_back(expect_name());
    if (allow_attr && !parens && is_op(".")) {
      next();
      s.attr = expect_name();
      return;
    }
    while (skip_op(",")) {
      s.target_tuple = true;
      if (cur().type != T::Name) break;
      s.targets.push_back(expect_name());
    }
    if (parens) expect_op(")");
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (is_op(")")) break;
      s.params.push_back(expect_name());
      s.defaults.push_back(skip_op("=") ? parse_expression(true) : nullptr);
    }
    expect_op(")");
  }

  // ---- expressions ----

  ExprPtr parse_tuple(bool simplified_unused, bool with_condexpr, bool explicit_parens = false) {
    (void)simplified_unused;
    int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
      }
      if (cur().type == T::VarEnd || cur().type == T::BlockEnd || is_op(")") ||
          (!with_condexpr && is_name("if")) || (!items.empty() && is_name("in")))
        break;
      items.push_back(parse_expression(with_condexpr));
    }
    if (!is_tuple) {
      if (items.size() == 1) return std::move(items[0]);
      if (!explicit_parens) fail("expected an expression, got " + describe(cur()));
    }
    auto e = make(Expr::Kind::Tuple, line);
    e->args = std::move(items);
    return seal(std::move(e));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    if (!with_condexpr) return parse_or();
    ExprPtr e = parse_or();
    while (is_name("if")) {
      int line = cur().line;
      next();
      auto c = make(Expr::Kind::Cond, line);
      c->args.push_back(parse_or());
      c->args.insert(c->args.begin() + 1, std::move(e));
      c->args.push_back(skip_name("else") ? parse_expression(true) : nullptr);
      // args = cond, then, else
      e = seal(std::move(c));
    }
    return e;
  }

  ExprPtr binary(Expr::Kind kind, std::string op, ExprPtr l, ExprPtr r, int line) {
    auto e = make(kind, line);
    e->name = std::move(op);
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return seal(std::move(e));
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      int line = cur().line;
      next();
      DepthGuard guard(*this);
      l = binary(Expr::Kind::Or, "or", std::move(l), parse_and(), line);
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      int line = cur().line;
      next();
      DepthGuard guard(*this);
      l = binary(Expr::Kind::And, "and", std::move(l), parse_not(), line);
    }
    return l;
  }

  ExprPtr parse_not() {
    DepthGuard guard(*this);
    if (is_name("not")) {
      auto e = make(Expr::Kind::Not, cur().line);
      next();
      e->args.push_back(parse_not());
      return seal(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr first = parse_math1();
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      if (cur().type == T::Op && (cur().value == "==" || cur().value == "!=" || cur().value == "<" ||
                                  cur().value == "<=" || cur().value == ">" || cur().value == ">=")) {
        op = cur().value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == T::Name && peek().value == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::Compare, line);
        cmp->args.push_back(std::move(first));
      }
      DepthGuard guard(*this);
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? seal(std::move(cmp)) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().value;
      int line = cur().line;
      next();
      DepthGuard guard(*this);
      l = binary(Expr::Kind::Binary, op, std::move(l), parse_concat(), line);
    }
    return l;
  }

  ExprPtr parse_concat() {
    int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto e = make(Expr::Kind::Concat, line);
    e->args.push_back(std::move(first));
    while (skip_op("~")) {
      if (e->args.size() > 4096) fail("too many '~' operands");
      e->args.push_back(parse_math2());
    }
    return seal(std::move(e));
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().value;
      int line = cur().line;
      next();
      DepthGuard guard(*this);
      l = binary(Expr::Kind::Binary, op, std::move(l), parse_pow(), line);
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      int line = cur().line;
      next();
      DepthGuard guard(*this);
      l = binary(Expr::Kind::Binary, "**", std::move(l), parse_unary(true), line);
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      node = make(is_op("-") ? Expr::Kind::Neg : Expr::Kind::Pos, cur().line);
      next();
      node->args.push_back(parse_unary(false));
      node = seal(std::move(node));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    DepthGuard guard(*this);
    const Token& t = cur();
    int line = t.line;
    if (t.type == T::Name) {
      auto e = make(Expr::Kind::Const, line);
      if (t.value == "true" || t.value == "True") e->value = Value(true);
      else if (t.value == "false" || t.value == "False") e->value = Value(false);
      else if (t.value == "none" || t.value == "None") e->value = Value::none();
      else {
        e->kind = Expr::Kind::Name;
        e->name = t.value;
      }
      next();
      return e;
    }
    if (t.type == T::String) {
      std::string s;
      while (cur().type == T::String) {
        s += cur().value;
        next();
      }
      auto e = make(Expr::Kind::Const, line);
      e->value = Value(std::move(s));
      return e;
    }
    if (t.type == T::Int || t.type == T::Float) {
      auto e = make(Expr::Kind::Const, line);
      errno = 0;
      if (t.type == T::Int) {
        long long v = std::strtoll(t.value.c_str(), nullptr, 10);
        if (errno == ERANGE) fail("integer literal too large: " + t.value);
        e->value = Value(static_cast<int64_t>(v));
      } else {
        e->value = Value(std::strtod(t.value.c_str(), nullptr));
      }
      next();
      return e;
    }
    if (is_op("(")) {
      next();
      ExprPtr e = parse_tuple(false, true, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = make(Expr::Kind::List, line);
      while (!is_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("]")) break;
        e->args.push_back(parse_expression(true));
      }
      expect_op("]");
      return seal(std::move(e));
    }
    if (is_op("{")) {
      next();
      auto e = make(Expr::Kind::Dict, line);
      while (!is_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("}")) break;
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      expect_op("}");
      return seal(std::move(e));
    }
    fail("unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      int line = cur().line;
      if (is_op(".")) {
        next();
        if (cur().type == T::Name) {
          auto e = make(Expr::Kind::Attr, line);
          e->name = cur().value;
          e->args.push_back(std::move(node));
          node = seal(std::move(e));
          next();
        } else if (cur().type == T::Int) {
          auto e = make(Expr::Kind::Item, line);
          e->args.push_back(std::move(node));
          auto k = make(Expr::Kind::Const, line);
          k->value = Value(static_cast<int64_t>(std::strtoll(cur().value.c_str(), nullptr, 10)));
          e->args.push_back(std::move(k));
          node = seal(std::move(e));
          next();
        } else {
          fail("expected name or number after '.'");
        }
      } else if (is_op("[")) {
        next();
        node = seal(parse_subscript(std::move(node), line));
        expect_op("]");
      } else if (is_op("(")) {
        node = seal(parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    bool slice = false;
    int idx = 0;
    while (true) {
      if (is_op(":")) {
        slice = true;
        if (++idx > 2) fail("invalid slice");
        next();
        continue;
      }
      if (is_op("]")) break;
      if (parts[idx]) fail("invalid subscript");
      parts[idx] = parse_expression(true);
      if (!slice && is_op(",")) fail("tuple subscripts are not supported");
    }
    if (!slice) {
      if (!parts[0]) fail("expected subscript expression");
      auto e = make(Expr::Kind::Item, line);
      e->args.push_back(std::move(obj));
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(Expr::Kind::Slice, line);
    e->args.push_back(std::move(obj));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().type == T::Name && peek().type == T::Op && peek().value == "=") {
        std::string key = cur().value;
        next();
        next();
        e.kwargs.emplace_back(key, parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("invalid syntax for function call expression");
        e.args.push_back(parse_expression(true));
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(Expr::Kind::Call, cur().line);
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  ExprPtr parse_filter(ExprPtr subject) {
    auto e = make(Expr::Kind::Filter, cur().line);
    e->name = expect_name();
    while (is_op(".")) {
      next();
      e->name += "." + expect_name();
    }
    e->args.push_back(std::move(subject));
    if (is_op("(")) parse_call_args(*e);
    return e;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        next();
        node = seal(parse_filter(std::move(node)));
      } else if (is_name("is")) {
        next();
        auto e = make(Expr::Kind::Test, cur().line);
        e->negated = skip_name("not");
        e->name = expect_name();
        while (is_op(".")) {
          next();
          e->name += "." + expect_name();
        }
        e->args.push_back(std::move(node));
        const Token& t = cur();
        if (is_op("(")) {
          parse_call_args(*e);
        } else if ((t.type == T::Name || t.type == T::String || t.type == T::Int || t.type == T::Float ||
                    is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) fail("You cannot chain multiple tests with is");
          e->args.push_back(parse_postfix(parse_primary()));
        }
        node = seal(std::move(e));
      } else if (is_op("(")) {
        node = seal(parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }
};

}  // namespace

Body parse_template(const std::string& source, const ParseLimits& limits) {
  return Parser(tokenize(source), limits).parse();
}

}  // namespace nemotron::text::jinja
