#include "server/openai_format.h"

#include <random>

namespace nemotron::server {
namespace {

Json bytes_json(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// json.dumps cannot hold -inf; OpenAI clients expect a number. Clamp like vLLM (-9999).
double finite_logprob(float lp) { return lp < -9999.0f || lp != lp ? -9999.0 : static_cast<double>(lp); }

Json tool_calls_json(const std::vector<text::ToolCall>& calls) {
  Json a = Json::array();
  for (const auto& c : calls)
    a.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return a;
}

}  // namespace

std::string make_id(const std::string& prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s = prefix;
  for (int i = 0; i < 24; ++i) s += hex[rng() & 15];
  return s;
}

Json usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

Json chat_logprobs_json(const std::vector<LogprobEntry>& entries) {
  Json content = Json::array();
  for (const auto& e : entries) {
    Json top = Json::array();
    for (const auto& [tok, lp] : e.top)
      top.push_back({{"token", tok}, {"logprob", finite_logprob(lp)}, {"bytes", bytes_json(tok)}});
    content.push_back({{"token", e.text},
                       {"logprob", finite_logprob(e.logprob)},
                       {"bytes", bytes_json(e.text)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

Json completion_logprobs_json(const std::vector<LogprobEntry>& entries, int64_t& offset) {
  Json tokens = Json::array(), lps = Json::array(), tops = Json::array(), offsets = Json::array();
  for (const auto& e : entries) {
    tokens.push_back(e.text);
    lps.push_back(finite_logprob(e.logprob));
    Json top = Json::object();
    for (const auto& [tok, lp] : e.top)
      if (!top.contains(tok)) top[tok] = finite_logprob(lp);
    tops.push_back(top);
    offsets.push_back(offset);
    offset += static_cast<int64_t>(e.text.size());
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

Json chat_message_json(const text::OutputResult& r, bool include_reasoning) {
  Json m = {{"role", "assistant"}};
  if (r.content.empty() && !r.tool_calls.empty()) m["content"] = nullptr;
  else m["content"] = r.content;
  if (include_reasoning) {
    const Json reasoning = r.reasoning.empty() ? Json(nullptr) : Json(r.reasoning);
    m["reasoning_content"] = reasoning;
    m["reasoning"] = reasoning;
  }
  if (!r.tool_calls.empty()) m["tool_calls"] = tool_calls_json(r.tool_calls);
  return m;
}

std::vector<Json> chat_deltas(const std::vector<text::OutputEvent>& events, bool include_reasoning) {
  std::vector<Json> out;
  for (const auto& e : events) {
    switch (e.kind) {
      case text::OutputEvent::Kind::kReasoning:
        if (include_reasoning && !e.text.empty()) out.push_back({{"reasoning_content", e.text}, {"reasoning", e.text}});
        break;
      case text::OutputEvent::Kind::kContent:
        if (!e.text.empty()) out.push_back({{"content", e.text}});
        break;
      case text::OutputEvent::Kind::kToolCall: {
        Json call = {{"index", e.tool_index}};
        if (!e.tool_id.empty()) {
          call["id"] = e.tool_id;
          call["type"] = "function";
          call["function"] = {{"name", e.tool_name}, {"arguments", e.text}};
        } else {
          call["function"] = {{"arguments", e.text}};
        }
        out.push_back({{"tool_calls", Json::array({call})}});
        break;
      }
    }
  }
  return out;
}

std::string sse(const Json& payload) {
  return "data: " + payload.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

}  // namespace nemotron::server
