// EBNF / GBNF front end.
//
// Syntax (llama.cpp GBNF-compatible): rules `name ::= alternatives`; a rule runs until the
// next `name ::=` (so alternatives may continue on following lines, with or without a
// leading `|`); names [A-Za-z0-9_-]+ (also dotted); literals "..." or '...' with escapes
// \n \r \t \\ \" \' \xHH \uHHHH \UHHHHHHHH; character classes [a-z] [^...] over code points
// (the same escapes, plus \] \[ \- \^); `.` = any character; grouping ( ); postfix ? * +
// {m} {m,} {m,n}; token references <[id]> (exactly that special token: vocabulary.h);
// comments from # to the end of the line. Errors name line and column.
#include <map>
#include <vector>

#include "text/grammar/charset.h"
#include "text/grammar/grammar.h"
#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text::grammar {
namespace {

class EbnfParser {
 public:
  explicit EbnfParser(const std::string& text) : src_(text) {}

  std::shared_ptr<const Grammar> parse(const std::string& root) {
    skip_space();
    while (pos_ < src_.size()) {
      const std::size_t at = pos_;
      std::string name = parse_name();
      if (name.empty()) fail("expected a rule name", at);
      skip_space();
      if (src_.compare(pos_, 3, "::=") != 0) fail("expected '::=' after rule name '" + name + "'", pos_);
      pos_ += 3;
      const int32_t r = rule(name);
      if (b_.defined(r)) fail("rule '" + name + "' is defined twice", at);
      skip_space();
      Expr body = parse_alternatives(/*nested=*/false);
      b_.define(r, body);
      skip_space();
    }
    for (const auto& [name, use] : first_use_)
      if (!b_.defined(rules_[name])) fail("rule '" + name + "' is referenced but not defined", use);
    auto it = rules_.find(root);
    if (it == rules_.end()) throw Error("EBNF grammar: no rule named '" + root + "'");
    return b_.build(it->second, "EBNF grammar");
  }

 private:
  [[noreturn]] void fail(const std::string& what, std::size_t at) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < at && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw Error("EBNF grammar: " + what + " at line " + std::to_string(line) + ", column " + std::to_string(col));
  }

  int32_t rule(const std::string& name) {
    auto it = rules_.find(name);
    if (it != rules_.end()) return it->second;
    const int32_t r = b_.declare(name);
    rules_.emplace(name, r);
    return r;
  }

  static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  }

  void skip_space() {
    while (pos_ < src_.size()) {
      const char c = src_[pos_];
      if (c == '#') {
        while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string parse_name() {
    const std::size_t start = pos_;
    while (pos_ < src_.size() && name_char(src_[pos_])) ++pos_;
    return src_.substr(start, pos_ - start);
  }

  // True when a `name ::=` starts at pos_ (the end of the current rule).
  bool at_rule_start() const {
    std::size_t p = pos_;
    while (p < src_.size() && name_char(src_[p])) ++p;
    if (p == pos_) return false;
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\r')) ++p;
    return src_.compare(p, 3, "::=") == 0;
  }

  Expr parse_alternatives(bool nested) {
    std::vector<Expr> alts;
    alts.push_back(parse_sequence(nested));
    while (pos_ < src_.size() && src_[pos_] == '|') {
      ++pos_;
      skip_space();
      alts.push_back(parse_sequence(nested));
    }
    return Expr::alt(std::move(alts));
  }

  Expr parse_sequence(bool nested) {
    std::vector<Expr> parts;
    for (;;) {
      skip_space();
      if (pos_ >= src_.size()) break;
      const char c = src_[pos_];
      if (c == '|' || c == ')') break;
      if (!nested && at_rule_start()) break;
      Expr atom = parse_atom();
      parts.push_back(parse_postfix(std::move(atom)));
    }
    return Expr::seq(std::move(parts));
  }

  Expr parse_postfix(Expr atom) {
    for (;;) {
      if (pos_ >= src_.size()) return atom;
      const std::size_t at = pos_;
      const char c = src_[pos_];
      if (c == '*') { ++pos_; atom = Expr::star(std::move(atom)); }
      else if (c == '+') { ++pos_; atom = Expr::plus(std::move(atom)); }
      else if (c == '?') { ++pos_; atom = Expr::opt(std::move(atom)); }
      else if (c == '{') {
        ++pos_;
        skip_space();
        const int32_t lo = parse_count(at);
        int32_t hi = lo;
        skip_space();
        if (pos_ < src_.size() && src_[pos_] == ',') {
          ++pos_;
          skip_space();
          hi = (pos_ < src_.size() && src_[pos_] == '}') ? -1 : parse_count(at);
          skip_space();
        }
        if (pos_ >= src_.size() || src_[pos_] != '}') fail("expected '}' closing a repetition", at);
        ++pos_;
        if (hi >= 0 && hi < lo) fail("repetition {m,n} with n < m", at);
        atom = Expr::repeat(std::move(atom), lo, hi);
      } else {
        return atom;
      }
    }
  }

  int32_t parse_count(std::size_t at) {
    int64_t v = 0;
    const std::size_t start = pos_;
    while (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9') {
      v = v * 10 + (src_[pos_++] - '0');
      if (v > GrammarBuilder::kMaxRepeat) fail("repetition count over " + std::to_string(GrammarBuilder::kMaxRepeat), at);
    }
    if (pos_ == start) fail("expected a number in a repetition", at);
    return static_cast<int32_t>(v);
  }

  // One character (after any escape) of a literal or class.
  uint32_t parse_char(std::size_t at) {
    if (pos_ >= src_.size()) fail("unexpected end of grammar", at);
    if (src_[pos_] == '\\') {
      ++pos_;
      if (pos_ >= src_.size()) fail("trailing backslash", at);
      const char e = src_[pos_++];
      auto hex = [&](int n) {
        uint32_t v = 0;
        for (int k = 0; k < n; ++k) {
          if (pos_ >= src_.size()) fail("incomplete escape", at);
          const char d = src_[pos_++];
          int x = -1;
          if (d >= '0' && d <= '9') x = d - '0';
          else if (d >= 'a' && d <= 'f') x = d - 'a' + 10;
          else if (d >= 'A' && d <= 'F') x = d - 'A' + 10;
          if (x < 0) fail("bad hex digit in escape", pos_ - 1);
          v = v * 16 + static_cast<uint32_t>(x);
        }
        return v;
      };
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '0': return 0;
        case 'x': return hex(2);
        case 'u': return hex(4);
        case 'U': return hex(8);
        default: return static_cast<unsigned char>(e);  // \\ \" \' \] \[ \- \^ \/ ...
      }
    }
    std::size_t len;
    const int32_t cp = utf8_decode(src_, pos_, len);
    if (cp < 0) fail("invalid UTF-8", pos_);
    pos_ += len;
    return static_cast<uint32_t>(cp);
  }

  Expr parse_atom() {
    const std::size_t at = pos_;
    const char c = src_[pos_];
    if (c == '"' || c == '\'') {
      ++pos_;
      std::string bytes;
      while (pos_ < src_.size() && src_[pos_] != c) {
        // Escapes are code points (GBNF: \xE9 is U+00E9), UTF-8 encoded.
        const uint32_t cp = parse_char(at);
        if (cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF)) fail("escape is not a Unicode scalar value", at);
        utf8_append(bytes, cp);
      }
      if (pos_ >= src_.size()) fail("unterminated literal", at);
      ++pos_;
      return Expr::literal(bytes);
    }
    if (c == '[') {
      ++pos_;
      bool neg = false;
      if (pos_ < src_.size() && src_[pos_] == '^') {
        neg = true;
        ++pos_;
      }
      CharSet set;
      while (pos_ < src_.size() && src_[pos_] != ']') {
        const uint32_t lo = parse_char(at);
        uint32_t hi = lo;
        if (pos_ + 1 < src_.size() && src_[pos_] == '-' && src_[pos_ + 1] != ']') {
          ++pos_;
          hi = parse_char(at);
          if (hi < lo) fail("range out of order in character class", at);
        }
        set.add(lo, hi);
      }
      if (pos_ >= src_.size()) fail("unterminated character class", at);
      ++pos_;
      return utf8_expr(neg ? set.complement() : set);
    }
    if (c == '.') {
      ++pos_;
      return utf8_expr(CharSet::any());
    }
    if (c == '(') {
      ++pos_;
      skip_space();
      Expr e = parse_alternatives(/*nested=*/true);
      skip_space();
      if (pos_ >= src_.size() || src_[pos_] != ')') fail("missing ')'", at);
      ++pos_;
      return e;
    }
    if (name_char(c)) {
      const std::string name = parse_name();
      first_use_.emplace(name, at);
      return Expr::ref(rule(name));
    }
    if (c == '<') {  // <[id]>: exactly that (special) token
      if (src_.compare(pos_, 2, "<[") != 0) fail("token references by text (<...>) are not supported; use <[id]>", at);
      pos_ += 2;
      int64_t id = 0;
      const std::size_t start = pos_;
      while (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9' && id < (1 << 28)) id = id * 10 + (src_[pos_++] - '0');
      if (pos_ == start || src_.compare(pos_, 2, "]>") != 0 || id >= (1 << 28)) fail("bad token reference, expected <[id]>", at);
      pos_ += 2;
      return Expr::literal(Vocabulary::special_token_bytes(static_cast<int32_t>(id)));
    }
    fail(std::string("unexpected character '") + c + "'", at);
  }

  std::string src_;
  std::size_t pos_ = 0;
  GrammarBuilder b_;
  std::map<std::string, int32_t> rules_;
  std::map<std::string, std::size_t> first_use_;
};

}  // namespace

std::shared_ptr<const Grammar> from_ebnf(const std::string& text, const std::string& root) {
  EbnfParser p(text);
  return p.parse(root);
}

}  // namespace nemotron::text::grammar
