#pragma once
// The bytes every token id decodes to, and a trie over them; built once per tokenizer and
// shared by every matcher.
//
// Byte-level: a token's bytes are what it contributes in the middle of a text (ByteLevel
// characters mapped back to bytes, <0xXX> byte-fallback tokens as their byte, Metaspace as a
// space), so a token may hold part of a UTF-8 character. SPECIAL added tokens (and ids with no
// token) have no bytes: a grammar never allows them; they are only ever allowed as a
// matcher's end ids. Non-special added tokens are their content.
//
// Trie layout: node 0 is the empty string; each node's children are contiguous
// (first_child .. first_child + num_children, in byte order), so a mask walk reads them in one
// sweep; tokens whose bytes end exactly at a node are node_tokens()[tok_begin, tok_end).
// For whole-subtree decisions, subtree_tokens()[desc_begin, desc_end) are the tokens strictly
// below a node (depth-first order), and a node with at least kSummaryMin of them has a
// summary: the set of every byte on the edges below it (summaries()[summary]).
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nemotron::text {
class Tokenizer;
}

namespace nemotron::text::grammar {

class Vocabulary {
 public:
  static std::shared_ptr<const Vocabulary> from_tokenizer(const Tokenizer& tok);
  // token_bytes[id]; an empty string marks an id a grammar never allows.
  static std::shared_ptr<const Vocabulary> from_token_bytes(std::vector<std::string> token_bytes);
  // A realistic byte-level BPE-like vocabulary for tests and benchmarks (vocabulary.cpp says
  // what it holds): 16 special ids (no bytes), the 256 single bytes, JSON/code punctuation
  // runs, whitespace and indentation runs, numbers, English-like words with and without a
  // leading space and capitalized, UTF-8 letters and words (2, 3 and 4-byte characters) and
  // partial UTF-8 characters. Deterministic for a seed.
  static std::shared_ptr<const Vocabulary> synthetic(int64_t size, uint64_t seed = 1);

  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }
  const std::string& token_bytes(int32_t id) const { return bytes_[static_cast<std::size_t>(id)]; }
  std::size_t mask_words() const { return (bytes_.size() + 31) / 32; }

  struct Node {
    uint32_t first_child = 0, num_children = 0;
    uint32_t tok_begin = 0, tok_end = 0;
    uint32_t desc_begin = 0, desc_end = 0;
    int32_t summary = -1;
    uint16_t height = 0;  // longest path below the node, in bytes (capped at 65535)
    uint8_t byte = 0;
  };
  static constexpr uint32_t kSummaryMin = 16;
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int32_t>& node_tokens() const { return node_tokens_; }
  const std::vector<int32_t>& subtree_tokens() const { return subtree_tokens_; }
  const std::vector<std::array<uint64_t, 4>>& summaries() const { return summaries_; }

 private:
  void build_trie();
  std::vector<std::string> bytes_;
  std::vector<Node> nodes_;
  std::vector<int32_t> node_tokens_;
  std::vector<int32_t> subtree_tokens_;
  std::vector<std::array<uint64_t, 4>> summaries_;
};

}  // namespace nemotron::text::grammar
