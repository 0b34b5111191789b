#pragma once
// OpenAI request bodies -> typed, validated structs. Every check names the parameter at
// fault (ApiError 400, `param` set). Unknown fields are ignored (clients send extras such as
// `user`), except fields whose meaning we cannot honour (response_format json_*,
// logit_bias, use_beam_search, best_of > n, suffix, ...), which are refused so that a client
// never silently gets something other than what it asked for.
//
// Fields read (both endpoints unless noted; null = absent):
//   model (string, optional), stream (bool), stream_options {include_usage (bool)},
//   temperature [0, 2], top_p (0, 1], top_k (-1 or >= 0), min_p [0, 1],
//   presence_penalty / frequency_penalty [-2, 2], repetition_penalty (0, 2], seed (int),
//   stop (string or list of <= 16 non-empty strings), stop_token_ids (list of ints),
//   max_tokens / max_completion_tokens (chat; int >= 1), n [1, 16], ignore_eos (bool),
//   skip_special_tokens (bool),
//   chat: logprobs (bool), top_logprobs [0, 20] (needs logprobs), messages (non-empty list),
//         tools, tool_choice ("auto" | "none" | "required" | {"type":"function","function":{"name"}}),
//         parallel_tool_calls (bool), chat_template_kwargs (object), add_generation_prompt
//         (bool), include_reasoning (bool), response_format ({"type":"text"} only)
//   completions: prompt (string | [string] | [int] | [[int]], one prompt), logprobs (int
//         [0, 20]: legacy top-N), echo (bool)
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/sampling.h"
#include "util/json.h"

namespace nemotron::server {

// Which sampling fields the request gave; the others take the model directory's
// generation_config.json defaults (ModelService), else SamplingParams' own.
struct SamplingGiven {
  bool temperature = false, top_p = false, top_k = false, min_p = false, repetition_penalty = false;
};

// Structured outputs: what the output must match (constrained decoding, text/grammar). From
// response_format {type: json_object | json_schema {schema}}, or vLLM's guided_json,
// guided_regex, guided_choice, guided_grammar and structured_outputs {json, regex, choice,
// grammar, json_object}; at most one of them.
struct StructuredOutput {
  enum class Kind { kNone, kJsonObject, kJsonSchema, kRegex, kChoice, kGrammar };
  Kind kind = Kind::kNone;
  Json schema;                       // kJsonSchema
  std::string text;                  // kRegex, kGrammar
  std::vector<std::string> choices;  // kChoice
  std::string param;                 // the field it came from (errors name it)
};

// Sampling and stopping fields shared by chat and completions.
struct GenerationOptions {
  kernels::SamplingParams sampling;     // logprobs = top-N count when logprobs are requested
  SamplingGiven given;
  std::optional<int64_t> max_tokens;    // absent: max_model_len - prompt length
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  int n = 1;
  bool logprobs = false;                // return per-token logprobs
  int top_logprobs = 0;                 // alternatives per token
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  // Reasoning budget in tokens (chat, when the prompt leaves the model reasoning): from
  // thinking_token_budget, chat_template_kwargs.reasoning_budget, or reasoning_effort (low 1024,
  // medium 8192, high unbounded). Absent: unbounded.
  std::optional<int64_t> reasoning_budget;
  StructuredOutput structured;
};

// The structured-output fields of a body (shared with the other APIs' parsers).
StructuredOutput parse_structured_output(const Json& body);

enum class ToolChoice { kAuto, kNone, kRequired, kNamed };

struct ChatRequest {
  std::string model;
  Json messages = Json::array();
  Json tools;                           // null or a non-empty array
  ToolChoice tool_choice = ToolChoice::kAuto;
  std::string tool_choice_name;         // kNamed
  bool parallel_tool_calls = true;
  Json chat_template_kwargs = Json::object();
  bool add_generation_prompt = true;
  bool include_reasoning = true;
  GenerationOptions gen;
};

struct CompletionRequest {
  std::string model;
  bool prompt_is_ids = false;
  std::string prompt_text;
  std::vector<int32_t> prompt_ids;
  bool echo = false;
  GenerationOptions gen;
};

// /tokenize: {prompt} or {messages, add_generation_prompt, chat_template_kwargs, tools},
// plus add_special_tokens (default: true for prompt, false for messages, as vLLM) and
// return_token_strs. /detokenize: {tokens}.
struct TokenizeRequest {
  std::string model;
  bool is_chat = false;
  std::string prompt;
  ChatRequest chat;                     // messages, tools, kwargs, add_generation_prompt
  bool add_special_tokens = true;
  bool return_token_strs = false;
};

struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};

// Parses request body text as JSON (rejects malformed input and nesting deeper than 64).
Json parse_body(const std::string& body);

ChatRequest parse_chat_request(const Json& body);
CompletionRequest parse_completion_request(const Json& body);
TokenizeRequest parse_tokenize_request(const Json& body);
DetokenizeRequest parse_detokenize_request(const Json& body);

}  // namespace nemotron::server
