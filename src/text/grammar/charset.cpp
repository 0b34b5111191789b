#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/grammar/charset.h"

#include <pcre2.h>

#include <algorithm>
#include <string>

#include "text/utf8.h"

namespace nemotron::text::grammar {

namespace {
constexpr uint32_t kSurLo = 0xD800, kSurHi = 0xDFFF;
}

CharSet CharSet::any() {
  CharSet s;
  s.add(0, kMaxCodePoint);
  return s;
}

void CharSet::add(uint32_t lo, uint32_t hi) {
  if (lo > hi) return;
  hi = std::min(hi, kMaxCodePoint);
  if (lo > hi) return;
  // Remove surrogates.
  if (lo <= kSurHi && hi >= kSurLo) {
    if (lo < kSurLo) add(lo, kSurLo - 1);
    if (hi > kSurHi) add(kSurHi + 1, hi);
    return;
  }
  r_.emplace_back(lo, hi);
  std::sort(r_.begin(), r_.end());
  std::vector<std::pair<uint32_t, uint32_t>> m;
  for (const auto& x : r_) {
    // Adjacent across the surrogate gap counts as touching too (keeps ranges canonical).
    if (!m.empty() && (x.first <= m.back().second + 1 || (m.back().second == kSurLo - 1 && x.first == kSurHi + 1)))
      m.back().second = std::max(m.back().second, x.second);
    else
      m.push_back(x);
  }
  r_ = std::move(m);
}

void CharSet::add(const CharSet& o) {
  for (const auto& x : o.r_) add(x.first, x.second);
}

CharSet CharSet::complement() const {
  CharSet out;
  uint32_t next = 0;
  for (const auto& x : r_) {
    if (x.first > next) out.add(next, x.first - 1);
    next = x.second + 1;
  }
  if (next <= kMaxCodePoint) out.add(next, kMaxCodePoint);
  return out;
}

CharSet CharSet::intersect(const CharSet& o) const {
  CharSet out;
  for (const auto& a : r_)
    for (const auto& b : o.r_) {
      const uint32_t lo = std::max(a.first, b.first), hi = std::min(a.second, b.second);
      if (lo <= hi) out.add(lo, hi);
    }
  return out;
}

bool CharSet::contains(uint32_t cp) const {
  for (const auto& x : r_)
    if (cp >= x.first && cp <= x.second) return true;
  return false;
}

namespace {

std::string enc(uint32_t cp) {
  std::string s;
  utf8_append(s, cp);
  return s;
}

// [lo, hi] of one encoded length -> sequences of byte ranges (Russ Cox's utf8 ranges).
void split_utf8(uint32_t lo, uint32_t hi, std::vector<Expr>& out) {
  static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t b : bounds)
    if (lo <= b && hi > b) {
      split_utf8(lo, b, out);
      split_utf8(b + 1, hi, out);
      return;
    }
  const std::string a = enc(lo), z = enc(hi);
  const std::size_t n = a.size();
  for (std::size_t i = 1; i < n; ++i) {
    const uint32_t m = (uint32_t{1} << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        split_utf8(lo, lo | m, out);
        split_utf8((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        split_utf8(lo, (hi & ~m) - 1, out);
        split_utf8(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::vector<Expr> seq;
  for (std::size_t k = 0; k < n; ++k)
    seq.push_back(Expr::byteset(ByteSet::range(static_cast<unsigned char>(a[k]), static_cast<unsigned char>(z[k]))));
  out.push_back(Expr::seq(std::move(seq)));
}

}  // namespace

Expr utf8_expr(const CharSet& s) {
  std::vector<Expr> alts;
  for (const auto& x : s.ranges()) {
    // Split around the surrogate gap (a canonical range may span it).
    if (x.first < kSurLo && x.second > kSurHi) {
      split_utf8(x.first, kSurLo - 1, alts);
      split_utf8(kSurHi + 1, x.second, alts);
    } else {
      split_utf8(x.first, x.second, alts);
    }
  }
  return Expr::alt(std::move(alts));
}

Expr json_char_expr(const CharSet& s) {
  CharSet special;
  special.add(0, 0x1F);
  special.add('"', '"');
  special.add('\\', '\\');
  std::vector<Expr> alts{utf8_expr(s.minus(special))};
  const CharSet escaped = s.intersect(special);
  for (const auto& x : escaped.ranges())
    for (uint32_t c = x.first; c <= x.second; ++c) {
      std::string esc;
      switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\t': esc = "\\t"; break;
        case '\r': esc = "\\r"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: {
          static const char* hex = "0123456789abcdef";
          esc = std::string("\\u00") + hex[c >> 4] + hex[c & 15];
        }
      }
      alts.push_back(Expr::literal(esc));
    }
  return Expr::alt(std::move(alts));
}

namespace {

// Code points in [0x80, 0x20000) matching a PCRE2 Unicode pattern (computed once).
CharSet pcre_set(const char* pattern) {
  CharSet out;
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &off, nullptr);
  if (!code) return out;
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  uint32_t start = 0;
  bool in = false;
  for (uint32_t cp = 0x80; cp < 0x20000; ++cp) {
    bool m = false;
    if (cp < kSurLo || cp > kSurHi) {
      const std::string s = enc(cp);
      m = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, nullptr) >= 0;
    }
    if (m && !in) start = cp;
    if (!m && in) out.add(start, cp - 1);
    in = m;
  }
  if (in) out.add(start, 0x1FFFF);
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return out;
}

}  // namespace

// \d: narrow [0-9]; wide adds every Unicode decimal digit (Python's \d).
ClassPair class_digit() {
  static const ClassPair p = [] {
    ClassPair c{CharSet::range('0', '9'), CharSet::range('0', '9')};
    c.wide.add(pcre_set("\\p{Nd}"));
    return c;
  }();
  return p;
}

// \w: narrow [A-Za-z0-9_]; wide adds Unicode letters and numbers (Python's \w) and, not
// having tables beyond U+1FFFF, everything from U+20000 up.
ClassPair class_word() {
  static const ClassPair p = [] {
    CharSet n;
    n.add('A', 'Z');
    n.add('a', 'z');
    n.add('0', '9');
    n.add('_', '_');
    ClassPair c{n, n};
    c.wide.add(pcre_set("[\\p{L}\\p{N}]"));
    c.wide.add(0x20000, kMaxCodePoint);
    return c;
  }();
  return p;
}

// \s: narrow = whitespace in both ECMAScript and Python; wide = in either (Python adds
// U+001C..U+001F and U+0085, ECMAScript U+FEFF).
ClassPair class_space() {
  static const ClassPair p = [] {
    CharSet n;
    for (uint32_t c : {0x09u, 0x0Au, 0x0Bu, 0x0Cu, 0x0Du, 0x20u, 0xA0u, 0x1680u, 0x2028u, 0x2029u, 0x202Fu, 0x205Fu, 0x3000u})
      n.add(c, c);
    n.add(0x2000, 0x200A);
    ClassPair c{n, n};
    c.wide.add(0x1C, 0x1F);
    c.wide.add(0x85, 0x85);
    c.wide.add(0xFEFF, 0xFEFF);
    return c;
  }();
  return p;
}

// `.`: any character but the line terminators \n \r U+2028 U+2029 (ECMAScript; Python's `.`
// only excludes \n, so this is right in both).
ClassPair class_dot() {
  CharSet s = CharSet::any();
  CharSet lt;
  lt.add('\n', '\n');
  lt.add('\r', '\r');
  lt.add(0x2028, 0x2029);
  s = s.minus(lt);
  return {s, s};
}

}  // namespace nemotron::text::grammar
