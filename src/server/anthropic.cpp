#include "server/anthropic.h"

#include <cmath>
#include <limits>
#include <set>

namespace nemotron::server {
namespace {

constexpr std::size_t kMaxStops = 16;  // as chat's `stop`

// The value of `key`, or nullptr when absent or null.
const Json* field(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

ApiError wrong_type(const std::string& where, const char* expected, const Json& v) {
  return bad_param(where, std::string("must be ") + expected + ", got " + v.type_name(), "invalid_type");
}

ApiError missing(const std::string& where) {
  return bad_param(where, "Field required", "missing_required_parameter");
}

std::string get_string(const Json& obj, const char* key, const std::string& where, bool required) {
  const Json* v = field(obj, key);
  if (!v) {
    if (required) throw missing(where + "." + key);
    return "";
  }
  if (!v->is_string()) throw wrong_type(where + "." + key, "a string", *v);
  return v->get<std::string>();
}

std::optional<bool> get_bool(const Json& obj, const char* key, const std::string& where) {
  const Json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw wrong_type(where, "a boolean", *v);
  return v->get<bool>();
}

std::optional<double> get_number(const Json& obj, const char* key) {
  const Json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw wrong_type(key, "a number", *v);
  const double d = v->get<double>();
  if (!std::isfinite(d)) throw bad_param(key, "must be finite");
  return d;
}

// Integers only (1.0 is accepted as 1; 1.5 is not).
std::optional<int64_t> get_int(const Json& obj, const char* key, const std::string& where) {
  const Json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw bad_param(where, "is too large");
    return v->get<int64_t>();
  }
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
  }
  throw wrong_type(where, "an integer", *v);
}

std::string block_where(const std::string& msg_where, std::size_t j) {
  return msg_where + ".content[" + std::to_string(j) + "]";
}

// The block's type (a string), checked.
std::string block_type(const Json& block, const std::string& where) {
  if (!block.is_object()) throw wrong_type(where, "a content block object", block);
  return get_string(block, "type", where, true);
}

[[noreturn]] void refuse_block(const std::string& type, const std::string& where) {
  if (type == "image" || type == "document" || type == "search_result" || type == "container_upload")
    throw bad_param(where + ".type", "'" + type + "' content blocks are not supported: this model reads text only",
                    "unsupported_parameter");
  if (type == "server_tool_use" || type == "mcp_tool_use" || type == "mcp_tool_result" ||
      type.find("_tool_result") != std::string::npos)
    throw bad_param(where + ".type", "'" + type + "' blocks are not supported: this server runs no server tools",
                    "unsupported_parameter");
  throw bad_param(where + ".type", "unknown content block type '" + type + "'");
}

// A text block's text.
std::string text_of(const Json& block, const std::string& where) { return get_string(block, "text", where, true); }

// tool_result.content: a string or a list of text blocks (joined with "\n"), or absent.
std::string tool_result_text(const Json& block, const std::string& where) {
  const Json* c = field(block, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) throw wrong_type(where + ".content", "a string or a list of text blocks", *c);
  std::string out;
  for (std::size_t k = 0; k < c->size(); ++k) {
    const std::string at = where + ".content[" + std::to_string(k) + "]";
    const std::string type = block_type((*c)[k], at);
    if (type != "text") refuse_block(type, at);
    if (k > 0) out += "\n";
    out += text_of((*c)[k], at);
  }
  return out;
}

struct Conversion {
  Json messages = Json::array();
  std::set<std::string> tool_use_ids;  // every tool_use id so far (tool_result must name one)
};

// A user turn: text blocks grouped into user messages, each tool_result its own tool message,
// in the order given.
void convert_user(const Json& content, const std::string& where, Conversion& conv) {
  if (content.is_string()) {
    conv.messages.push_back({{"role", "user"}, {"content", content}});
    return;
  }
  Json parts = Json::array();
  auto flush = [&] {
    if (!parts.empty()) conv.messages.push_back({{"role", "user"}, {"content", parts}});
    parts = Json::array();
  };
  for (std::size_t j = 0; j < content.size(); ++j) {
    const std::string at = block_where(where, j);
    const Json& b = content[j];
    const std::string type = block_type(b, at);
    if (type == "text") {
      parts.push_back({{"type", "text"}, {"text", text_of(b, at)}});
    } else if (type == "tool_result") {
      const std::string id = get_string(b, "tool_use_id", at, true);
      if (!conv.tool_use_ids.count(id))
        throw bad_param(at + ".tool_use_id", "'" + id + "' names no tool_use block of an earlier assistant message");
      std::string text = tool_result_text(b, at);
      if (get_bool(b, "is_error", at + ".is_error").value_or(false)) text = "Error: " + text;
      flush();
      conv.messages.push_back({{"role", "tool"}, {"tool_call_id", id}, {"content", text}});
    } else if (type == "tool_use" || type == "thinking" || type == "redacted_thinking") {
      throw bad_param(at + ".type", "'" + type + "' blocks belong in assistant messages");
    } else {
      refuse_block(type, at);
    }
  }
  flush();
}

struct AssistantTurn {
  std::string text, reasoning;
  Json tool_calls = Json::array();
};

AssistantTurn convert_assistant(const Json& content, const std::string& where, Conversion& conv) {
  AssistantTurn t;
  if (content.is_string()) {
    t.text = content.get<std::string>();
    return t;
  }
  bool any_text = false, any_reasoning = false;
  for (std::size_t j = 0; j < content.size(); ++j) {
    const std::string at = block_where(where, j);
    const Json& b = content[j];
    const std::string type = block_type(b, at);
    if (type == "text") {
      if (any_text) t.text += "\n";
      t.text += text_of(b, at);
      any_text = true;
    } else if (type == "thinking") {
      const std::string r = get_string(b, "thinking", at, true);
      get_string(b, "signature", at, false);  // accepted (type-checked), not verified
      if (any_reasoning) t.reasoning += "\n";
      t.reasoning += r;
      any_reasoning = true;
    } else if (type == "redacted_thinking") {
      // Another model's encrypted reasoning: nothing this model can read.
    } else if (type == "tool_use") {
      const std::string id = get_string(b, "id", at, true);
      const std::string name = get_string(b, "name", at, true);
      const Json* input = field(b, "input");
      if (!input) throw missing(at + ".input");
      if (!input->is_object()) throw wrong_type(at + ".input", "an object", *input);
      conv.tool_use_ids.insert(id);
      t.tool_calls.push_back(
          {{"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", *input}}}});
    } else if (type == "tool_result") {
      throw bad_param(at + ".type", "'tool_result' blocks belong in user messages");
    } else {
      refuse_block(type, at);
    }
  }
  return t;
}

void parse_system(const Json& body, Json& messages) {
  const Json* s = field(body, "system");
  if (!s) return;
  if (s->is_string()) {
    if (!s->get<std::string>().empty()) messages.push_back({{"role", "system"}, {"content", *s}});
    return;
  }
  if (!s->is_array()) throw wrong_type("system", "a string or a list of text blocks", *s);
  Json parts = Json::array();
  for (std::size_t j = 0; j < s->size(); ++j) {
    const std::string at = "system[" + std::to_string(j) + "]";
    const std::string type = block_type((*s)[j], at);
    if (type != "text") throw bad_param(at + ".type", "system blocks must be of type 'text', got '" + type + "'");
    parts.push_back({{"type", "text"}, {"text", text_of((*s)[j], at)}});
  }
  if (!parts.empty()) messages.push_back({{"role", "system"}, {"content", parts}});
}

void parse_messages(const Json& body, Conversion& conv, MessagesRequest& r) {
  const Json* m = field(body, "messages");
  if (!m) throw missing("messages");
  if (!m->is_array()) throw wrong_type("messages", "a list", *m);
  if (m->empty()) throw bad_param("messages", "must contain at least one message");
  for (std::size_t i = 0; i < m->size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const Json& msg = (*m)[i];
    if (!msg.is_object()) throw wrong_type(where, "an object", msg);
    const std::string role = get_string(msg, "role", where, true);
    if (role != "user" && role != "assistant")
      throw bad_param(where + ".role", "must be 'user' or 'assistant', got '" + role + "'" +
                                           (role == "system" ? " (use the top-level 'system' field)" : ""));
    const Json* content = field(msg, "content");
    if (!content) throw missing(where + ".content");
    if (!content->is_string() && !content->is_array())
      throw wrong_type(where + ".content", "a string or a list of content blocks", *content);
    const bool last = i + 1 == m->size();
    const bool empty = content->is_array() ? content->empty() : content->get<std::string>().empty();
    if (empty) {
      if (last && role == "assistant") continue;  // an empty final assistant turn: nothing to continue
      throw bad_param(where + ".content", "must not be empty (only the final assistant message may be)");
    }
    if (role == "user") {
      convert_user(*content, where, conv);
      continue;
    }
    AssistantTurn t = convert_assistant(*content, where, conv);
    Json out = {{"role", "assistant"}, {"content", t.text}};
    if (!t.reasoning.empty()) out["reasoning_content"] = t.reasoning;
    if (!t.tool_calls.empty()) out["tool_calls"] = t.tool_calls;
    if (last) {
      // Prefill: the reply continues this message's text.
      if (!t.tool_calls.empty())
        throw bad_param(where + ".content", "a final assistant message cannot end with tool_use: answer it with a "
                                            "user message of tool_result blocks");
      if (t.text.empty())
        throw bad_param(where + ".content", "a final assistant message (prefill) must contain text to continue");
      const char tail = t.text.back();
      if (tail == ' ' || tail == '\n' || tail == '\t' || tail == '\r')
        throw bad_param(where + ".content", "final assistant content cannot end with trailing whitespace");
      r.prefill = true;
      const std::size_t start = t.text.find_first_not_of(" \t\r\n");
      r.prefill_text = t.text.substr(start);
    }
    conv.messages.push_back(std::move(out));
  }
}

void parse_tools(const Json& body, ChatRequest& c) {
  const Json* t = field(body, "tools");
  if (!t) return;
  if (!t->is_array()) throw wrong_type("tools", "a list", *t);
  Json tools = Json::array();
  std::set<std::string> names;
  for (std::size_t i = 0; i < t->size(); ++i) {
    const std::string at = "tools[" + std::to_string(i) + "]";
    const Json& tool = (*t)[i];
    if (!tool.is_object()) throw wrong_type(at, "an object", tool);
    const std::string type = get_string(tool, "type", at, false);
    if (!type.empty() && type != "custom")
      throw bad_param(at + ".type", "tool type '" + type + "' is not supported: only client tools {name, "
                                    "description, input_schema} (this server runs no server tools)",
                      "unsupported_parameter");
    const std::string name = get_string(tool, "name", at, true);
    if (name.empty() || name.find_first_of(" \t\r\n<>{}\"'") != std::string::npos)
      throw bad_param(at + ".name", "must be a non-empty name without whitespace, quotes, <, >, { or }");
    if (!names.insert(name).second) throw bad_param(at + ".name", "tool name '" + name + "' is used twice");
    Json fn = {{"name", name}};
    if (field(tool, "description")) fn["description"] = get_string(tool, "description", at, false);
    const Json* schema = field(tool, "input_schema");
    if (!schema) throw missing(at + ".input_schema");
    if (!schema->is_object()) throw wrong_type(at + ".input_schema", "a JSON schema object", *schema);
    fn["parameters"] = *schema;
    tools.push_back({{"type", "function"}, {"function", fn}});
  }
  if (!tools.empty()) c.tools = tools;
}

void parse_tool_choice(const Json& body, ChatRequest& c) {
  const Json* tc = field(body, "tool_choice");
  if (!tc) return;
  if (!tc->is_object()) throw wrong_type("tool_choice", "an object {\"type\": auto | any | tool | none}", *tc);
  const std::string type = get_string(*tc, "type", "tool_choice", true);
  if (auto v = get_bool(*tc, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use"))
    c.parallel_tool_calls = !*v;
  if (type == "auto") {
    c.tool_choice = ToolChoice::kAuto;
  } else if (type == "none") {
    c.tool_choice = ToolChoice::kNone;
  } else if (type == "any" || type == "tool") {
    if (c.tools.is_null()) throw bad_param("tool_choice", "type '" + type + "' needs 'tools'");
    if (type == "any") {
      c.tool_choice = ToolChoice::kRequired;
    } else {
      c.tool_choice = ToolChoice::kNamed;
      c.tool_choice_name = get_string(*tc, "name", "tool_choice", true);
      bool found = false;
      for (const Json& t : c.tools) found = found || t["function"]["name"] == c.tool_choice_name;
      if (!found)
        throw bad_param("tool_choice.name", "names tool '" + c.tool_choice_name + "', which is not in 'tools'");
    }
  } else {
    throw bad_param("tool_choice.type", "must be auto, any, tool or none, got '" + type + "'");
  }
}

void parse_thinking(const Json& body, MessagesRequest& r) {
  ChatRequest& c = r.chat;
  if (const Json* k = field(body, "chat_template_kwargs")) {  // extension, as in chat requests
    if (!k->is_object()) throw wrong_type("chat_template_kwargs", "an object", *k);
    c.chat_template_kwargs = *k;
  }
  const Json* t = field(body, "thinking");
  if (!t) return;
  if (!t->is_object()) throw wrong_type("thinking", "an object {\"type\": enabled | disabled}", *t);
  const std::string type = get_string(*t, "type", "thinking", true);
  if (type == "enabled") {
    const auto budget = get_int(*t, "budget_tokens", "thinking.budget_tokens");
    if (!budget) throw missing("thinking.budget_tokens");
    if (*budget < 1) throw bad_param("thinking.budget_tokens", "must be at least 1");
    r.thinking_budget = *budget;
    r.chat.gen.reasoning_budget = *budget;
    c.chat_template_kwargs["enable_thinking"] = true;
  } else if (type == "adaptive" || type == "between_tools") {
    c.chat_template_kwargs["enable_thinking"] = true;
  } else if (type == "disabled") {
    c.chat_template_kwargs["enable_thinking"] = false;
  } else {
    throw bad_param("thinking.type", "must be enabled, adaptive, between_tools or disabled, got '" + type + "'");
  }
  const std::string display = get_string(*t, "display", "thinking", false);
  if (display == "omitted") c.include_reasoning = false;
  else if (!display.empty() && display != "summarized")
    throw bad_param("thinking.display", "must be summarized or omitted, got '" + display + "'");
}

// Structured outputs: output_config.format, or the beta's top-level output_format, as
// {type: "json_schema", schema} -> a JSON-schema constrained answer.
void parse_output_format(const Json& body, StructuredOutput& s) {
  const Json* f = field(body, "output_format");
  std::string param = "output_format";
  if (const Json* oc = field(body, "output_config")) {
    if (!oc->is_object()) throw wrong_type("output_config", "an object", *oc);
    if (const Json* of = field(*oc, "format")) {
      if (f) throw bad_param("output_config.format", "give 'output_config.format' or 'output_format', not both");
      f = of;
      param = "output_config.format";
    }
  }
  if (!f) return;
  if (!f->is_object()) throw wrong_type(param, "an object", *f);
  const std::string type = get_string(*f, "type", param, true);
  if (type != "json_schema") throw bad_param(param + ".type", "must be json_schema, got '" + type + "'");
  const Json* schema = field(*f, "schema");
  if (!schema || !(schema->is_object() || schema->is_boolean()))
    throw bad_param(param + ".schema", "a JSON schema object is required");
  s.kind = StructuredOutput::Kind::kJsonSchema;
  s.schema = *schema;
  s.param = param;
}

void parse_generation(const Json& body, GenerationOptions& g) {
  const auto max_tokens = get_int(body, "max_tokens", "max_tokens");
  if (!max_tokens) throw missing("max_tokens");
  if (*max_tokens < 1) throw bad_param("max_tokens", "must be at least 1");
  g.max_tokens = *max_tokens;
  if (const Json* s = field(body, "stop_sequences")) {
    if (!s->is_array()) throw wrong_type("stop_sequences", "a list of strings", *s);
    if (s->size() > kMaxStops) throw bad_param("stop_sequences", "may hold at most 16 strings");
    for (std::size_t i = 0; i < s->size(); ++i) {
      const std::string at = "stop_sequences[" + std::to_string(i) + "]";
      if (!(*s)[i].is_string()) throw wrong_type(at, "a string", (*s)[i]);
      if ((*s)[i].get<std::string>().empty()) throw bad_param(at, "must not be empty");
      g.stop.push_back((*s)[i].get<std::string>());
    }
  }
  kernels::SamplingParams& p = g.sampling;
  if (auto v = get_number(body, "temperature")) {
    if (*v < 0 || *v > 1) throw bad_param("temperature", "must be in [0, 1], got " + std::to_string(*v));
    p.temperature = static_cast<float>(*v);
    g.given.temperature = true;
  }
  if (auto v = get_number(body, "top_p")) {
    if (*v <= 0 || *v > 1) throw bad_param("top_p", "must be in (0, 1], got " + std::to_string(*v));
    p.top_p = static_cast<float>(*v);
    g.given.top_p = true;
  }
  if (auto v = get_int(body, "top_k", "top_k")) {
    if (*v < 0 || *v > 1'000'000) throw bad_param("top_k", "must be a non-negative integer (0: off)");
    p.top_k = static_cast<int32_t>(*v);
    g.given.top_k = true;
  }
  g.stream = get_bool(body, "stream", "stream").value_or(false);
  parse_output_format(body, g.structured);
  if (const Json* m = field(body, "metadata")) {
    if (!m->is_object()) throw wrong_type("metadata", "an object", *m);
    get_string(*m, "user_id", "metadata", false);
  }
  if (const Json* v = field(body, "service_tier"))
    if (!v->is_string()) throw wrong_type("service_tier", "a string", *v);
}

// Fields whose meaning this server cannot honour: refused, never silently ignored.
void refuse_unsupported(const Json& body) {
  if (const Json* m = field(body, "mcp_servers")) {
    if (!m->is_array()) throw wrong_type("mcp_servers", "a list", *m);
    if (!m->empty()) throw bad_param("mcp_servers", "MCP servers are not supported", "unsupported_parameter");
  }
  if (field(body, "container")) throw bad_param("container", "containers are not supported", "unsupported_parameter");
}

}  // namespace

MessagesRequest parse_messages_request(const Json& body, bool count_tokens) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_type");
  MessagesRequest r;
  ChatRequest& c = r.chat;
  if (const Json* m = field(body, "model")) {
    if (!m->is_string()) throw wrong_type("model", "a string", *m);
    c.model = m->get<std::string>();
  }
  refuse_unsupported(body);
  Conversion conv;
  parse_system(body, conv.messages);
  parse_messages(body, conv, r);
  c.messages = std::move(conv.messages);
  parse_tools(body, c);
  parse_tool_choice(body, c);
  parse_thinking(body, r);
  c.add_generation_prompt = !r.prefill;
  if (!count_tokens) parse_generation(body, c.gen);
  return r;
}

const char* anthropic_error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

Json anthropic_error_body(int status, const std::string& message, const std::string& param) {
  const std::string text = param.empty() || message.rfind(param + ":", 0) == 0 ? message : param + ": " + message;
  return {{"type", "error"}, {"error", {{"type", anthropic_error_type(status)}, {"message", text}}}};
}

Json anthropic_usage_json(const AnthropicUsage& u) {
  return {{"input_tokens", u.prompt_tokens - u.cached_tokens},
          {"output_tokens", u.output_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", u.cached_tokens}};
}

std::string anthropic_stop_reason(const std::string& finish_reason, const Json& stop_reason, Json& stop_sequence) {
  stop_sequence = nullptr;
  if (finish_reason == "length") return "max_tokens";
  if (finish_reason == "tool_calls") return "tool_use";
  if (stop_reason.is_string()) {
    stop_sequence = stop_reason;
    return "stop_sequence";
  }
  return "end_turn";
}

Json anthropic_content(const text::OutputResult& r, bool include_thinking) {
  Json content = Json::array();
  if (include_thinking && !r.reasoning.empty())
    content.push_back({{"type", "thinking"}, {"thinking", r.reasoning}, {"signature", ""}});
  if (!r.content.empty()) content.push_back({{"type", "text"}, {"text", r.content}});
  for (const auto& call : r.tool_calls) {
    Json input = Json::parse(call.arguments, nullptr, false);
    if (input.is_discarded() || !input.is_object()) input = Json::object();
    content.push_back({{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", input}});
  }
  return content;
}

Json anthropic_message(const std::string& id, const std::string& model, Json content, const std::string& stop_reason,
                       const Json& stop_sequence, const AnthropicUsage& usage) {
  return {{"id", id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", model},
          {"content", std::move(content)},
          {"stop_reason", stop_reason.empty() ? Json(nullptr) : Json(stop_reason)},
          {"stop_sequence", stop_sequence},
          {"usage", anthropic_usage_json(usage)}};
}

std::string anthropic_sse(const std::string& name, const Json& data) {
  return "event: " + name + "\ndata: " + data.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

std::string AnthropicBlockStream::open(Block kind, Json content_block) {
  open_ = kind;
  ++index_;
  Json start = {{"type", "content_block_start"}, {"index", index_}, {"content_block", std::move(content_block)}};
  return anthropic_sse("content_block_start", start);
}

std::string AnthropicBlockStream::close() {
  if (open_ == Block::kNone) return "";
  open_ = Block::kNone;
  return anthropic_sse("content_block_stop", {{"type", "content_block_stop"}, {"index", index_}});
}

std::string AnthropicBlockStream::push(const std::vector<text::OutputEvent>& events) {
  std::string out;
  auto delta = [&](Json d) {
    Json ev = {{"type", "content_block_delta"}, {"index", index_}, {"delta", std::move(d)}};
    out += anthropic_sse("content_block_delta", ev);
  };
  for (const auto& e : events) {
    switch (e.kind) {
      case text::OutputEvent::Kind::kReasoning:
        if (e.text.empty() || !include_thinking_) break;
        if (open_ != Block::kThinking) {
          out += close();
          out += open(Block::kThinking, {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
        }
        delta({{"type", "thinking_delta"}, {"thinking", e.text}});
        break;
      case text::OutputEvent::Kind::kContent:
        if (e.text.empty()) break;
        if (open_ != Block::kText) {
          out += close();
          out += open(Block::kText, {{"type", "text"}, {"text", ""}});
        }
        delta({{"type", "text_delta"}, {"text", e.text}});
        break;
      case text::OutputEvent::Kind::kToolCall:
        if (!e.tool_id.empty()) {  // a call starts: its own block
          out += close();
          out += open(Block::kToolUse,
                      {{"type", "tool_use"}, {"id", e.tool_id}, {"name", e.tool_name}, {"input", Json::object()}});
          tool_index_ = e.tool_index;
        } else if (open_ != Block::kToolUse || e.tool_index != tool_index_) {
          break;  // a fragment of no open call (the parser never sends one)
        }
        if (!e.text.empty()) delta({{"type", "input_json_delta"}, {"partial_json", e.text}});
        break;
    }
  }
  return out;
}

std::string anthropic_message_start(const std::string& id, const std::string& model, const AnthropicUsage& usage) {
  Json message = anthropic_message(id, model, Json::array(), "", nullptr, usage);
  return anthropic_sse("message_start", {{"type", "message_start"}, {"message", message}});
}

std::string anthropic_message_end(const std::string& stop_reason, const Json& stop_sequence,
                                  const AnthropicUsage& usage) {
  Json delta = {{"type", "message_delta"},
                {"delta", {{"stop_reason", stop_reason}, {"stop_sequence", stop_sequence}}},
                {"usage", anthropic_usage_json(usage)}};
  return anthropic_sse("message_delta", delta) + anthropic_sse("message_stop", {{"type", "message_stop"}});
}

}  // namespace nemotron::server
