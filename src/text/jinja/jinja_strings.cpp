#include "text/jinja/jinja_strings.h"

#include <cstdio>

#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text::jinja {

std::vector<uint32_t> to_code_points(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len;
    int32_t cp = utf8_decode(s, i, len);
    out.push_back(cp < 0 ? 0xDC00u + static_cast<unsigned char>(s[i]) : static_cast<uint32_t>(cp));
    i += len;
  }
  return out;
}

static void append_cp(std::string& out, uint32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out += static_cast<char>(cp - 0xDC00);  // surrogateescape: the original byte
  } else {
    utf8_append(out, cp);
  }
}

std::string from_code_points(const std::vector<uint32_t>& cps, std::size_t begin, std::size_t end) {
  std::string out;
  for (std::size_t i = begin; i < end && i < cps.size(); ++i) append_cp(out, cps[i]);
  return out;
}

std::string from_code_points(const std::vector<uint32_t>& cps) {
  return from_code_points(cps, 0, cps.size());
}

std::size_t py_len(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len;
    utf8_decode(s, i, len);
    i += len;
    ++n;
  }
  return n;
}

bool py_isspace(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  auto cps = to_code_points(s);
  std::vector<uint32_t> set;
  if (chars) set = to_code_points(*chars);
  auto strip_it = [&](uint32_t cp) {
    if (!chars) return py_isspace(cp);
    for (uint32_t c : set)
      if (c == cp) return true;
    return false;
  };
  std::size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  return from_code_points(cps, b, e);
}

static uint32_t cp_upper(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149) {
    bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_upper ? (c % 2 == 0) : (c % 2 == 1)) return c - 1;
    return c;
  }
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

static uint32_t cp_lower(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149) {
    bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_upper ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

static bool cp_cased(uint32_t c) { return cp_upper(c) != c || cp_lower(c) != c; }

std::string py_upper(std::string_view s) {
  auto cps = to_code_points(s);
  for (auto& c : cps) c = cp_upper(c);
  return from_code_points(cps);
}

std::string py_lower(std::string_view s) {
  auto cps = to_code_points(s);
  for (auto& c : cps) c = cp_lower(c);
  return from_code_points(cps);
}

std::string py_capitalize(std::string_view s) {
  auto cps = to_code_points(s);
  for (std::size_t i = 0; i < cps.size(); ++i) cps[i] = i == 0 ? cp_upper(cps[i]) : cp_lower(cps[i]);
  return from_code_points(cps);
}

std::string py_title(std::string_view s) {
  auto cps = to_code_points(s);
  bool prev_cased = false;
  for (auto& c : cps) {
    bool cased = cp_cased(c);
    c = prev_cased ? cp_lower(c) : cp_upper(c);
    prev_cased = cased;
  }
  return from_code_points(cps);
}

std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit,
                                  bool from_right) {
  std::vector<std::string> out;
  if (sep && sep->empty()) throw Error("ValueError: empty separator");
  if (!sep) {
    auto cps = to_code_points(s);
    std::vector<std::pair<std::size_t, std::size_t>> words;
    std::size_t n = cps.size();
    if (!from_right) {
      std::size_t i = 0;
      while (i < n) {
        while (i < n && py_isspace(cps[i])) ++i;
        if (i >= n) break;
        if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
          std::size_t e = n;
          while (e > i && py_isspace(cps[e - 1])) --e;
          words.push_back({i, e});
          break;
        }
        std::size_t j = i;
        while (j < n && !py_isspace(cps[j])) ++j;
        words.push_back({i, j});
        i = j;
      }
    } else {
      std::size_t i = n;
      while (i > 0) {
        while (i > 0 && py_isspace(cps[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
          std::size_t b = 0;
          while (b < i && py_isspace(cps[b])) ++b;
          words.push_back({b, i});
          break;
        }
        std::size_t j = i;
        while (j > 0 && !py_isspace(cps[j - 1])) --j;
        words.push_back({j, i});
        i = j;
      }
      std::vector<std::pair<std::size_t, std::size_t>> rev(words.rbegin(), words.rend());
      words = rev;
    }
    for (auto [b, e] : words) out.push_back(from_code_points(cps, b, e));
    return out;
  }
  if (!from_right) {
    std::size_t pos = 0;
    int64_t splits = 0;
    while (maxsplit < 0 || splits < maxsplit) {
      std::size_t at = s.find(*sep, pos);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, at - pos));
      pos = at + sep->size();
      ++splits;
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  std::size_t end = s.size();
  int64_t splits = 0;
  std::vector<std::string> rev;
  while (maxsplit < 0 || splits < maxsplit) {
    if (end < sep->size()) break;
    std::size_t at = s.rfind(*sep, end - sep->size());
    if (at == std::string_view::npos) break;
    rev.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
    end = at;
    ++splits;
  }
  rev.emplace_back(s.substr(0, end));
  return std::vector<std::string>(rev.rbegin(), rev.rend());
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl,
                       int64_t count) {
  std::string out;
  if (old.empty()) {
    auto cps = to_code_points(s);
    int64_t done = 0;
    for (std::size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (i < cps.size()) append_cp(out, cps[i]);
    }
    return out;
  }
  std::size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    std::size_t at = s.find(old, pos);
    if (at == std::string_view::npos) break;
    out += s.substr(pos, at - pos);
    out += repl;
    pos = at + old.size();
    ++done;
  }
  out += s.substr(pos);
  return out;
}

int64_t py_find(std::string_view s, std::string_view sub, bool reverse) {
  std::size_t at = reverse ? s.rfind(sub) : s.find(sub);
  if (at == std::string_view::npos) return -1;
  return static_cast<int64_t>(py_len(s.substr(0, at)));
}

int64_t py_count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(py_len(s)) + 1;
  int64_t n = 0;
  for (std::size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size()))
    ++n;
  return n;
}

static bool py_isprintable(uint32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F)) return false;
  if ((c >= 0x205F && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) || c == 0x3000) return false;
  if ((c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E) return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || (c >= 0xFDD0 && c <= 0xFDEF)) return false;
  if (c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || c == 0xFFFE || c == 0xFFFF) return false;
  if (c >= 0xE0000) return false;  // tags, variation selectors supplement is printable but rare
  return true;
}

std::string py_repr_string(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (uint32_t c : to_code_points(s)) {
    char buf[16];
    if (c == static_cast<uint32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (py_isprintable(c)) {
      append_cp(out, c);
    } else {
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", c);
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", c);
      else std::snprintf(buf, sizeof buf, "\\U%08x", c);
      out += buf;
    }
  }
  out += quote;
  return out;
}

void json_escape_append(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace nemotron::text::jinja
