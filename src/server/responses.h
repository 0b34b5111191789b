#pragma once
// The OpenAI Responses API on the chat path: request parsing (-> a ChatRequest for
// ModelService::render_chat / chat_pipeline), the response object and its stream events
// (built from the output pipeline's events), and the in-memory store behind
// previous_response_id and GET / DELETE /v1/responses/{id}. Handlers: http_responses.cpp.
//
// Items. Input and output items are normalised to one internal form (what the store keeps
// and what becomes chat messages):
//   {"type":"message","role":"user|assistant|system|developer","content":TEXT}
//   {"type":"function_call","call_id","name","arguments":JSON-TEXT}
//   {"type":"function_call_output","call_id","output":TEXT}
//   {"type":"reasoning","text":TEXT}
// Text parts (input_text, output_text, text, refusal) are joined with "\n" as chat joins
// content parts; a reasoning item's text is its content (reasoning_text), else its summary,
// else its encrypted_content (which this server fills with the plain reasoning text).
// Chat messages, in order: instructions (system), then per item: message -> that role;
// reasoning -> reasoning_content of the next assistant message (or call); function_call ->
// tool_calls of the assistant message just before it (or a new one); function_call_output ->
// a tool message. Reasoning not followed by an assistant message or call is dropped.
//
// Response object: {id "resp_…", object "response", created_at, status (in_progress |
// completed | incomplete | failed | cancelled), error, incomplete_details ({reason:
// max_output_tokens}), output [reasoning {id "rs_…", summary [], content [{type
// reasoning_text, text}]}, message {id "msg_…", role assistant, content [{type output_text,
// text, annotations [], logprobs []}]}, function_call {id "fc_…", call_id, name, arguments}],
// usage {input_tokens, input_tokens_details {cached_tokens}, output_tokens,
// output_tokens_details {reasoning_tokens}, total_tokens}, + the request settings echoed
// (instructions, tools, tool_choice, temperature, top_p, max_output_tokens, max_tool_calls,
// previous_response_id, store, text, reasoning, parallel_tool_calls, truncation, metadata,
// user)}.
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/request.h"
#include "text/parsers/output_parser.h"
#include "util/json.h"

namespace nemotron::server {

struct ResponsesRequest {
  ChatRequest chat;               // messages = instructions + history + input; tools, gen, ...
  Json items = Json::array();     // the conversation's items (history + input), normalised
  Json echo = Json::object();     // request settings for the response object (temperature and
                                  // top_p: what the request gave, null otherwise)
  bool store = true;
  std::string previous_response_id;
  bool encrypted_reasoning = false;  // include has "reasoning.encrypted_content"
  int max_tool_calls = -1;            // -1 = unlimited
};

// The body's previous_response_id ("" when absent); 400 naming it when not a string.
std::string previous_response_id(const Json& body);

// Validates a /v1/responses body (every check names the field, as request.h does) and builds
// the chat request; `history` = the items of the previous response's conversation, output
// included (ResponseStore::conversation), prepended to the input.
ResponsesRequest parse_responses_request(const Json& body, const Json& history = Json::array());

// `input` (a string or a list of items) -> normalised items; errors name `param`[i].
Json normalize_items(const Json& input, const std::string& param);
Json items_to_messages(const Json& items, const std::string& instructions);

// Response usage.
Json responses_usage(int64_t input_tokens, int64_t cached_tokens, int64_t output_tokens, int64_t reasoning_tokens);

// The response object: lifecycle fields + echo + output + usage.
struct ResponseObject {
  std::string id, model;
  long long created_at = 0;
  Json echo = Json::object();
  std::string status = "in_progress";
  Json error, incomplete_details, usage;
  Json output = Json::array();
  std::optional<long long> completed_at;
  Json to_json() const;
};

// Output items and stream events from the output pipeline's events (one builder per
// response; streamed and non-streamed responses both go through it, so they cannot differ).
// Events are {"type", "sequence_number", ...} objects; the item being written is the last of
// output() with status "in_progress" until the next item opens or finish().
class ResponseBuilder {
 public:
  explicit ResponseBuilder(bool encrypted_reasoning = false) : encrypted_(encrypted_reasoning) {}
  // A lifecycle or other event with the next sequence number.
  Json event(const std::string& type, Json fields = Json::object());
  void add(const std::vector<text::OutputEvent>& events, std::vector<Json>& out);
  // Closes the open item (status "incomplete" when `incomplete`).
  void finish(bool incomplete, std::vector<Json>& out);
  const Json& output() const { return output_; }

 private:
  enum class Open { kNone, kReasoning, kMessage, kCall };
  void open(Open kind, const text::OutputEvent* call, std::vector<Json>& out);
  void append(const std::string& text, std::vector<Json>& out);
  void close(const char* status, std::vector<Json>& out);
  Json& item() { return output_.back(); }
  Json item_fields() const;  // {item_id, output_index}

  bool encrypted_;
  Json output_ = Json::array();
  Open open_ = Open::kNone;
  std::string text_;            // the open item's text, or a call's arguments so far
  int seq_ = 0;
};

// One SSE event of the Responses stream: "event: <type>\ndata: <json>\n\n".
std::string responses_sse(const Json& event);

// Stored responses, in memory: least recently used evicted beyond `max_count` responses or
// `max_bytes` (the JSON text of the response and of its conversation items, which are kept
// whole so that any stored response can be continued on its own). Thread-safe.
class ResponseStore {
 public:
  void configure(std::size_t max_count, std::size_t max_bytes);
  bool enabled() const;
  // False (nothing kept) when storing is off or the entry alone exceeds max_bytes.
  bool put(const std::string& id, const Json& response, const Json& items);
  std::optional<Json> get(const std::string& id);
  // The items of the response's conversation followed by its output items (normalised).
  std::optional<Json> conversation(const std::string& id);
  bool erase(const std::string& id);
  std::size_t size() const;
  std::size_t bytes() const;

 private:
  struct Entry {
    std::string id, response, items;  // JSON text
    std::size_t size() const { return id.size() + response.size() + items.size(); }
  };
  using List = std::list<Entry>;
  List::iterator touch(List::iterator it);  // moves to the front (most recent)
  void evict();

  mutable std::mutex mu_;
  std::size_t max_count_ = 0, max_bytes_ = 0, bytes_ = 0;
  List lru_;  // most recently used first
  std::unordered_map<std::string, List::iterator> index_;
};

}  // namespace nemotron::server
