#pragma once
// Stop strings over streamed text (OpenAI `stop`). Text is pushed in pieces of any size;
// push() returns the part that can no longer be the start of a stop string and holds back
// the longest suffix that is a prefix of one, so a stop string split across tokens is still
// found. On a match everything from the stop string on is discarded (the stop string is not
// part of the output) and stopped() becomes true. flush() releases the held-back text at the
// end of generation. Whole UTF-8 characters in give whole characters out: a held suffix
// equals a prefix of a stop string, so it starts at a character boundary.
#include <string>
#include <string_view>
#include <vector>

namespace nemotron::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string push(std::string_view text);
  std::string flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }  // the stop string found

 private:
  std::vector<std::string> stops_;
  std::size_t max_len_ = 0;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace nemotron::server
