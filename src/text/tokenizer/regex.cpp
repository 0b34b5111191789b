#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/tokenizer/regex.h"

#include <pcre2.h>

#include <stdexcept>

#include "util/error.h"

namespace nemotron::text {
namespace {

// Per-thread match data and JIT stack, reused across calls (match data sized for one group
// pair, which is all we read).
struct ThreadState {
  pcre2_match_data* md = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  ThreadState() {
    md = pcre2_match_data_create(1, nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    if (ctx && stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~ThreadState() {
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(md);
  }
};

ThreadState& thread_state() {
  thread_local ThreadState state;
  return state;
}

}  // namespace

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    throw std::invalid_argument("invalid regex /" + pattern + "/: " +
                                reinterpret_cast<const char*>(buf) + " at offset " +
                                std::to_string(err_off));
  }
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Regex::search(std::string_view subject, std::size_t start, bool anchored, std::size_t& ms,
                   std::size_t& me) const {
  ThreadState& ts = thread_state();
  auto* code = static_cast<pcre2_code*>(code_);
  const uint32_t opts = PCRE2_NO_UTF_CHECK | (anchored ? PCRE2_ANCHORED : 0);
  int rc;
  if (jit_ && !anchored) {
    rc = pcre2_jit_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start,
                         opts, ts.md, ts.ctx);
  } else {
    rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start,
                     opts, ts.md, ts.ctx);
  }
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // very long match: retry with the interpreter (heap)
    rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start,
                     opts | PCRE2_NO_JIT, ts.md, ts.ctx);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(rc, buf, sizeof buf);
    throw Error("regex /" + pattern_ + "/ failed: " + reinterpret_cast<const char*>(buf));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ts.md);
  ms = ov[0];
  me = ov[1];
  if (me < ms) me = ms;  // \K tricks can report end < start; treat as empty
  return true;
}

void Regex::find_all(std::string_view subject,
                     const std::function<void(std::size_t, std::size_t)>& fn) const {
  std::size_t last_end = 0;
  bool have_last = false;
  std::size_t last_match_end = 0;
  while (last_end <= subject.size()) {
    std::size_t s, e;
    if (!search(subject, last_end, false, s, e)) break;
    if (s == e && have_last && last_match_end == e) {
      // Step over one whole UTF-8 character.
      std::size_t step = 1;
      while (last_end + step < subject.size() &&
             (static_cast<unsigned char>(subject[last_end + step]) & 0xC0) == 0x80)
        ++step;
      last_end += step;
      continue;
    }
    last_end = e;
    have_last = true;
    last_match_end = e;
    fn(s, e);
  }
}

std::string Regex::replace_all(std::string_view subject, std::string_view content) const {
  std::string out;
  std::size_t prev = 0;
  find_all(subject, [&](std::size_t s, std::size_t e) {
    out.append(subject.substr(prev, s - prev));
    out.append(content);
    prev = e;
  });
  out.append(subject.substr(prev));
  return out;
}

std::vector<std::pair<std::size_t, std::size_t>> Regex::find_all(std::string_view subject) const {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  find_all(subject, [&](std::size_t s, std::size_t e) { out.emplace_back(s, e); });
  return out;
}

bool Regex::matches_at(std::string_view subject, std::size_t pos, std::size_t* end) const {
  std::size_t s, e;
  if (!search(subject, pos, true, s, e)) return false;
  if (end) *end = e;
  return true;
}

std::string Regex::from_oniguruma(std::string_view p) {
  // Outside a class, Oniguruma also counts the Latin-1 digits ² ³ ¹ ¼ ½ ¾ (category No) as
  // word characters; inside a class it does not (both observed with HF tokenizers 0.23).
  static constexpr const char* kWordInClass = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc})";
  static const std::string kWord = std::string(kWordInClass) + R"(\x{B2}\x{B3}\x{B9}\x{BC}-\x{BE})";
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false;
  std::size_t class_start = 0;  // index in `p` just after "[" or "[^"
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[++i];
      if (n == 's') out += R"(\p{White_Space})";
      else if (n == 'S') out += R"(\P{White_Space})";
      else if (n == 'w') out += in_class ? std::string(kWordInClass) : "[" + kWord + "]";
      else if (n == 'W' && !in_class) out += "[^" + kWord + "]";
      else { out += c; out += n; }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      class_start = i + 1;
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:name:]
      const std::size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']' && i != class_start) in_class = false;
    out += c;
  }
  return out;
}

std::string Regex::escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#&~ ").find(c) != std::string_view::npos) {
      out += '\\';
    } else if (c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v') {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[(c >> 4) & 0xF];
      out += hex[c & 0xF];
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace nemotron::text
