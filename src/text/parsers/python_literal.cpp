#include "text/parsers/python_literal.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text {
namespace {

constexpr int kMaxDepth = 256;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Recursive descent over the token grammar of Python literals. `bracket_depth_` > 0 means
// newlines are insignificant (inside (), [] or {}), as in the Python tokenizer.
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Json parse_all() {
    skip_ws(true);  // leading/trailing blank lines are allowed in eval mode
    Json value = parse_expr();
    skip_ws(true);
    if (i_ != s_.size()) fail("unexpected trailing text");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("python literal: " + what + " at offset " + std::to_string(i_));
  }
  bool eof() const { return i_ >= s_.size(); }
  char peek(std::size_t k = 0) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }

  void skip_ws(bool allow_newline) {
    allow_newline = allow_newline || bracket_depth_ > 0;
    while (!eof()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\f') {
        ++i_;
      } else if ((c == '\n' || c == '\r') && allow_newline) {
        ++i_;
      } else if (c == '\\' && (peek(1) == '\n' || (peek(1) == '\r' && peek(2) == '\n'))) {
        i_ += peek(1) == '\n' ? 2 : 3;
        if (eof()) fail("line continuation at end of input");
      } else if (c == '#') {
        while (!eof() && s_[i_] != '\n' && s_[i_] != '\r') ++i_;
      } else {
        break;
      }
    }
  }

  void expect(char c) {
    skip_ws(false);
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }

  Json parse_expr() {
    skip_ws(false);
    if (eof()) fail("unexpected end of input");
    const char c = peek();
    if (c == '+' || c == '-') return parse_signed();
    if (is_digit(c) || (c == '.' && is_digit(peek(1)))) return parse_number(false);
    if (c == '[') return parse_list();
    if (c == '(') return parse_paren();
    if (c == '{') return parse_brace();
    if (c == '\'' || c == '"') return parse_strings();
    if (is_ident_char(c)) return parse_identifier();
    fail("unexpected character");
  }

  // ast.literal_eval accepts one sign applied to a number constant; parentheses produce
  // no AST node, so "-(1)" and "(- 1)" are accepted too.
  Json parse_signed() {
    const bool negative = s_[i_++] == '-';
    int parens = 0;
    skip_ws(false);
    while (peek() == '(') {
      ++i_;
      ++parens;
      ++bracket_depth_;
      if (parens > kMaxDepth) fail("nesting too deep");
      skip_ws(false);
    }
    if (!(is_digit(peek()) || (peek() == '.' && is_digit(peek(1))))) fail("sign must apply to a number");
    Json value = parse_number(negative);
    for (; parens > 0; --parens) {
      expect(')');
      --bracket_depth_;
    }
    return value;
  }

  // digitpart := digit (["_"] digit)*  — appended to `out` without underscores.
  bool read_digits(std::string& out, bool (*ok)(char)) {
    if (!ok(peek())) return false;
    out += s_[i_++];
    while (!eof()) {
      if (ok(peek())) {
        out += s_[i_++];
      } else if (peek() == '_' && ok(peek(1))) {
        out += s_[i_ + 1];
        i_ += 2;
      } else {
        break;
      }
    }
    return true;
  }

  Json make_int(const std::string& digits, int base, bool negative) {
    uint64_t mag = 0;
    for (const char d : digits) {
      const auto v = static_cast<uint64_t>(hex_value(d));
      if (mag > (std::numeric_limits<uint64_t>::max() - v) / static_cast<uint64_t>(base))
        fail("integer does not fit in 64 bits");
      mag = mag * static_cast<uint64_t>(base) + v;
    }
    if (negative) {
      if (mag > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1)
        fail("integer does not fit in 64 bits");
      if (mag == 0) return Json(int64_t{0});
      return Json(static_cast<int64_t>(0 - mag));  // two's complement, defined for uint64
    }
    if (mag <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return Json(static_cast<int64_t>(mag));
    return Json(mag);
  }

  Json parse_number(bool negative) {
    static auto dec = [](char c) { return is_digit(c); };
    if (peek() == '0' && (peek(1) == 'x' || peek(1) == 'X' || peek(1) == 'o' || peek(1) == 'O' ||
                          peek(1) == 'b' || peek(1) == 'B')) {
      const char kind = static_cast<char>(peek(1) | 0x20);
      i_ += 2;
      if (peek() == '_') ++i_;  // Python allows 0x_1f
      std::string digits;
      bool ok = false;
      if (kind == 'x') ok = read_digits(digits, [](char c) { return hex_value(c) >= 0; });
      if (kind == 'o') ok = read_digits(digits, [](char c) { return c >= '0' && c <= '7'; });
      if (kind == 'b') ok = read_digits(digits, [](char c) { return c == '0' || c == '1'; });
      if (!ok) fail("malformed integer literal");
      if (is_ident_char(peek())) fail("malformed number");
      return make_int(digits, kind == 'x' ? 16 : kind == 'o' ? 8 : 2, negative);
    }
    std::string text;
    const bool has_int = read_digits(text, dec);
    bool is_float = false;
    if (peek() == '.') {
      is_float = true;
      text += s_[i_++];
      read_digits(text, dec);
      if (!has_int && text.size() == 1) fail("malformed number");
    }
    if (peek() == 'e' || peek() == 'E') {
      is_float = true;
      text += s_[i_++];
      if (peek() == '+' || peek() == '-') text += s_[i_++];
      if (!read_digits(text, dec)) fail("malformed exponent");
    }
    if (peek() == 'j' || peek() == 'J') fail("complex numbers have no JSON form");
    if (is_ident_char(peek())) fail("malformed number");
    if (!is_float) {
      if (text.size() > 1 && text[0] == '0' && text.find_first_not_of('0') != std::string::npos)
        fail("leading zeros in a decimal integer");
      return make_int(text, 10, negative);
    }
    const double v = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(v)) fail("float literal overflows");
    return Json(negative ? -v : v);
  }

  Json parse_strings() {
    std::string out;
    parse_string_body(false, out);
    return parse_strings_continue(out);
  }

  // Consumes a string prefix (r, u) directly followed by a quote. Returns false (consuming
  // nothing) when the text is not a prefixed string; throws for bytes/f-strings.
  bool read_string_prefix(bool& raw) {
    std::size_t k = 0;
    while (k < 3 && is_ident_char(peek(k)) && !is_digit(peek(k))) ++k;
    if (k == 0 || k > 2 || (peek(k) != '\'' && peek(k) != '"')) return false;
    std::string p(s_.substr(i_, k));
    for (char& c : p) c = static_cast<char>(c | 0x20);
    if (p == "r" || p == "u") {
      raw = p == "r";
      i_ += k;
      return true;
    }
    if (p == "b" || p == "br" || p == "rb") fail("bytes literals have no JSON form");
    if (p == "f" || p == "fr" || p == "rf") fail("f-strings are not literals");
    return false;
  }

  void append_code_point(std::string& out, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid code point in escape");
    utf8_append(out, cp);
  }

  uint32_t read_hex(int count) {
    uint32_t cp = 0;
    for (int k = 0; k < count; ++k) {
      const int v = hex_value(peek());
      if (v < 0) fail("truncated \\x/\\u/\\U escape");
      cp = cp * 16 + static_cast<uint32_t>(v);
      ++i_;
    }
    return cp;
  }

  void parse_string_body(bool raw, std::string& out) {
    const char q = s_[i_];
    const bool triple = peek(1) == q && peek(2) == q;
    i_ += triple ? 3 : 1;
    for (;;) {
      if (eof()) fail("unterminated string literal");
      const char c = s_[i_];
      if (c == q && (!triple || (peek(1) == q && peek(2) == q))) {
        i_ += triple ? 3 : 1;
        return;
      }
      if (!triple && (c == '\n' || c == '\r')) fail("newline in single-quoted string");
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (i_ + 1 >= s_.size()) fail("unterminated string literal");
      const char d = s_[i_ + 1];
      if (raw) {  // backslash escapes nothing but still protects the next character
        out += c;
        out += d;
        i_ += 2;
        continue;
      }
      i_ += 2;
      switch (d) {
        case '\n': break;  // line continuation inside the literal
        case '\\': case '\'': case '"': out += d; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': append_code_point(out, read_hex(2)); break;
        case 'u': append_code_point(out, read_hex(4)); break;
        case 'U': append_code_point(out, read_hex(8)); break;
        case 'N': fail("\\N{...} escapes are not supported");
        default:
          if (d >= '0' && d <= '7') {
            uint32_t cp = static_cast<uint32_t>(d - '0');
            for (int k = 0; k < 2 && peek() >= '0' && peek() <= '7'; ++k) cp = cp * 8 + static_cast<uint32_t>(s_[i_++] - '0');
            append_code_point(out, cp);
          } else {  // unknown escapes are kept verbatim, as Python does
            out += '\\';
            out += d;
          }
      }
    }
  }

  Json parse_identifier() {
    bool raw = false;
    if (read_string_prefix(raw)) {
      std::string out;
      parse_string_body(raw, out);
      return parse_strings_continue(out);
    }
    std::size_t k = 0;
    while (is_ident_char(peek(k))) ++k;
    const std::string_view word = s_.substr(i_, k);
    i_ += k;
    if (word == "True") return Json(true);
    if (word == "False") return Json(false);
    if (word == "None") return Json(nullptr);
    i_ -= k;
    fail("name '" + std::string(word.substr(0, 40)) + "' is not a literal");
  }

  // Implicit concatenation of adjacent literals: "a" 'b' r"c".
  Json parse_strings_continue(std::string& out) {
    for (;;) {
      skip_ws(false);
      bool raw = false;
      if (peek() == '\'' || peek() == '"') {
        parse_string_body(false, out);
      } else if (read_string_prefix(raw)) {
        parse_string_body(raw, out);
      } else {
        return Json(out);
      }
    }
  }

  void enter() {
    ++i_;
    ++bracket_depth_;
    if (bracket_depth_ > kMaxDepth) fail("nesting too deep");
  }
  void leave() {
    ++i_;
    --bracket_depth_;
  }

  // Items separated by commas up to `close`; a trailing comma is allowed.
  template <typename F>
  void parse_items(char close, F&& on_item) {
    for (;;) {
      skip_ws(false);
      if (peek() == close) return;
      on_item();
      skip_ws(false);
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != close) fail(std::string("expected ',' or '") + close + "'");
      return;
    }
  }

  Json parse_list() {
    enter();
    Json arr = Json::array();
    parse_items(']', [&] { arr.push_back(parse_expr()); });
    leave();
    return arr;
  }

  Json parse_paren() {
    enter();
    skip_ws(false);
    if (peek() == ')') {
      leave();
      return Json::array();
    }
    Json first = parse_expr();
    skip_ws(false);
    if (peek() == ')') {  // parenthesized expression, not a tuple
      leave();
      return first;
    }
    if (peek() != ',') fail("expected ',' or ')'");
    ++i_;
    Json arr = Json::array();
    arr.push_back(std::move(first));
    parse_items(')', [&] { arr.push_back(parse_expr()); });
    leave();
    return arr;
  }

  // json.dumps converts dict keys: str kept, numbers spelled, True/False/None as JSON words.
  std::string key_string(const Json& key) {
    if (key.is_string()) return key.get<std::string>();
    if (key.is_boolean() || key.is_null() || key.is_number()) return key.dump();
    fail("dict key has no JSON form");
  }

  Json parse_brace() {
    enter();
    skip_ws(false);
    Json obj = Json::object();
    if (peek() == '}') {
      leave();
      return obj;
    }
    parse_items('}', [&] {
      Json key = parse_expr();
      skip_ws(false);
      if (peek() != ':') fail("sets have no JSON form");
      ++i_;
      obj[key_string(key)] = parse_expr();  // duplicate key: last value wins, first position kept
    });
    leave();
    return obj;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  int bracket_depth_ = 0;
};

}  // namespace

Json parse_python_literal(std::string_view text) { return Parser(text).parse_all(); }

}  // namespace nemotron::text
