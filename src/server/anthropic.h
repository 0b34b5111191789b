#pragma once
// The Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens) on the chat
// pipeline: an Anthropic request body becomes a ChatRequest (OpenAI-shaped messages and tools,
// the form the chat template and ModelService::render_chat read), and the output pipeline's
// events become Anthropic content blocks, a message, or its SSE event sequence. Pure
// functions and one small state machine (no I/O); the handlers are http_anthropic.cpp.
//
// Request -> ChatRequest (every check names the field, ApiError 400, param set):
//   system (string | [text blocks])        -> messages[0] {"role":"system"}
//   user blocks text / tool_result          -> "user" messages (text blocks as text parts,
//                                              joined with "\n" by the template layer) /
//                                              "tool" messages {tool_call_id, content}
//   assistant blocks thinking / text /      -> one "assistant" message {reasoning_content,
//     tool_use                                 content, tool_calls[{id, type, function:
//                                              {name, arguments: input}}]}
//   redacted_thinking                       -> dropped (encrypted: nothing to render)
//   image, document and server-tool blocks  -> 400 (text-only model / no server tools)
//   a final assistant message               -> prefill: the reply continues its text
//   tools [{name, description, input_schema}] -> [{"type":"function","function":{name,
//                                              description, parameters}}]
//   tool_choice {type auto|any|tool|none, name, disable_parallel_tool_use}
//                                           -> auto | required | named | none,
//                                              parallel_tool_calls
//   thinking {type enabled|adaptive|between_tools|disabled, budget_tokens, display}
//                                           -> chat_template_kwargs.enable_thinking
//                                              (display "omitted": no thinking blocks)
//   max_tokens (required), stop_sequences, temperature [0, 1], top_p, top_k, stream
//                                           -> GenerationOptions
// thinking.budget_tokens is the reasoning budget (GenerationOptions::reasoning_budget): the
// engine ends reasoning after that many tokens.
//
// Response: {id "msg_…", type "message", role "assistant", model, content [thinking, text,
// tool_use {id "toolu_…", name, input}], stop_reason end_turn | max_tokens | stop_sequence |
// tool_use, stop_sequence, usage {input_tokens, output_tokens, cache_creation_input_tokens,
// cache_read_input_tokens}}. As Anthropic counts them, input_tokens are the prompt tokens
// NOT read from the cache: input_tokens + cache_read_input_tokens = the prompt's length.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/request.h"
#include "text/parsers/output_parser.h"
#include "util/json.h"

namespace nemotron::server {

struct MessagesRequest {
  ChatRequest chat;                        // messages, tools, tool_choice, kwargs, gen
  bool prefill = false;                    // the last message is the assistant's: continue it
  std::string prefill_text;                // its text (what the rendered prompt must end with)
  std::optional<int64_t> thinking_budget;  // thinking.budget_tokens (accepted, not enforced)
};

// count_tokens: max_tokens is not required and the generation fields are not read.
MessagesRequest parse_messages_request(const Json& body, bool count_tokens = false);

// Anthropic error JSON for a status: {"type":"error","error":{"type":…,"message":…}};
// the message is prefixed with the field at fault ("max_tokens: …") when there is one.
//   400, 405, 499 invalid_request_error; 401 authentication_error; 403 permission_error;
//   404 not_found_error; 413 request_too_large; 429 rate_limit_error;
//   503, 529 overloaded_error; other 5xx api_error.
const char* anthropic_error_type(int status);
Json anthropic_error_body(int status, const std::string& message, const std::string& param = "");
inline Json anthropic_error_body(const ApiError& e) { return anthropic_error_body(e.status(), e.what(), e.param()); }

struct AnthropicUsage {
  int64_t prompt_tokens = 0, cached_tokens = 0, output_tokens = 0;
};
Json anthropic_usage_json(const AnthropicUsage& u);

// stop_reason for a finished pipeline: "stop" with a matched stop string -> stop_sequence,
// "stop" otherwise -> end_turn, "length" -> max_tokens, "tool_calls" -> tool_use.
// `stop_sequence` receives the matched string or null.
std::string anthropic_stop_reason(const std::string& finish_reason, const Json& stop_reason, Json& stop_sequence);

// The content blocks of a finished reply (thinking, text, tool_use; empty ones left out;
// no thinking blocks with !include_thinking: thinking.display "omitted").
Json anthropic_content(const text::OutputResult& result, bool include_thinking = true);
Json anthropic_message(const std::string& id, const std::string& model, Json content,
                       const std::string& stop_reason, const Json& stop_sequence, const AnthropicUsage& usage);

// One SSE event: "event: <name>\ndata: <json>\n\n".
std::string anthropic_sse(const std::string& name, const Json& data);

// Turns a reply's pipeline events into Anthropic's stream: content_block_start, _delta
// (thinking_delta, text_delta, input_json_delta) and _stop per block, one block open at a
// time, indices from 0. message_start and the end (message_delta + message_stop) are the
// caller's (anthropic_message_start / end below), around these.
class AnthropicBlockStream {
 public:
  explicit AnthropicBlockStream(bool include_thinking = true) : include_thinking_(include_thinking) {}
  // SSE text for these events (may be empty).
  std::string push(const std::vector<text::OutputEvent>& events);
  // Closes the open block, if any.
  std::string close();
  int blocks() const { return index_ + 1; }

 private:
  enum class Block { kNone, kThinking, kText, kToolUse };
  std::string open(Block kind, Json content_block);
  bool include_thinking_;
  Block open_ = Block::kNone;
  int index_ = -1;
  int tool_index_ = -1;
};

// message_start: the message with empty content, stop_reason null, the usage so far.
std::string anthropic_message_start(const std::string& id, const std::string& model, const AnthropicUsage& usage);
// message_delta (stop_reason, stop_sequence, the final usage) + message_stop.
std::string anthropic_message_end(const std::string& stop_reason, const Json& stop_sequence,
                                  const AnthropicUsage& usage);

}  // namespace nemotron::server
