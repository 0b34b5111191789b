#include "text/tokenizer/pre_tokenizer.h"

#include <functional>

#include "text/tokenizer/normalizer.h"
#include "text/tokenizer/regex.h"
#include "text/tokenizer/tokenizer_json.h"
#include "text/tokenizer/unicode.h"
#include "text/utf8.h"

namespace nemotron::text {
namespace {

// GPT-2's pre-tokenization regex, used by ByteLevel(use_regex=true).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// HF's Whitespace pre-tokenizer regex \w+|[^\w\s]+ is compiled by Rust's `regex` crate (not
// Oniguruma): \w = Alphabetic, marks, Nd, Pc, Join_Control; \s = White_Space.
constexpr const char* kRustWord = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D})";

using SpanFinder = std::function<std::vector<Span>(const std::string&)>;

// Spans from regex matches plus the gaps between them (HF Pattern::find_matches for regexes).
std::vector<Span> regex_spans(const Regex& re, const std::string& text, bool invert) {
  std::vector<Span> spans;
  if (text.empty()) return {{0, 0, false}};
  std::size_t prev = 0;
  re.find_all(text, [&](std::size_t s, std::size_t e) {
    if (prev != s) spans.push_back({prev, s, invert});
    spans.push_back({s, e, !invert});
    prev = e;
  });
  if (prev != text.size()) spans.push_back({prev, text.size(), invert});
  return spans;
}

// Spans from a per-character predicate: every matching character is its own match.
std::vector<Span> char_spans(const std::string& text, const std::function<bool(uint32_t)>& pred) {
  std::vector<Span> spans;
  if (text.empty()) return {{0, 0, false}};
  std::size_t last = 0;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len;
    const int32_t cp = utf8_decode(text, i, len);
    if (cp >= 0 && pred(static_cast<uint32_t>(cp))) {
      if (last < i) spans.push_back({last, i, false});
      spans.push_back({i, i + len, true});
      last = i + len;
    }
    i += len;
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
  return spans;
}

void split_pieces(std::vector<Piece>& pieces, const SpanFinder& finder, SplitBehavior behavior) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (Piece& p : pieces) {
    for (auto [b, e] : apply_split_behavior(finder(p.text), behavior))
      out.push_back({p.text.substr(b, e - b), p.at_start && b == 0});
  }
  pieces = std::move(out);
}

class Split : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> re, SplitBehavior b, bool invert) : re_(std::move(re)), b_(b), invert_(invert) {}
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [this](const std::string& t) { return regex_spans(*re_, t, invert_); }, b_);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior b_;
  bool invert_;
};

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : prefix_(add_prefix_space), re_(use_regex ? std::make_unique<Regex>(kGpt2Pattern) : nullptr) {}
  void split(std::vector<Piece>& pieces) const override {
    if (prefix_)
      for (Piece& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, " ");
    if (re_) split_pieces(pieces, [this](const std::string& t) { return regex_spans(*re_, t, false); },
                          SplitBehavior::Isolated);
    const std::string* alpha = byte_level_alphabet();
    for (Piece& p : pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char c : p.text) mapped += alpha[c];
      p.text = std::move(mapped);
    }
  }

 private:
  bool prefix_;
  std::unique_ptr<Regex> re_;
};

class Digits : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual), numeric_("\\p{N}") {}
  void split(std::vector<Piece>& pieces) const override {
    auto pred = [this](uint32_t cp) {
      if (cp < 0x80) return cp >= '0' && cp <= '9';
      std::string s;
      utf8_append(s, cp);
      return numeric_.matches_at(s, 0);
    };
    split_pieces(pieces, [&](const std::string& t) { return char_spans(t, pred); },
                 individual_ ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
  }

 private:
  bool individual_;
  Regex numeric_;
};

enum class Prepend { Always, First, Never };

class Metaspace : public PreTokenizer {
 public:
  Metaspace(std::string replacement, Prepend scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void split(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + rep_.size());
      for (char c : p.text) {
        if (c == ' ') t += rep_;
        else t += c;
      }
      const bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == Prepend::Always || (scheme_ == Prepend::First && p.at_start)))
        t.insert(0, rep_);
      p.text = std::move(t);
    }
    if (!split_) return;
    const std::string& rep = rep_;
    split_pieces(pieces, [&rep](const std::string& t) {
      std::vector<Span> spans;
      if (t.empty()) return std::vector<Span>{{0, 0, false}};
      std::size_t last = 0;
      for (std::size_t i = t.find(rep); i != std::string::npos; i = t.find(rep, i + rep.size())) {
        if (last < i) spans.push_back({last, i, false});
        spans.push_back({i, i + rep.size(), true});
        last = i + rep.size();
      }
      if (last < t.size()) spans.push_back({last, t.size(), false});
      return spans;
    }, SplitBehavior::MergedWithNext);
  }

 private:
  std::string rep_;
  Prepend scheme_;
  bool split_;
};

// Whitespace: keeps the matches of \w+|[^\w\s]+, drops everything else.
class Whitespace : public PreTokenizer {
 public:
  Whitespace()
      : re_(std::string("[") + kRustWord + "]+|[^" + kRustWord + R"(\p{White_Space}]+)") {}
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [this](const std::string& t) { return regex_spans(re_, t, true); },
                 SplitBehavior::Removed);
  }

 private:
  Regex re_;
};

class WhitespaceSplit : public PreTokenizer {
 public:
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [](const std::string& t) { return char_spans(t, unicode_is_whitespace); },
                 SplitBehavior::Removed);
  }
};

// Punctuation: Rust's char::is_ascii_punctuation or Unicode general category P.
class Punctuation : public PreTokenizer {
 public:
  explicit Punctuation(SplitBehavior b) : b_(b), punct_("[\\p{P}!-/:-@\\[-`{-~]") {}
  void split(std::vector<Piece>& pieces) const override {
    auto pred = [this](uint32_t cp) {
      std::string s;
      utf8_append(s, cp);
      return punct_.matches_at(s, 0);
    };
    split_pieces(pieces, [&](const std::string& t) { return char_spans(t, pred); }, b_);
  }

 private:
  SplitBehavior b_;
  Regex punct_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

SplitBehavior parse_behavior(const TokJson& j, const char* key, const std::string& path, SplitBehavior fallback) {
  const std::string s = json_string(j, key, path);
  if (s.empty()) return fallback;
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  throw SpecError(json_child(path, key), "unknown split behavior \"" + s + "\"");
}

}  // namespace

std::vector<std::pair<std::size_t, std::size_t>> apply_split_behavior(const std::vector<Span>& spans,
                                                                      SplitBehavior behavior) {
  // Each entry: range and whether it is removed.
  struct R { std::size_t b, e; bool remove; };
  std::vector<R> acc;
  acc.reserve(spans.size());
  bool prev_match = false;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const Span& s : spans) acc.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::Removed:
      for (const Span& s : spans) acc.push_back({s.begin, s.end, s.is_match});
      break;
    case SplitBehavior::Contiguous:
      for (const Span& s : spans) {
        if (s.is_match == prev_match && !acc.empty()) acc.back().e = s.end;
        else acc.push_back({s.begin, s.end, false});
        prev_match = s.is_match;
      }
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !prev_match && !acc.empty()) acc.back().e = s.end;
        else acc.push_back({s.begin, s.end, false});
        prev_match = s.is_match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !prev_match && !acc.empty()) acc.back().b = it->begin;
        else acc.push_back({it->begin, it->end, false});
        prev_match = it->is_match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
  }
  std::vector<std::pair<std::size_t, std::size_t>> out;
  out.reserve(acc.size());
  for (const R& r : acc)
    if (!r.remove && r.b != r.e) out.emplace_back(r.b, r.e);
  return out;
}

const std::string* byte_level_alphabet() {
  static const auto table = [] {
    static std::string t[256];
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      utf8_append(t[b], printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++));
    }
    return t;
  }();
  return table;
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const TokJson& j, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, path);
  if (type == "Split") {
    auto it = j.find("pattern");
    if (it == j.end()) throw SpecError(json_child(path, "pattern"), "missing");
    return std::make_unique<Split>(make_pattern(*it, json_child(path, "pattern")),
                                   parse_behavior(j, "behavior", path, SplitBehavior::Isolated),
                                   json_bool(j, "invert", path, false));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(json_bool(j, "add_prefix_space", path, true),
                                       json_bool(j, "use_regex", path, true));
  if (type == "Digits") return std::make_unique<Digits>(json_bool(j, "individual_digits", path, false));
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplit>();
  if (type == "Punctuation")
    return std::make_unique<Punctuation>(parse_behavior(j, "behavior", path, SplitBehavior::Isolated));
  if (type == "Metaspace") {
    const std::string rep = json_string(j, "replacement", path, "\xE2\x96\x81");
    std::size_t len;
    if (rep.empty() || utf8_decode(rep, 0, len) < 0 || len != rep.size())
      throw SpecError(json_child(path, "replacement"), "must be exactly one character");
    Prepend scheme = json_bool(j, "add_prefix_space", path, true) ? Prepend::Always : Prepend::Never;
    const std::string ps = json_string(j, "prepend_scheme", path);
    if (ps == "always") scheme = Prepend::Always;
    else if (ps == "first") scheme = Prepend::First;
    else if (ps == "never") scheme = Prepend::Never;
    else if (!ps.empty()) throw SpecError(json_child(path, "prepend_scheme"), "unknown value \"" + ps + "\"");
    return std::make_unique<Metaspace>(rep, scheme, json_bool(j, "split", path, true));
  }
  if (type == "Sequence") {
    const TokJson& arr = json_array(j, "pretokenizers", path);
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      auto p = make_pre_tokenizer(arr[i], json_index(json_child(path, "pretokenizers"), i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw SpecError(json_child(path, "type"), "unsupported pre_tokenizer type \"" + type + "\"");
}

}  // namespace nemotron::text
