#pragma once
// The bytes every token id decodes to, and a trie over them; built once per tokenizer and
// shared by every matcher.
//
// Byte-level: a token's bytes are what it contributes in the middle of a text (ByteLevel
// characters mapped back to bytes, <0xXX> byte-fallback tokens as their byte, Metaspace as a
// space), so a token may hold part of a UTF-8 character. Non-special added tokens are their
// content.
//
// SPECIAL tokens (<|im_end|>, and in Nemotron also <think>, <tool_call>, ...) are not text:
// each gets a reserved byte string, special_token_bytes(id), that starts with byte 0xF8 (a
// byte valid UTF-8 never holds), so no text grammar (JSON, regex, EBNF character classes)
// ever allows one, and a grammar allows it exactly where it names it (Grammar::token(id),
// EBNF `<[id]>`): the tool-call grammar asks for the <tool_call> TOKEN, not for the text
// "<tool_call>" spelled out in pieces. Ordinary tokens holding a byte >= 0xF8 (possible only
// as raw byte tokens, never part of UTF-8 text) are never allowed, so nothing can spell a
// reserved string. Ids with no token have no bytes (never allowed).
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
  // token_bytes[id]; an empty string marks an id a grammar never allows. Special tokens
  // should be given special_token_bytes(id).
  static std::shared_ptr<const Vocabulary> from_token_bytes(std::vector<std::string> token_bytes);
  // The reserved byte string of special token `id`: 0xF8, then the id in four 7-bit groups
  // (most significant first), each as 0x80 | group. Ids below 2^28.
  static std::string special_token_bytes(int32_t id);
  // A realistic byte-level BPE-like vocabulary for tests and benchmarks (vocabulary.cpp says
  // what it holds): 16 special ids (no bytes), the 256 single bytes (those >= 0xF8 never
  // allowed, as from_tokenizer does), JSON/code punctuation
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
