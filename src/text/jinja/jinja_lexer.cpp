#include "text/jinja/jinja_lexer.h"

#include <cctype>
#include <cstring>

#include "text/jinja/jinja_strings.h"
#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text::jinja {

const char* token_type_name(Token::Type type) {
  switch (type) {
    case Token::Type::Data: return "template data";
    case Token::Type::VarBegin: return "'{{'";
    case Token::Type::VarEnd: return "end of print statement";
    case Token::Type::BlockBegin: return "'{%'";
    case Token::Type::BlockEnd: return "end of statement block";
    case Token::Type::Name: return "name";
    case Token::Type::String: return "string";
    case Token::Type::Int: return "integer";
    case Token::Type::Float: return "float";
    case Token::Type::Op: return "operator";
    case Token::Type::Eof: return "end of template";
  }
  return "token";
}

namespace {

// Length in bytes of the Python-whitespace code point at s[i], or 0.
std::size_t space_at(const std::string& s, std::size_t i) {
  if (i >= s.size()) return 0;
  std::size_t len;
  int32_t cp = utf8_decode(s, i, len);
  return (cp >= 0 && py_isspace(static_cast<uint32_t>(cp))) ? len : 0;
}

bool all_space(const std::string& s, std::size_t from) {
  if (from >= s.size()) return false;  // jinja's \s+ needs at least one character
  for (std::size_t i = from; i < s.size();) {
    std::size_t n = space_at(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

class Lexer {
 public:
  explicit Lexer(const std::string& source) {
    // Normalize \r\n and \r to \n, then drop one trailing newline (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (std::size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    const std::size_t n = src_.size();
    while (pos_ < n) {
      std::size_t at = find_tag_start(pos_);
      if (at == std::string::npos) {
        emit_data(src_.substr(pos_));
        pos_ = n;
        break;
      }
      std::string text = src_.substr(pos_, at - pos_);
      char kind = src_[at + 1];
      std::size_t p = at + 2;
      char sign = 0;
      if (p < n && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      bool raw = kind == '%' && is_raw_begin(p);
      apply_left_strip(text, sign, kind != '{');
      emit_data(text);
      count_lines(pos_, at);
      pos_ = p;
      if (kind == '#') {
        lex_comment();
      } else if (raw) {
        lex_raw();
      } else {
        push(kind == '%' ? Token::Type::BlockBegin : Token::Type::VarBegin, kind == '%' ? "{%" : "{{");
        lex_tag(kind == '%');
      }
    }
    out_.push_back({Token::Type::Eof, "", line_});
    return std::move(out_);
  }

 private:
  std::string src_;
  std::size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> out_;

  [[noreturn]] void fail(const std::string& msg) const {
    throw Error("template syntax error (line " + std::to_string(line_) + "): " + msg);
  }

  void push(Token::Type type, std::string value) { out_.push_back({type, std::move(value), line_}); }

  void count_lines(std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to && i < src_.size(); ++i)
      if (src_[i] == '\n') ++line_;
  }

  void emit_data(const std::string& text) {
    if (!text.empty()) push(Token::Type::Data, text);
  }

  std::size_t find_tag_start(std::size_t from) const {
    for (std::size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    }
    return std::string::npos;
  }

  // {%-: strip all whitespace before. Otherwise lstrip_blocks for block/comment tags.
  void apply_left_strip(std::string& text, char sign, bool block_or_comment) const {
    if (sign == '-') {
      text = py_strip(text, nullptr, false, true);
    } else if (sign != '+' && block_or_comment) {
      std::size_t nl = text.rfind('\n');
      std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && all_space(text, l_pos)) text.resize(l_pos);
    }
  }

  // After an end delimiter: "-" eats all following whitespace; no sign + trim => one "\n".
  void finish_tag(char sign, bool trim_newline) {
    std::size_t start = pos_;
    if (sign == '-') {
      while (std::size_t len = space_at(src_, pos_)) pos_ += len;
    } else if (sign != '+' && trim_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
    count_lines(start, pos_);
    line_starting_ = pos_ > 0 && src_[pos_ - 1] == '\n';
  }

  void skip_ws(std::size_t& p) const {
    while (std::size_t len = space_at(src_, p)) p += len;
  }

  bool match_word(std::size_t p, const char* word) const {
    std::size_t len = std::strlen(word);
    if (src_.compare(p, len, word) != 0) return false;
    std::size_t e = p + len;
    return e >= src_.size() || !(std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_');
  }

  bool is_raw_begin(std::size_t p) const {
    skip_ws(p);
    if (!match_word(p, "raw")) return false;
    p += 3;
    skip_ws(p);
    return src_.compare(p, 3, "-%}") == 0 || src_.compare(p, 2, "%}") == 0;
  }

  void lex_comment() {
    std::size_t j = src_.find("#}", pos_);
    if (j == std::string::npos) fail("Missing end of comment tag");
    char sign = (j > pos_ && (src_[j - 1] == '-' || src_[j - 1] == '+')) ? src_[j - 1] : 0;
    count_lines(pos_, j + 2);
    pos_ = j + 2;
    finish_tag(sign, true);
  }

  void lex_raw() {
    skip_ws(pos_);
    pos_ += 3;  // "raw"
    skip_ws(pos_);
    char begin_sign = 0;
    if (src_[pos_] == '-') {
      begin_sign = '-';
      ++pos_;
    }
    pos_ += 2;  // "%}"
    finish_tag(begin_sign, false);
    std::size_t content_start = pos_;
    for (std::size_t at = src_.find("{%", pos_); at != std::string::npos; at = src_.find("{%", at + 1)) {
      std::size_t p = at + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      skip_ws(p);
      if (!match_word(p, "endraw")) continue;
      p += 6;
      skip_ws(p);
      char end_sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) end_sign = src_[p++];
      if (src_.compare(p, 2, "%}") != 0) continue;
      std::string text = src_.substr(content_start, at - content_start);
      apply_left_strip(text, sign, true);
      emit_data(text);
      count_lines(content_start, p + 2);
      pos_ = p + 2;
      finish_tag(end_sign, true);
      return;
    }
    fail("Missing end of raw directive");
  }

  void lex_tag(bool block) {
    std::vector<char> balance;
    const std::size_t n = src_.size();
    while (true) {
      if (pos_ >= n) fail(block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        const char* end = block ? "%}" : "}}";
        char sign = 0;
        std::size_t len = 0;
        if (src_.compare(pos_, 2, end) == 0) len = 2;
        else if (src_[pos_] == '-' && src_.compare(pos_ + 1, 2, end) == 0) sign = '-', len = 3;
        else if (block && src_[pos_] == '+' && src_.compare(pos_ + 1, 2, end) == 0) sign = '+', len = 3;
        if (len) {
          push(block ? Token::Type::BlockEnd : Token::Type::VarEnd, end);
          pos_ += len;
          finish_tag(sign, block);
          return;
        }
      }
      if (std::size_t len = space_at(src_, pos_)) {
        if (src_[pos_] == '\n') ++line_;
        pos_ += len;
        continue;
      }
      char c = src_[pos_];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t b = pos_;
        while (pos_ < n && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
        push(Token::Type::Name, src_.substr(b, pos_ - b));
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        lex_operator(balance);
      }
    }
  }

  void lex_number() {
    const std::size_t n = src_.size();
    auto digits = [&](std::size_t& p) {
      std::size_t b = p;
      while (p < n && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                       (src_[p] == '_' && p > b && p + 1 < n && std::isdigit(static_cast<unsigned char>(src_[p + 1])))))
        ++p;
      return p > b;
    };
    std::size_t p = pos_;
    digits(p);
    bool is_float = false;
    if (p + 1 < n && src_[p] == '.' && std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      ++p;
      digits(p);
      is_float = true;
    }
    if (p < n && (src_[p] == 'e' || src_[p] == 'E')) {
      std::size_t q = p + 1;
      if (q < n && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (digits(q)) {
        p = q;
        is_float = true;
      }
    }
    std::string text;
    for (std::size_t i = pos_; i < p; ++i)
      if (src_[i] != '_') text += src_[i];
    pos_ = p;
    push(is_float ? Token::Type::Float : Token::Type::Int, text);
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Python "unicode-escape" decoding of the literal's body.
  void lex_string(char quote) {
    const std::size_t n = src_.size();
    int start_line = line_;
    std::size_t p = pos_ + 1;
    std::string out;
    while (true) {
      if (p >= n) {
        line_ = start_line;
        fail("unexpected char '" + std::string(1, quote) + "'");
      }
      char c = src_[p];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= n) {  // reported as unterminated on the next turn
        ++p;
        continue;
      }
      char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (int k = 0; k < len; ++k) {
            int h = p < n ? hex_value(src_[p]) : -1;
            if (h < 0) fail("invalid \\" + std::string(1, e) + " escape in string literal");
            cp = cp * 16 + static_cast<uint32_t>(h);
            ++p;
          }
          if (cp > 0x10FFFF) fail("illegal Unicode character in string literal");
          utf8_append(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && p < n && src_[p] >= '0' && src_[p] <= '7'; ++k, ++p)
              cp = cp * 8 + static_cast<uint32_t>(src_[p] - '0');
            utf8_append(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    pos_ = p + 1;
    out_.push_back({Token::Type::String, std::move(out), start_line});
  }

  void lex_operator(std::vector<char>& balance) {
    static const char* const ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%",
                                      "~", "[", "]", "(", ")", "{", "}", "<", ">", "=", ".", ":",
                                      "|", ",", ";"};
    for (const char* op : ops) {
      std::size_t len = std::strlen(op);
      if (src_.compare(pos_, len, op) != 0) continue;
      char c = op[0];
      if (len == 1 && (c == '(' || c == '[' || c == '{')) {
        if (balance.size() > 256) fail("brackets nested too deeply");
        balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (len == 1 && (c == ')' || c == ']' || c == '}')) {
        if (balance.empty()) fail(std::string("unexpected '") + c + "'");
        if (balance.back() != c) fail(std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
        balance.pop_back();
      }
      push(Token::Type::Op, op);
      pos_ += len;
      return;
    }
    std::size_t len;
    utf8_decode(src_, pos_, len);
    fail("unexpected char '" + src_.substr(pos_, len) + "'");
  }
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) { return Lexer(source).run(); }

}  // namespace nemotron::text::jinja
