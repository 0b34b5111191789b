#include "text/parsers/reasoning_parser.h"

#include <algorithm>

namespace nemotron::text {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kToolCallOpen = "<tool_call>";

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Length of the longest suffix of s that is a proper prefix of tag.
std::size_t partial_suffix(std::string_view s, std::string_view tag) {
  for (std::size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  return 0;
}

}  // namespace

bool prompt_ends_in_reasoning(std::string_view prompt) {
  const std::size_t turn = prompt.rfind("<|im_start|>");
  const std::string_view tail = turn == std::string_view::npos ? prompt : prompt.substr(turn);
  const std::size_t open = tail.rfind(kThinkOpen);
  if (open == std::string_view::npos) return false;
  const std::string_view after = tail.substr(open);
  return after.find(kThinkClose) == std::string_view::npos &&
         after.find("<|im_end|>") == std::string_view::npos;
}

ReasoningStreamParser::ReasoningStreamParser(ReasoningOptions options)
    : opt_(options), state_(options.thinking_enabled ? State::kStart : State::kContent) {}

void ReasoningStreamParser::emit(bool reasoning, std::string_view text, std::vector<ReasoningChunk>& out) {
  if (text.empty()) return;
  if (reasoning) reasoning_nonempty_ = true;
  if (!out.empty() && out.back().reasoning == reasoning) {
    out.back().text.append(text);
    return;
  }
  out.push_back(ReasoningChunk{reasoning, std::string(text)});
}

void ReasoningStreamParser::feed(std::string_view text, std::vector<ReasoningChunk>& out) {
  buf_.append(text);
  while (step(false, out)) {}
}

bool ReasoningStreamParser::finish(std::vector<ReasoningChunk>& out) {
  while (step(true, out)) {}
  // Only whitespace content can still be held here (state kContent with force on).
  const bool rescue = opt_.force_nonempty_content && !content_nonblank_ && reasoning_nonempty_;
  if (!rescue) emit(false, buf_, out);
  buf_.clear();
  return rescue;
}

bool ReasoningStreamParser::step(bool eot, std::vector<ReasoningChunk>& out) {
  const std::string_view s(buf_);
  switch (state_) {
    case State::kStart: {
      std::size_t q = 0;
      while (q < s.size() && is_ws(s[q])) ++q;
      const std::string_view t = s.substr(q);
      if (t.substr(0, kThinkOpen.size()) == kThinkOpen) {
        buf_.erase(0, q + kThinkOpen.size());
        state_ = State::kAfterOpen;
        return true;
      }
      if (!eot && (t.empty() || kThinkOpen.substr(0, t.size()) == t)) return false;
      state_ = State::kReasoning;
      return true;
    }
    case State::kAfterOpen:
    case State::kAfterClose: {
      if (s.empty() && !eot) return false;
      if (!s.empty() && s[0] == '\n') buf_.erase(0, 1);
      state_ = state_ == State::kAfterOpen ? State::kReasoning : State::kContent;
      return true;
    }
    case State::kReasoning: {
      const std::size_t close = s.find(kThinkClose);
      const std::size_t call = opt_.tool_call_ends_reasoning ? s.find(kToolCallOpen) : std::string_view::npos;
      const std::size_t p = std::min(close, call);
      if (p != std::string_view::npos) {
        const std::size_t r = (p > 0 && s[p - 1] == '\n') ? p - 1 : p;
        emit(true, s.substr(0, r), out);
        if (p == close) {
          buf_.erase(0, p + kThinkClose.size());
          state_ = State::kAfterClose;
        } else {
          buf_.erase(0, p);
          state_ = State::kContent;
        }
        return true;
      }
      if (eot) {
        emit(true, s, out);
        buf_.clear();
        return false;
      }
      std::size_t hold = partial_suffix(s, kThinkClose);
      if (opt_.tool_call_ends_reasoning) hold = std::max(hold, partial_suffix(s, kToolCallOpen));
      std::size_t m = s.size() - hold;
      if (m > 0 && s[m - 1] == '\n') --m;  // may be the "\n" before a closing tag
      emit(true, s.substr(0, m), out);
      buf_.erase(0, m);
      return false;
    }
    case State::kContent: {
      if (opt_.force_nonempty_content && !content_nonblank_) {
        if (std::all_of(s.begin(), s.end(), is_ws)) return false;  // finish() decides
        content_nonblank_ = true;
      }
      emit(false, s, out);
      buf_.clear();
      return false;
    }
  }
  return false;
}

}  // namespace nemotron::text
