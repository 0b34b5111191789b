#include "text/tokenizer/added_tokens.h"

#include <algorithm>

#include "text/tokenizer/regex.h"
#include "text/utf8.h"

namespace nemotron::text {

void TokenMatcher::add(std::string_view pattern, int32_t value) {
  if (pattern.empty()) return;
  int32_t n = 0;
  for (unsigned char c : pattern) {
    auto& next = nodes_[static_cast<std::size_t>(n)].next;
    auto it = std::find_if(next.begin(), next.end(), [c](const auto& p) { return p.first == c; });
    if (it != next.end()) {
      n = it->second;
    } else {
      const auto id = static_cast<int32_t>(nodes_.size());
      nodes_[static_cast<std::size_t>(n)].next.emplace_back(c, id);
      nodes_.emplace_back();
      n = id;
    }
  }
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  // Duplicate contents keep the first token (HF's trie reports the first pattern).
  if (nodes_[static_cast<std::size_t>(n)].value < 0) nodes_[static_cast<std::size_t>(n)].value = value;
}

std::size_t TokenMatcher::match_at(std::string_view text, std::size_t pos, int32_t& value) const {
  if (!first_byte_[static_cast<unsigned char>(text[pos])]) return 0;
  std::size_t best = 0;
  int32_t n = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto& next = nodes_[static_cast<std::size_t>(n)].next;
    auto it = std::find_if(next.begin(), next.end(), [c](const auto& p) { return p.first == c; });
    if (it == next.end()) break;
    n = it->second;
    if (nodes_[static_cast<std::size_t>(n)].value >= 0) {
      best = i + 1 - pos;
      value = nodes_[static_cast<std::size_t>(n)].value;
    }
  }
  // `value` was last set at the deepest terminal node, i.e. for the longest match.
  return best;
}

AddedVocabulary::AddedVocabulary()
    // Rust regex \w (Unicode word characters) and \s (White_Space), one character each.
    : word_start_(std::make_unique<Regex>(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])")),
      space_(std::make_unique<Regex>(R"(\p{White_Space})")) {}

AddedVocabulary::~AddedVocabulary() = default;

void AddedVocabulary::build(std::vector<AddedToken> tokens,
                            const std::function<std::string(const std::string&)>& normalize) {
  tokens_ = std::move(tokens);
  for (AddedToken& t : tokens_) t.display = t.normalized ? normalize(t.content) : t.content;
  // HF's matching order: special tokens first, then the others, each in file order.
  for (int pass = 0; pass < 2; ++pass)
    for (const AddedToken& t : tokens_) {
      if (t.special != (pass == 0)) continue;
      if (t.normalized) norm_.add(t.display, t.id);
      else raw_.add(t.content, t.id);
    }
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  for (const AddedToken& t : tokens_) by_content_.emplace(t.content, t.id);
}

const AddedToken* AddedVocabulary::find(int32_t id) const {
  auto it = std::lower_bound(tokens_.begin(), tokens_.end(), id,
                             [](const AddedToken& t, int32_t v) { return t.id < v; });
  return it != tokens_.end() && it->id == id ? &*it : nullptr;
}

int32_t AddedVocabulary::find(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? -1 : it->second;
}

void AddedVocabulary::split(std::vector<Segment>& segs, const TokenMatcher& m, bool skip_special) const {
  if (m.empty()) return;
  // Character before `pos` / starting at `pos` matches `re`.
  auto char_before = [](const Regex& re, std::string_view s, std::size_t pos) {
    std::size_t b = pos - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    return re.matches_at(s.substr(0, pos), b);
  };
  std::vector<Segment> out;
  for (Segment& seg : segs) {
    if (seg.id >= 0) { out.push_back(std::move(seg)); continue; }
    const std::string& s = seg.text;
    std::size_t start_offset = 0;
    auto emit_text = [&](std::size_t b, std::size_t e) {
      if (b < e) out.push_back({s.substr(b, e - b), -1, seg.at_start && b == 0});
    };
    for (std::size_t pos = 0; pos < s.size();) {
      int32_t id;
      const std::size_t len = m.match_at(s, pos, id);
      if (len == 0) { ++pos; continue; }
      std::size_t start = pos, stop = pos + len;
      pos = stop;  // non-overlapping iteration continues after the match, used or not
      const AddedToken* tok = find(id);
      if (skip_special && tok->special) continue;
      if (tok->single_word) {
        const bool start_space = start == 0 || !char_before(*word_start_, s, start);
        const bool stop_space = stop == s.size() || !word_start_->matches_at(s, stop);
        if (!start_space || !stop_space) continue;
      }
      if (tok->lstrip) {
        std::size_t b = start;
        while (b > 0 && char_before(*space_, s, b)) {
          --b;
          while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
        }
        start = std::max(b, start_offset);
      }
      if (tok->rstrip) {
        std::size_t e;
        while (stop < s.size() && space_->matches_at(s, stop, &e)) stop = e;
        pos = std::max(pos, stop);
      }
      emit_text(start_offset, start);
      out.push_back({s.substr(start, stop - start), id, false});
      start_offset = stop;
    }
    emit_text(start_offset, s.size());
  }
  segs = std::move(out);
}

}  // namespace nemotron::text
