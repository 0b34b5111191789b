#pragma once
// Helpers for the output-parser tests: chunkings of a text and a streaming driver that
// checks the event contract while it accumulates the result.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "text/parsers/output_parser.h"
#include "text/utf8.h"

namespace nemotron::text::testing {

struct Chunking {
  std::string name;
  std::vector<std::string> pieces;
};

inline std::vector<std::string> split_at(const std::string& s, std::vector<std::size_t> cuts) {
  std::vector<std::string> out;
  std::size_t prev = 0;
  for (std::size_t c : cuts) {
    if (c <= prev || c >= s.size()) continue;
    out.push_back(s.substr(prev, c - prev));
    prev = c;
  }
  out.push_back(s.substr(prev));
  return out;
}

// "Tokens": tags <...> (no '<' or newline inside, up to 40 bytes), alphanumeric runs,
// whitespace runs, and single UTF-8 characters for everything else.
inline std::vector<std::string> token_pieces(const std::string& s) {
  std::vector<std::string> out;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; };
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t'; };
  for (std::size_t i = 0; i < s.size();) {
    std::size_t j = i + 1;
    if (s[i] == '<') {
      const std::size_t gt = s.find('>', i);
      if (gt != std::string::npos && gt - i <= 40 && s.substr(i, gt - i).find_first_of("<\n", 1) == std::string::npos) j = gt + 1;
    } else if (alnum(s[i])) {
      while (j < s.size() && alnum(s[j])) ++j;
    } else if (space(s[i])) {
      while (j < s.size() && space(s[j])) ++j;
    } else {
      std::size_t len = 1;
      utf8_decode(s, i, len);
      j = i + len;
    }
    out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

inline std::vector<Chunking> all_chunkings(const std::string& s) {
  std::vector<Chunking> out;
  out.push_back({"whole", {s}});
  std::vector<std::size_t> bytes, chars;
  for (std::size_t i = 1; i < s.size(); ++i) bytes.push_back(i);
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 1;
    utf8_decode(s, i, len);
    i += len;
    chars.push_back(i);
  }
  out.push_back({"bytes", split_at(s, bytes)});
  out.push_back({"chars", split_at(s, chars)});
  out.push_back({"tokens", token_pieces(s)});
  std::mt19937 rng(20260901);
  for (int r = 0; r < 50; ++r) {
    std::vector<std::size_t> cuts;
    if (s.size() > 1) {
      std::uniform_int_distribution<std::size_t> pos(1, s.size() - 1), count(1, std::min<std::size_t>(s.size() - 1, 24));
      for (std::size_t k = count(rng); k > 0; --k) cuts.push_back(pos(rng));
      std::sort(cuts.begin(), cuts.end());
    }
    out.push_back({"random" + std::to_string(r), split_at(s, cuts)});
  }
  return out;
}

inline std::function<std::string()> counter_ids() {
  return [n = 0]() mutable { return "call_" + std::to_string(n++); };
}

// Feeds the pieces, checks the event contract and returns the accumulated result.
inline OutputResult stream(const std::vector<std::string>& pieces, OutputParserOptions opt) {
  opt.make_tool_call_id = counter_ids();
  OutputParser parser(opt);
  OutputResult result;
  std::vector<bool> started;
  auto check = [&](const std::vector<OutputEvent>& events) {
    for (const OutputEvent& e : events) {
      EXPECT_TRUE(utf8_valid(e.text)) << "event text is not valid UTF-8";
      if (e.kind == OutputEvent::Kind::kToolCall) {
        const auto i = static_cast<std::size_t>(e.tool_index);
        if (started.size() <= i) started.resize(i + 1, false);
        if (!started[i]) {
          EXPECT_FALSE(e.tool_id.empty()) << "first delta of a call must carry its id";
          EXPECT_FALSE(e.tool_name.empty()) << "first delta of a call must carry its name";
          EXPECT_TRUE(i == 0 || started[i - 1]) << "calls must start in index order";
          started[i] = true;
        } else {
          EXPECT_TRUE(e.tool_id.empty() && e.tool_name.empty());
        }
      } else {
        EXPECT_FALSE(e.text.empty()) << "empty text event";
      }
    }
    accumulate(result, events);
  };
  for (const std::string& p : pieces) check(parser.feed(p));
  check(parser.finish());
  return result;
}

}  // namespace nemotron::text::testing
