#include "text/grammar/regex.h"

#include <vector>

#include "text/grammar/charset.h"
#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text::grammar {
namespace {

class RegexParser {
 public:
  RegexParser(const std::string& pattern, RegexMode mode, std::string what)
      : src_(pattern), mode_(mode), what_(std::move(what)) {
    for (std::size_t i = 0; i < pattern.size();) {
      std::size_t len;
      const int32_t cp = utf8_decode(pattern, i, len);
      if (cp < 0) throw Error(what_ + " /" + src_ + "/: invalid UTF-8 at byte " + std::to_string(i));
      cps_.push_back(static_cast<uint32_t>(cp));
      i += len;
    }
  }

  Expr parse() {
    // Top level: alternatives, each with its own anchors.
    std::vector<Expr> alts;
    for (;;) {
      bool start_anchor = false, end_anchor = false;
      if (peek('^')) {
        ++pos_;
        start_anchor = true;
      }
      Expr body = parse_seq(/*top=*/true, end_anchor);
      if (mode_.search) {
        std::vector<Expr> parts;
        if (!start_anchor) parts.push_back(Expr::star(chars(class_dot().narrow)));
        parts.push_back(std::move(body));
        if (!end_anchor) parts.push_back(Expr::star(chars(class_dot().narrow)));
        body = Expr::seq(std::move(parts));
      }
      alts.push_back(std::move(body));
      if (pos_ >= cps_.size()) break;
      if (cps_[pos_] == '|') {
        ++pos_;
        continue;
      }
      fail("unmatched ')'");
    }
    return Expr::alt(std::move(alts));
  }

 private:
  [[noreturn]] void fail(const std::string& what, std::size_t at = SIZE_MAX) const {
    throw Error(what_ + " /" + src_ + "/: " + what + " at position " + std::to_string(at == SIZE_MAX ? pos_ : at));
  }
  bool peek(uint32_t c) const { return pos_ < cps_.size() && cps_[pos_] == c; }
  bool at_end() const { return pos_ >= cps_.size(); }

  Expr chars(const CharSet& s) const { return mode_.json_string ? json_char_expr(s) : utf8_expr(s); }

  Expr parse_alt() {
    std::vector<Expr> alts;
    bool unused = false;
    alts.push_back(parse_seq(false, unused));
    while (peek('|')) {
      ++pos_;
      alts.push_back(parse_seq(false, unused));
    }
    return Expr::alt(std::move(alts));
  }

  // A concatenation, up to '|', ')' or the end. At the top level a '$' right before '|' or
  // the end sets end_anchor.
  Expr parse_seq(bool top, bool& end_anchor) {
    std::vector<Expr> parts;
    while (!at_end() && !peek('|') && !peek(')')) {
      if (peek('$')) {
        const std::size_t at = pos_;
        ++pos_;
        if (top && (at_end() || peek('|'))) {
          end_anchor = true;
          break;
        }
        fail("anchor '$' inside the pattern is not supported", at);
      }
      if (peek('^')) fail("anchor '^' inside the pattern is not supported");
      Expr atom = parse_atom();
      parts.push_back(parse_quantifier(std::move(atom)));
    }
    return Expr::seq(std::move(parts));
  }

  bool parse_int(int32_t& v) {
    const std::size_t start = pos_;
    int64_t x = 0;
    while (!at_end() && cps_[pos_] >= '0' && cps_[pos_] <= '9') {
      x = x * 10 + (cps_[pos_] - '0');
      if (x > 1000000) fail("repetition count too large", start);
      ++pos_;
    }
    v = static_cast<int32_t>(x);
    return pos_ > start;
  }

  Expr parse_quantifier(Expr atom) {
    for (;;) {
      if (at_end()) return atom;
      const std::size_t at = pos_;
      int32_t lo = 0, hi = 0;
      const uint32_t c = cps_[pos_];
      if (c == '*') { lo = 0; hi = -1; ++pos_; }
      else if (c == '+') { lo = 1; hi = -1; ++pos_; }
      else if (c == '?') { lo = 0; hi = 1; ++pos_; }
      else if (c == '{') {
        ++pos_;
        if (!parse_int(lo)) {  // not a quantifier: a literal '{' (ECMAScript Annex B)
          pos_ = at;
          return atom;
        }
        hi = lo;
        if (peek(',')) {
          ++pos_;
          if (!parse_int(hi)) hi = -1;
        }
        if (!peek('}')) {
          pos_ = at;
          return atom;
        }
        ++pos_;
        if (hi >= 0 && hi < lo) fail("quantifier {" + std::to_string(lo) + "," + std::to_string(hi) + "} has max < min", at);
      } else {
        return atom;
      }
      if (hi > GrammarBuilder::kMaxRepeat || lo > GrammarBuilder::kMaxRepeat)
        fail("repetition count over " + std::to_string(GrammarBuilder::kMaxRepeat), at);
      if (peek('?')) ++pos_;  // lazy: same language
      else if (peek('+')) fail("possessive quantifiers are not supported");
      atom = Expr::repeat(std::move(atom), lo, hi);
    }
  }

  Expr parse_atom() {
    const std::size_t at = pos_;
    const uint32_t c = cps_[pos_++];
    switch (c) {
      case '(': {
        if (peek('?')) {
          ++pos_;
          if (peek(':')) {
            ++pos_;
          } else if (peek('=') || peek('!')) {
            fail("lookahead assertions are not supported", at);
          } else if (peek('<')) {
            ++pos_;
            if (peek('=') || peek('!')) fail("lookbehind assertions are not supported", at);
            while (!at_end() && cps_[pos_] != '>') ++pos_;  // a named group: the name is ignored
            if (at_end()) fail("unterminated group name", at);
            ++pos_;
          } else {
            fail("inline flags and other (? constructs are not supported", at);
          }
        }
        Expr e = parse_alt();
        if (!peek(')')) fail("missing ')'", at);
        ++pos_;
        return e;
      }
      case ')': fail("unmatched ')'", at);
      case '[': return chars(parse_class(at));
      case '.': return chars(class_dot().narrow);
      case '*': case '+': case '?': fail("nothing to repeat", at);
      case '{': {
        // A literal '{' unless it starts a valid quantifier (nothing to repeat then).
        std::size_t p = pos_;
        bool digits = false;
        while (p < cps_.size() && cps_[p] >= '0' && cps_[p] <= '9') { ++p; digits = true; }
        if (digits) fail("nothing to repeat", at);
        return chars(CharSet::of('{'));
      }
      case '\\': {
        ClassPair cls;
        if (parse_escape(false, cls)) return chars(cls.narrow);
        return chars(cls.narrow);
      }
      default: return chars(CharSet::of(c));
    }
  }

  uint32_t hex_digits(std::size_t n, std::size_t at) {
    uint32_t v = 0;
    for (std::size_t k = 0; k < n; ++k) {
      if (at_end()) fail("incomplete escape", at);
      const uint32_t d = cps_[pos_++];
      int x = -1;
      if (d >= '0' && d <= '9') x = static_cast<int>(d - '0');
      else if (d >= 'a' && d <= 'f') x = static_cast<int>(d - 'a' + 10);
      else if (d >= 'A' && d <= 'F') x = static_cast<int>(d - 'A' + 10);
      if (x < 0) fail("bad hex digit in escape", at);
      v = v * 16 + static_cast<uint32_t>(x);
    }
    return v;
  }

  // After a '\': fills `out` (a single character sets narrow = wide). Returns true for a
  // shorthand class.
  bool parse_escape(bool in_class, ClassPair& out) {
    const std::size_t at = pos_ - 1;
    if (at_end()) fail("trailing backslash", at);
    const uint32_t c = cps_[pos_++];
    auto one = [&](uint32_t cp) {
      out = {CharSet::of(cp), CharSet::of(cp)};
      return false;
    };
    switch (c) {
      case 'd': out = class_digit(); return true;
      case 'D': out = class_digit().negated(); return true;
      case 'w': out = class_word(); return true;
      case 'W': out = class_word().negated(); return true;
      case 's': out = class_space(); return true;
      case 'S': out = class_space().negated(); return true;
      case 'n': return one('\n');
      case 'r': return one('\r');
      case 't': return one('\t');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case '0':
        if (!at_end() && cps_[pos_] >= '0' && cps_[pos_] <= '9') fail("octal escapes are not supported", at);
        return one(0);
      case 'b':
        if (in_class) return one('\b');
        fail("word boundary assertions (\\b) are not supported", at);
      case 'B': fail("word boundary assertions (\\B) are not supported", at);
      case 'x': return one(hex_digits(2, at));
      case 'u': {
        if (peek('{')) {
          ++pos_;
          uint32_t v = 0;
          std::size_t n = 0;
          while (!at_end() && cps_[pos_] != '}') {
            v = v * 16 + hex_digits(1, at);
            if (++n > 6 || v > kMaxCodePoint) fail("bad \\u{...} escape", at);
          }
          if (at_end() || n == 0) fail("bad \\u{...} escape", at);
          ++pos_;
          return one(v);
        }
        uint32_t v = hex_digits(4, at);
        // A surrogate pair written as two \u escapes is one character.
        if (v >= 0xD800 && v <= 0xDBFF && pos_ + 5 < cps_.size() + 0 && cps_[pos_] == '\\' && cps_[pos_ + 1] == 'u') {
          const std::size_t save = pos_;
          pos_ += 2;
          const uint32_t lo = hex_digits(4, at);
          if (lo >= 0xDC00 && lo <= 0xDFFF) return one(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00));
          pos_ = save;
        }
        if (v >= 0xD800 && v <= 0xDFFF) fail("lone surrogate escapes are not supported", at);
        return one(v);
      }
      case 'c': {
        if (at_end()) fail("incomplete \\c escape", at);
        const uint32_t l = cps_[pos_++];
        if (!((l >= 'a' && l <= 'z') || (l >= 'A' && l <= 'Z'))) fail("bad \\c escape", at);
        return one(l % 32);
      }
      case 'p': case 'P': fail("Unicode property escapes are not supported", at);
      case 'k': fail("backreferences are not supported", at);
      default:
        if (c >= '1' && c <= '9') fail("backreferences are not supported", at);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) fail(std::string("unknown escape \\") + static_cast<char>(c), at);
        return one(c);  // escaped punctuation (and any other character) stands for itself
    }
  }

  // After '['. Positive class: union of narrow sets; negated: complement of the union of
  // wide sets (charset.h).
  CharSet parse_class(std::size_t at) {
    bool neg = false;
    if (peek('^')) {
      neg = true;
      ++pos_;
    }
    CharSet narrow, wide;
    bool first = true;
    for (;;) {
      if (at_end()) fail("unterminated character class", at);
      if (peek(']')) {  // ECMAScript: ']' closes even right after '['
        ++pos_;
        break;
      }
      (void)first;
      first = false;
      ClassPair lo_item;
      bool lo_is_class = false;
      uint32_t lo_cp = 0;
      if (peek('\\')) {
        ++pos_;
        lo_is_class = parse_escape(true, lo_item);
        if (!lo_is_class) lo_cp = lo_item.narrow.ranges()[0].first;
      } else {
        lo_cp = cps_[pos_++];
        lo_item = {CharSet::of(lo_cp), CharSet::of(lo_cp)};
      }
      // A range?
      if (!lo_is_class && peek('-') && pos_ + 1 < cps_.size() && cps_[pos_ + 1] != ']') {
        const std::size_t dash = pos_;
        ++pos_;
        uint32_t hi_cp;
        if (peek('\\')) {
          ++pos_;
          ClassPair hi_item;
          if (parse_escape(true, hi_item)) fail("a class cannot end a range", dash);
          hi_cp = hi_item.narrow.ranges()[0].first;
        } else {
          hi_cp = cps_[pos_++];
        }
        if (hi_cp < lo_cp) fail("range out of order in character class", dash);
        narrow.add(lo_cp, hi_cp);
        wide.add(lo_cp, hi_cp);
        continue;
      }
      narrow.add(lo_item.narrow);
      wide.add(lo_item.wide);
    }
    return neg ? wide.complement() : narrow;
  }

  std::string src_;
  RegexMode mode_;
  std::string what_;
  std::vector<uint32_t> cps_;
  std::size_t pos_ = 0;
};

}  // namespace

Expr compile_regex(const std::string& pattern, RegexMode mode, const std::string& what) {
  RegexParser p(pattern, mode, what);
  return p.parse();
}

}  // namespace nemotron::text::grammar

#include "text/grammar/grammar.h"

namespace nemotron::text::grammar {

std::shared_ptr<const Grammar> from_regex(const std::string& pattern) {
  GrammarBuilder b;
  const int32_t r = b.add("regex", compile_regex(pattern, RegexMode{}, "regex"));
  return b.build(r, "regex /" + pattern + "/");
}

}  // namespace nemotron::text::grammar
