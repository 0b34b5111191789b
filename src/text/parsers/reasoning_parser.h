#pragma once
// Nemotron v3 reasoning split (serving doc §3; recommended behaviour of §3.3 = union of
// the nano_v3 / super_v3 / nemotron_v3 / SGLang / TRT-LLM fixes).
//
// The prompt decides the start state (§0, §1.3): a generation prompt ending in
// "<think>\n" leaves the model inside reasoning; "<think></think>" means thinking off.
// * Thinking off: every byte is content, verbatim ("<think>", "</think>" included —
//   "stray </think> with no open → content if thinking off").
// * Thinking on: output is reasoning until the first "</think>" (or "<tool_call>" when
//   `tool_call_ends_reasoning`, fix (b)); after that everything is content.
//   - A "<think>" repeated at the very start (only whitespace before it) is dropped with
//     that whitespace and one "\n" after it, so the reasoning is the same as without it.
//   - Exactly one "\n" is stripped on each side of "</think>" (§3.3 "trim one \n each side"):
//     "R\n</think>\nC" → reasoning "R", content "C"; extra newlines are kept. This keeps the
//     template round trip "<think>\n"+R+"\n</think>\n"+C exact (§1.4, prefix caching).
//   - Before an implicit end at "<tool_call>" one "\n" is stripped from the reasoning; the
//     "<tool_call>" itself stays in the content for the tool parser.
//   - "</think>" never emitted (length stop): all text is reasoning, content empty.
// * force_nonempty_content (super_v3 / nemotron_v3 / SGLang / TRT-LLM): when the content
//   at the end is empty or whitespace-only and reasoning is not, the reasoning is given as
//   content instead (non-stream: moved; stream: re-emitted at finish, §3.2 PR #39091).
//   While it may still apply, whitespace-only content is held back; it is dropped when the
//   rescue happens.
#include <string>
#include <string_view>
#include <vector>

namespace nemotron::text {

// True when the rendered prompt leaves the model inside a reasoning block: the text after
// the last "<|im_start|>" contains "<think>" with no "</think>" after its last occurrence
// (and no "<|im_end|>" after it). "...<think>\n" → true, "...<think></think>" → false.
bool prompt_ends_in_reasoning(std::string_view prompt);

struct ReasoningOptions {
  bool thinking_enabled = true;          // the prompt ended inside reasoning
  bool tool_call_ends_reasoning = true;  // fix (b); callers enable it when tools are parsed
  bool force_nonempty_content = false;
};

struct ReasoningChunk {
  bool reasoning = false;  // false = content
  std::string text;
};

class ReasoningStreamParser {
 public:
  explicit ReasoningStreamParser(ReasoningOptions options);
  void feed(std::string_view text, std::vector<ReasoningChunk>& out);
  // Flushes held-back text. Returns true when force_nonempty_content applies: the caller
  // must then deliver the whole reasoning as content (held whitespace content is dropped).
  bool finish(std::vector<ReasoningChunk>& out);

 private:
  enum class State { kStart, kAfterOpen, kReasoning, kAfterClose, kContent };
  bool step(bool eot, std::vector<ReasoningChunk>& out);
  void emit(bool reasoning, std::string_view text, std::vector<ReasoningChunk>& out);

  ReasoningOptions opt_;
  State state_;
  std::string buf_;  // text not yet classified
  bool reasoning_nonempty_ = false;
  bool content_nonblank_ = false;
};

}  // namespace nemotron::text
