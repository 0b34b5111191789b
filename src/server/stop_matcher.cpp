#include "server/stop_matcher.h"

#include <algorithm>

namespace nemotron::server {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  for (const auto& s : stops_) max_len_ = std::max(max_len_, s.size());
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return "";
  if (stops_.empty()) return std::string(text);
  std::string buf = std::move(held_);
  held_.clear();
  buf.append(text);
  // Earliest occurrence of any stop string (ties: the longest, so the output is the same
  // whichever order the list is in).
  std::size_t best = std::string::npos;
  for (const auto& s : stops_) {
    const std::size_t at = buf.find(s);
    if (at == std::string::npos) continue;
    if (at < best || (at == best && s.size() > matched_.size())) {
      best = at;
      matched_ = s;
    }
  }
  if (best != std::string::npos) {
    stopped_ = true;
    buf.resize(best);
    return buf;
  }
  // Hold the longest suffix that is a proper prefix of some stop string.
  const std::size_t limit = std::min(buf.size(), max_len_ - 1);
  for (std::size_t k = limit; k > 0; --k) {
    const std::string_view tail(buf.data() + buf.size() - k, k);
    const bool prefix = std::any_of(stops_.begin(), stops_.end(),
                                    [&](const std::string& s) { return s.size() > k && s.compare(0, k, tail) == 0; });
    if (prefix) {
      held_.assign(tail);
      buf.resize(buf.size() - k);
      break;
    }
  }
  return buf;
}

std::string StopMatcher::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return stopped_ ? std::string() : out;
}

}  // namespace nemotron::server
