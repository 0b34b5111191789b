#pragma once
// Per-request output parser used by the HTTP server: reasoning split first (§3), then
// Qwen3-Coder tool calls inside the content (§4), producing OpenAI-style delta events.
//
// Stream contract:
// * feed() takes text deltas of any size and split point (bytes; a UTF-8 character may
//   be split) and returns the events that are now certain; finish() flushes the rest.
// * Reasoning/content events never contain an incomplete UTF-8 character; invalid bytes
//   become U+FFFD (as Python's errors="replace" decode does).
// * Tool-call events: the first of call i carries tool_index i, tool_id, tool_name (and
//   may already carry arguments); later ones carry argument fragments only. Concatenated,
//   the fragments are the final arguments JSON (compact, key order as emitted).
// * A content event with replaces_reasoning=true is the force_nonempty_content rescue: a
//   streaming client appends it to the content (the reasoning was already streamed, §3.3
//   "stream: duplicate at end"); accumulate() instead moves the reasoning to the content
//   (non-stream semantics of super_v3 / nemotron_v3).
// * Adjacent events of the same kind within one feed()/finish() are merged.
//
// Whole-text API: parse_output(text) = accumulate(feed(text) + finish()), so streaming and
// non-streaming results cannot disagree.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/parsers/reasoning_parser.h"
#include "text/parsers/tool_call_parser.h"
#include "util/json.h"

namespace nemotron::text {

struct OutputParserOptions {
  bool thinking_enabled = true;  // see prompt_ends_in_reasoning()
  bool force_nonempty_content = false;
  Json tools = Json::array();    // OpenAI `tools`; empty = no tool parsing
  bool tool_choice_none = false; // tool_choice "none": no tool parsing
  std::function<std::string()> make_tool_call_id;  // default random_tool_call_id
};

struct OutputEvent {
  enum class Kind { kReasoning, kContent, kToolCall };
  Kind kind = Kind::kContent;
  std::string text;  // reasoning/content text, or an arguments fragment (kToolCall)
  int tool_index = -1;
  std::string tool_id, tool_name;  // set on the first event of each call only
  bool replaces_reasoning = false;
};

struct ToolCall {
  std::string id, name, arguments;
};

struct OutputResult {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions options);  // throws Error on malformed tools
  std::vector<OutputEvent> feed(std::string_view delta);
  std::vector<OutputEvent> finish();  // once; feed/finish afterwards throw Error
  bool parses_tool_calls() const { return tools_ != nullptr; }

 private:
  // Holds back an incomplete trailing UTF-8 sequence of one text stream.
  struct Utf8Stream {
    std::string held;
    std::string take(std::string_view text, bool final);
  };
  void route(std::vector<ReasoningChunk>& chunks, bool final, std::vector<OutputEvent>& out);
  void drain_tool_events(std::vector<OutputEvent>& out);
  void push_text(OutputEvent::Kind kind, std::string text, std::vector<OutputEvent>& out);

  ReasoningStreamParser reasoning_;
  std::unique_ptr<ToolCallStreamParser> tools_;
  Utf8Stream reasoning_utf8_, content_utf8_;
  std::string reasoning_so_far_;  // for the force_nonempty_content rescue
  std::vector<ToolParseEvent> tool_events_;
  bool finished_ = false;
};

void accumulate(OutputResult& result, const std::vector<OutputEvent>& events);
OutputResult parse_output(std::string_view text, const OutputParserOptions& options);

}  // namespace nemotron::text
