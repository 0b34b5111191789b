#pragma once
// Constrained decoding: grammars (JSON Schema, any JSON object, regex, EBNF/GBNF, and
// compositions of them) compiled to one byte-level IR (ir.h), matched by a pushdown
// automaton over sets of stacks (automaton.h), which gives per-step allowed-token masks over
// a tokenizer's vocabulary (vocabulary.h, mask.h).
//
//   auto g = grammar::from_json_schema(schema);          // once per request (or cached)
//   auto v = grammar::Vocabulary::from_tokenizer(tok);   // once per tokenizer
//   grammar::Matcher m(g, v, {eos_id});                  // one per request
//   each step: m.fill_mask(bits); sample under the mask; m.accept(token);
//
// docs/grammar.md describes the coverage and the documented restrictions (JSON whitespace
// bound, property order, oneOf as anyOf, number bounds, formats).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/grammar/ir.h"
#include "text/grammar/vocabulary.h"
#include "util/json.h"

namespace nemotron::text::grammar {

class Automaton;
class MaskCache;

// How JSON is laid out by the JSON grammars.
struct JsonOptions {
  // Whitespace between JSON tokens: nothing, one space, or one line break ("\n" or "\r\n")
  // followed by at most this many spaces or tabs of indentation -- what JSON printers write,
  // compact or indented. 0: compact JSON only. Shaped and bounded so that a model cannot
  // ramble in whitespace (runs of spaces mid-line and blank lines are never allowed).
  int32_t max_indent = 16;
};

// Any JSON object (OpenAI json_object mode).
std::shared_ptr<const Grammar> json_object(const JsonOptions& opt = {});
// Any JSON value.
std::shared_ptr<const Grammar> json_value(const JsonOptions& opt = {});
// A JSON Schema (draft 4 to 2020-12 keywords; docs/grammar.md lists what is supported).
// Throws nemotron::Error naming the keyword and its JSON pointer for anything unsupported:
// "unsupported JSON Schema keyword 'if' at /properties/a".
std::shared_ptr<const Grammar> from_json_schema(const Json& schema, const JsonOptions& opt = {});
// The whole text matches the regex (regex.h: the supported subset).
std::shared_ptr<const Grammar> from_regex(const std::string& pattern);
// An EBNF / GBNF grammar (ebnf.cpp: the syntax).
std::shared_ptr<const Grammar> from_ebnf(const std::string& text, const std::string& root = "root");

// Composition: Grammar::literal / sequence / alternatives / repeat (ir.h).

// One request's matching state. Not thread-safe; the shared automaton and mask cache of its
// grammar are locked inside each call.
class Matcher {
 public:
  Matcher(std::shared_ptr<const Grammar> g, std::shared_ptr<const Vocabulary> v, std::vector<int32_t> end_ids);
  // Byte-level only (tests, sampling): fill_mask / accept(token) are not available.
  explicit Matcher(std::shared_ptr<const Grammar> g);
  ~Matcher();
  Matcher(Matcher&&) noexcept;

  // Vocabulary::mask_words() uint32 words, bit t (word t / 32, bit t % 32) set when token t
  // may come next. End ids are set only when the grammar can end here, and then they are
  // the only ids whose bytes are not considered (an end id never counts as text). Once
  // done(), only the end ids (or nothing, after one was accepted) are set.
  void fill_mask(uint32_t* bits) const;
  // Advances by one token; false (and no change) when it is not allowed.
  bool accept(int32_t token);
  // Byte-level: advances by all of `bytes` or (false) not at all. One rollback step.
  bool accept_bytes(std::string_view bytes);
  // The text so far is a complete match.
  bool can_end() const;
  // An end id was accepted, or nothing can follow the text so far.
  bool done() const;
  // Undoes the last `tokens` accepted tokens (or accept_bytes calls); clamps at the start.
  void rollback(int tokens);
  // Number of steps that rollback can undo.
  std::size_t history_size() const { return history_.size() - 1; }

  // Bytes that may come next (byte-level view; the sampler and tests use it).
  ByteSet allowed_bytes() const;
  // Fewest bytes that complete a match from here (0 when can_end()).
  int64_t min_completion() const;
  // Fewest bytes that complete a match after first taking `byte` (-1 when it is not allowed).
  int64_t min_completion_after(unsigned byte) const;

  const std::shared_ptr<const Grammar>& grammar() const { return g_; }

 private:
  struct Step {
    std::vector<int32_t> key;  // the automaton state's canonical key (automaton.h)
    bool ended = false;        // an end id was accepted
  };
  int32_t state_locked() const;  // the current state id (re-interned after an automaton reset)

  std::shared_ptr<const Grammar> g_;
  std::shared_ptr<const Vocabulary> v_;
  std::vector<int32_t> end_ids_;
  std::shared_ptr<Automaton> a_;
  std::vector<Step> history_;  // history_.back() is the current state
  mutable int32_t cached_id_ = -1;
  mutable uint64_t cached_gen_ = 0;
};

}  // namespace nemotron::text::grammar
