#pragma once
// One choice's output path, shared by `serve` and `run`:
//   engine TokenEvent -> IncrementalDetokenizer -> StopMatcher -> OutputParser (chat)
// producing OpenAI delta events (reasoning / content / tool-call fragments) and per-token
// logprobs. Chat output goes through the reasoning + tool-call parser; completions output
// is plain content.
//
// Tokens not shown: the final token of an engine Stop (an eos / stop_token_ids id), and,
// with skip_special_tokens, special tokens other than `keep_special_ids` (the reasoning and
// tool-call markers the parser needs). Every generated token still counts in
// completion_tokens() and has a logprob entry.
//
// Logprob entries are released with the first output that follows them (or at the end), so
// a streamed chunk carries the logprobs of the tokens whose text it completes.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/stop_matcher.h"
#include "text/parsers/output_parser.h"
#include "text/tokenizer/tokenizer.h"
#include "util/json.h"

namespace nemotron::server {

struct PipelineOptions {
  bool chat = true;                     // parse reasoning / tool calls
  text::OutputParserOptions parser;
  std::vector<std::string> stop;
  std::vector<int32_t> eos_ids;         // stop ids that report stop_reason null
  bool skip_special_tokens = true;
  std::vector<int32_t> keep_special_ids;
  bool logprobs = false;
  int top_logprobs = 0;
  int max_tool_calls = -1;              // -1 = unlimited; parallel_tool_calls=false -> 1
};

struct LogprobEntry {
  int32_t token = 0;
  std::string text;                     // the token decoded alone
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;  // most likely first
};

struct PipelineOutput {
  std::vector<text::OutputEvent> events;
  std::vector<LogprobEntry> logprobs;
  bool finished = false;                // this push ended the choice
  bool empty() const { return events.empty() && logprobs.empty() && !finished; }
};

class OutputPipeline {
 public:
  OutputPipeline(const text::Tokenizer& tokenizer, PipelineOptions options);
  OutputPipeline(const OutputPipeline&) = delete;
  OutputPipeline& operator=(const OutputPipeline&) = delete;

  // Feeds one engine event; ignored once done().
  PipelineOutput push(const runtime::TokenEvent& ev);
  bool done() const { return done_; }
  // True when a stop string ended the output: the caller cancels the engine request.
  bool stopped_by_string() const { return stop_.stopped(); }
  // "stop", "length", "tool_calls", "abort" (cancelled) or "error"; "" until done().
  const std::string& finish_reason() const { return finish_reason_; }
  // null (eos), the matched stop string, or the stop_token_ids id (vLLM's stop_reason).
  const Json& stop_reason() const { return stop_reason_; }
  const std::string& error() const { return error_; }
  int64_t completion_tokens() const { return completion_tokens_; }
  // Everything so far, accumulated (the non-streaming message).
  const text::OutputResult& result() const { return result_; }
  const std::vector<LogprobEntry>& all_logprobs() const { return all_logprobs_; }

 private:
  void emit_text(const std::string& text, bool final, PipelineOutput& out);
  void add_events(std::vector<text::OutputEvent> events, PipelineOutput& out);
  void finish(PipelineOutput& out, const std::string& reason);

  text::Tokenizer tokenizer_;
  PipelineOptions opt_;
  text::IncrementalDetokenizer detok_;
  StopMatcher stop_;
  std::unique_ptr<text::OutputParser> parser_;
  text::OutputResult result_;
  std::vector<LogprobEntry> pending_logprobs_, all_logprobs_;
  bool done_ = false;
  bool saw_tool_call_ = false;
  std::string finish_reason_, error_;
  Json stop_reason_;
  int64_t completion_tokens_ = 0;
};

}  // namespace nemotron::server
