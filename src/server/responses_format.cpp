// The Responses API's response object, output items and stream events (responses.h).
//
// Stream of one response (sequence_number counts every event from 0):
//   response.created, response.in_progress,
//   per output item, in output order:
//     response.output_item.added {output_index, item (status in_progress)}
//     reasoning: response.content_part.added {part: reasoning_text ""},
//                response.reasoning_text.delta*, response.reasoning_text.done,
//                response.content_part.done
//     message:   response.content_part.added {part: output_text ""},
//                response.output_text.delta*, response.output_text.done,
//                response.content_part.done
//     function_call: response.function_call_arguments.delta*, .done
//     response.output_item.done {item (status completed | incomplete)}
//   then response.completed | response.incomplete | (error +) response.failed.
#include <cstddef>

#include "server/openai_format.h"
#include "server/responses.h"

namespace nemotron::server {

Json responses_usage(int64_t input_tokens, int64_t cached_tokens, int64_t output_tokens, int64_t reasoning_tokens) {
  return {{"input_tokens", input_tokens},
          {"input_tokens_details", {{"cached_tokens", cached_tokens}}},
          {"output_tokens", output_tokens},
          {"output_tokens_details", {{"reasoning_tokens", reasoning_tokens}}},
          {"total_tokens", input_tokens + output_tokens}};
}

Json ResponseObject::to_json() const {
  Json j = {{"id", id},
            {"object", "response"},
            {"created_at", created_at},
            {"status", status},
            {"background", false},
            {"error", error},
            {"incomplete_details", incomplete_details},
            {"model", model}};
  for (auto it = echo.begin(); it != echo.end(); ++it) j[it.key()] = it.value();
  j["output"] = output;
  j["usage"] = usage;
  if (completed_at) j["completed_at"] = *completed_at;
  return j;
}

Json ResponseBuilder::event(const std::string& type, Json fields) {
  Json e = {{"type", type}, {"sequence_number", seq_++}};
  for (auto it = fields.begin(); it != fields.end(); ++it) e[it.key()] = std::move(it.value());
  return e;
}

Json ResponseBuilder::item_fields() const {
  return {{"item_id", output_.back()["id"]}, {"output_index", output_.size() - 1}};
}

void ResponseBuilder::open(Open kind, const text::OutputEvent* call, std::vector<Json>& out) {
  if (open_ != Open::kNone) close("completed", out);
  open_ = kind;
  text_.clear();
  Json item;
  switch (kind) {
    case Open::kReasoning:
      item = {{"id", make_id("rs_")}, {"type", "reasoning"}, {"status", "in_progress"},
              {"summary", Json::array()}, {"content", Json::array()}};
      break;
    case Open::kMessage:
      item = {{"id", make_id("msg_")}, {"type", "message"}, {"status", "in_progress"},
              {"role", "assistant"}, {"content", Json::array()}};
      break;
    case Open::kCall:
      item = {{"id", make_id("fc_")}, {"type", "function_call"}, {"status", "in_progress"},
              {"call_id", call->tool_id}, {"name", call->tool_name}, {"arguments", ""}};
      break;
    case Open::kNone: return;
  }
  output_.push_back(item);
  out.push_back(event("response.output_item.added", {{"output_index", output_.size() - 1}, {"item", item}}));
  if (kind == Open::kCall) return;
  Json part = kind == Open::kReasoning ? Json{{"type", "reasoning_text"}, {"text", ""}}
                                       : Json{{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()},
                                              {"logprobs", Json::array()}};
  Json f = item_fields();
  f["content_index"] = 0;
  f["part"] = std::move(part);
  out.push_back(event("response.content_part.added", std::move(f)));
}

void ResponseBuilder::append(const std::string& text, std::vector<Json>& out) {
  if (text.empty()) return;
  text_ += text;
  Json f = item_fields();
  if (open_ != Open::kCall) f["content_index"] = 0;
  f["delta"] = text;
  switch (open_) {
    case Open::kReasoning: out.push_back(event("response.reasoning_text.delta", std::move(f))); break;
    case Open::kMessage:
      f["logprobs"] = Json::array();
      out.push_back(event("response.output_text.delta", std::move(f)));
      break;
    case Open::kCall: out.push_back(event("response.function_call_arguments.delta", std::move(f))); break;
    case Open::kNone: break;
  }
}

void ResponseBuilder::close(const char* status, std::vector<Json>& out) {
  Json f = item_fields();
  Json& it = item();
  if (open_ == Open::kCall) {
    f["arguments"] = text_;
    out.push_back(event("response.function_call_arguments.done", std::move(f)));
    it["arguments"] = text_;
  } else {
    const bool reasoning = open_ == Open::kReasoning;
    Json part = reasoning ? Json{{"type", "reasoning_text"}, {"text", text_}}
                          : Json{{"type", "output_text"}, {"text", text_}, {"annotations", Json::array()},
                                 {"logprobs", Json::array()}};
    f["content_index"] = 0;
    Json done = f;
    done["text"] = text_;
    if (!reasoning) done["logprobs"] = Json::array();
    out.push_back(event(reasoning ? "response.reasoning_text.done" : "response.output_text.done", std::move(done)));
    f["part"] = part;
    out.push_back(event("response.content_part.done", std::move(f)));
    it["content"] = Json::array({part});
    if (reasoning && encrypted_) it["encrypted_content"] = text_;
  }
  it["status"] = status;
  out.push_back(event("response.output_item.done", {{"output_index", output_.size() - 1}, {"item", it}}));
  open_ = Open::kNone;
  text_.clear();
}

void ResponseBuilder::add(const std::vector<text::OutputEvent>& events, std::vector<Json>& out) {
  for (const auto& e : events) {
    switch (e.kind) {
      case text::OutputEvent::Kind::kReasoning:
        if (e.text.empty()) break;
        if (open_ != Open::kReasoning) open(Open::kReasoning, nullptr, out);
        append(e.text, out);
        break;
      case text::OutputEvent::Kind::kContent:
        if (e.text.empty()) break;
        if (open_ != Open::kMessage) open(Open::kMessage, nullptr, out);
        append(e.text, out);
        break;
      case text::OutputEvent::Kind::kToolCall:
        // The first event of a call names it; later ones carry argument fragments of the
        // call opened last (the parser finishes one call before it starts the next).
        if (!e.tool_id.empty()) open(Open::kCall, &e, out);
        if (open_ == Open::kCall) append(e.text, out);
        break;
    }
  }
}

void ResponseBuilder::finish(bool incomplete, std::vector<Json>& out) {
  if (open_ != Open::kNone) close(incomplete ? "incomplete" : "completed", out);
}

std::string responses_sse(const Json& event) {
  return "event: " + event["type"].get<std::string>() + "\ndata: " +
         event.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

}  // namespace nemotron::server
