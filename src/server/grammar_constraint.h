#pragma once
// The engine's TokenConstraint (runtime/constraint.h) over the text layer's grammar matcher
// (text/grammar/grammar.h), and the grammars a request asks for: structured outputs
// (response_format, guided_*, structured_outputs) and enforced tool calls (tool_choice
// "required" or a named function).
//
// With reasoning on (the prompt leaves the model inside <think>), the output is free text until
// the model's </think> token; the grammar constrains what follows it.
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/constraint.h"
#include "text/grammar/grammar.h"

namespace nemotron::server {

class GrammarConstraint final : public runtime::TokenConstraint {
 public:
  // `vocab_size`: the model's (masks have ceil(vocab_size / 32) words; ids past the
  // tokenizer's are never allowed). `think_end`: the </think> token id when the output starts
  // in reasoning, else -1. `end_ids`: the tokens that end the output once the grammar is done.
  GrammarConstraint(std::shared_ptr<const text::grammar::Grammar> g,
                    std::shared_ptr<const text::grammar::Vocabulary> v, std::vector<int32_t> end_ids,
                    int64_t vocab_size, int32_t think_end);
  void fill_mask(uint32_t* bits) override;
  bool accept(int32_t token) override;
  void rollback(int n) override;

 private:
  text::grammar::Matcher m_;
  int64_t words_, vocab_words_;
  int32_t think_end_;
  bool free_;                 // still inside the reasoning
  std::vector<uint8_t> kind_; // per accepted token: 0 free, 1 the </think> that ended it, 2 matched
  std::vector<uint32_t> scratch_;
};

// The enforced tool call of a chat request: tool_choice "required" (one call -- or, with
// parallel calls, several -- of any of `tools`) or a named function (only it). The
// Qwen3-Coder format the parser reads: <tool_call> (token), "\n<function=NAME>\n", per
// parameter "<parameter=P>\nVALUE\n</parameter>\n" in schema order (required ones mandatory),
// "</function>\n", </tool_call> (token); a string parameter's VALUE is text without '<', any
// other's the compact JSON of its schema. Throws nemotron::Error naming what it cannot compile.
std::shared_ptr<const text::grammar::Grammar> tool_call_grammar(const Json& tools, bool parallel,
                                                                int32_t open_id, int32_t close_id);

}  // namespace nemotron::server
