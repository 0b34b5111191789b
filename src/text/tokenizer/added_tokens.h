#pragma once
// HF AddedVocabulary: tokens matched in the input text before the model runs. Matching is
// leftmost-longest over the raw text for tokens with normalized=false, then over the
// normalized text for tokens with normalized=true, with single_word / lstrip / rstrip
// handled as in HF's added_vocabulary.rs (find_matches).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nemotron::text {

class Regex;

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  // What decode / id_to_token produce: the content, normalized when normalized=true (HF 0.23
  // behaviour; token_to_id still takes the original content).
  std::string display;
};

// A piece of text: either plain text (id == -1) or an added token.
struct Segment {
  std::string text;
  int32_t id = -1;
  bool at_start = false;  // begins at offset 0 of the original input
};

// Leftmost-longest multi-pattern matcher (byte trie). Patterns are valid UTF-8, so matches
// always start on character boundaries.
class TokenMatcher {
 public:
  void add(std::string_view pattern, int32_t value);
  // Longest pattern starting exactly at `pos`; returns its length (0 if none) and its value.
  std::size_t match_at(std::string_view text, std::size_t pos, int32_t& value) const;
  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

class AddedVocabulary {
 public:
  AddedVocabulary();
  ~AddedVocabulary();
  // `normalize` is applied to the content of tokens with normalized=true.
  void build(std::vector<AddedToken> tokens, const std::function<std::string(const std::string&)>& normalize);

  // Splits each plain segment of `segs` at matches of the raw (normalized=false) tokens.
  // With `skip_special`, matches of special tokens are ignored (encoded as plain text).
  void split_raw(std::vector<Segment>& segs, bool skip_special) const { split(segs, raw_, skip_special); }
  // Same for the normalized=true tokens (call after normalizing the plain segments).
  void split_normalized(std::vector<Segment>& segs, bool skip_special) const {
    split(segs, norm_, skip_special);
  }

  const AddedToken* find(int32_t id) const;
  int32_t find(std::string_view content) const;  // -1 when absent
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  void split(std::vector<Segment>& segs, const TokenMatcher& m, bool skip_special) const;
  std::vector<AddedToken> tokens_;  // sorted by id
  std::unordered_map<std::string, int32_t> by_content_;  // first token with that content
  TokenMatcher raw_, norm_;
  std::unique_ptr<Regex> word_start_, space_;  // single-character classes
};

}  // namespace nemotron::text
