// /v1/responses request parsing and the item <-> chat message mapping (responses.h).
// The request becomes a chat request body that parse_chat_request validates, so sampling
// fields, tools and tool_choice follow exactly the chat endpoint's rules; fields that exist
// only here (input, instructions, max_output_tokens, reasoning, text, include, ...) are
// checked first and named as the Responses API names them.
#include "server/responses.h"

#include <algorithm>
#include <cmath>

#include "server/api_error.h"

namespace nemotron::server {
namespace {

const Json* field(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

ApiError wrong_type(const std::string& param, const std::string& what, const char* expected, const Json& v) {
  return bad_param(param, what + " must be " + expected + ", got " + v.type_name(), "invalid_type");
}

ApiError unsupported(const std::string& param, const std::string& message) {
  return bad_param(param, message, "unsupported_parameter");
}

std::string get_string(const Json& obj, const char* key, const std::string& param, const std::string& where,
                       bool required) {
  const Json* v = field(obj, key);
  if (!v) {
    if (required) throw bad_param(param, where + "." + key + " is required", "missing_required_parameter");
    return "";
  }
  if (!v->is_string()) throw wrong_type(param, where + "." + key, "a string", *v);
  return v->get<std::string>();
}

// A string, or a list of text parts joined with "\n" (as the chat template layer joins them).
std::string text_of(const Json& content, const std::string& param, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw wrong_type(param, where, "a string or a list of content parts", content);
  std::string out;
  for (std::size_t i = 0; i < content.size(); ++i) {
    const Json& p = content[i];
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (!p.is_object()) throw wrong_type(param, at, "an object", p);
    const std::string type = get_string(p, "type", param, at, true);
    std::string text;
    if (type == "input_text" || type == "output_text" || type == "text" || type == "reasoning_text" ||
        type == "summary_text") {
      text = get_string(p, "text", param, at, true);
    } else if (type == "refusal") {
      text = get_string(p, "refusal", param, at, true);
    } else {
      throw unsupported(param, at + ": content part type '" + type + "' is not supported (text only)");
    }
    if (i > 0) out += "\n";
    out += text;
  }
  return out;
}

Json normalize_item(const Json& item, const std::string& param, const std::string& where) {
  if (!item.is_object()) throw wrong_type(param, where, "an object", item);
  std::string type = get_string(item, "type", param, where, false);
  if (type.empty()) {
    if (!field(item, "role")) throw bad_param(param, where + ".type is required", "missing_required_parameter");
    type = "message";
  }
  if (type == "message") {
    const std::string role = get_string(item, "role", param, where, true);
    if (role != "user" && role != "assistant" && role != "system" && role != "developer")
      throw bad_param(param, where + ".role '" + role + "' is not one of user, assistant, system, developer");
    const Json* c = field(item, "content");
    if (!c && role != "assistant") throw bad_param(param, where + ".content is required", "missing_required_parameter");
    return {{"type", "message"}, {"role", role}, {"content", c ? text_of(*c, param, where + ".content") : ""}};
  }
  if (type == "function_call") {
    Json out = {{"type", "function_call"},
                {"call_id", get_string(item, "call_id", param, where, true)},
                {"name", get_string(item, "name", param, where, true)}};
    const Json* a = field(item, "arguments");
    if (!a) throw bad_param(param, where + ".arguments is required", "missing_required_parameter");
    if (!a->is_string() && !a->is_object()) throw wrong_type(param, where + ".arguments", "a JSON string", *a);
    out["arguments"] = a->is_string() ? a->get<std::string>() : a->dump();
    return out;
  }
  if (type == "function_call_output") {
    const Json* o = field(item, "output");
    if (!o) throw bad_param(param, where + ".output is required", "missing_required_parameter");
    return {{"type", "function_call_output"},
            {"call_id", get_string(item, "call_id", param, where, true)},
            {"output", text_of(*o, param, where + ".output")}};
  }
  if (type == "reasoning") {
    std::string text;
    for (const char* key : {"content", "summary"}) {
      if (const Json* parts = field(item, key); parts && text.empty()) text = text_of(*parts, param, where + "." + key);
    }
    if (text.empty()) text = get_string(item, "encrypted_content", param, where, false);
    return {{"type", "reasoning"}, {"text", text}};
  }
  if (type == "item_reference")
    throw unsupported(param, where + ": item references are not supported; pass the item itself or use "
                                     "previous_response_id");
  throw unsupported(param, where + ".type '" + type +
                               "' is not supported (message, function_call, function_call_output, reasoning)");
}

// tools: function tools only; returns the chat form, fills the echo.
Json convert_tools(const Json& tools, Json& echo) {
  if (!tools.is_array()) throw wrong_type("tools", "'tools'", "a list", tools);
  Json chat = Json::array();
  for (std::size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) throw wrong_type("tools", where, "an object", t);
    const std::string type = get_string(t, "type", "tools", where, true);
    if (type != "function")
      throw unsupported("tools", where + ": tool type '" + type + "' is not supported (only 'function' tools)");
    const std::string name = get_string(t, "name", "tools", where, true);
    if (name.empty()) throw bad_param("tools", where + ".name must not be empty");
    Json fn = {{"name", name}};
    Json e = {{"type", "function"}, {"name", name}, {"description", nullptr}, {"parameters", nullptr},
              {"strict", nullptr}};
    if (const Json* d = field(t, "description")) {
      if (!d->is_string()) throw wrong_type("tools", where + ".description", "a string", *d);
      fn["description"] = e["description"] = *d;
    }
    if (const Json* p = field(t, "parameters")) {
      if (!p->is_object()) throw wrong_type("tools", where + ".parameters", "an object", *p);
      fn["parameters"] = e["parameters"] = *p;
    }
    if (const Json* s = field(t, "strict")) {
      if (!s->is_boolean()) throw wrong_type("tools", where + ".strict", "a boolean", *s);
      e["strict"] = *s;  // accepted, not enforced (no constrained decoding yet)
    }
    chat.push_back({{"type", "function"}, {"function", fn}});
    echo.push_back(e);
  }
  return chat;
}

// tool_choice: "auto" | "none" | "required" | {"type":"function","name"}; returns the chat form.
Json convert_tool_choice(const Json& tc, Json& echo) {
  if (tc.is_string()) {
    const std::string s = tc.get<std::string>();
    if (s != "auto" && s != "none" && s != "required")
      throw bad_param("tool_choice",
                      "'tool_choice' must be auto, none, required or {\"type\": \"function\", \"name\": ...}");
    echo = tc;
    return tc;
  }
  if (!tc.is_object()) throw wrong_type("tool_choice", "'tool_choice'", "a string or an object", tc);
  const std::string type = get_string(tc, "type", "tool_choice", "tool_choice", true);
  if (type != "function")
    throw unsupported("tool_choice", "tool_choice type '" + type + "' is not supported (only 'function')");
  const std::string name = get_string(tc, "name", "tool_choice", "tool_choice", true);
  echo = {{"type", "function"}, {"name", name}};
  return {{"type", "function"}, {"function", {{"name", name}}}};
}

// reasoning {effort, summary} -> template kwargs (effort) and the echo. The Nemotron 3 templates
// have a thinking switch (enable_thinking) and, per size, a lower-effort mode: Super reads
// low_effort, Ultra medium_effort ("efficient"); a template ignores the kwargs it does not
// declare. Kwargs the request set itself (chat_template_kwargs) win.
void convert_reasoning(const Json* reasoning, Json& kwargs, Json& echo) {
  echo = {{"effort", nullptr}, {"summary", nullptr}};
  if (!reasoning) return;
  if (!reasoning->is_object()) throw wrong_type("reasoning", "'reasoning'", "an object", *reasoning);
  for (const char* key : {"summary", "generate_summary"}) {
    if (const Json* s = field(*reasoning, key)) {
      const std::string param = std::string("reasoning.") + key;
      if (!s->is_string()) throw wrong_type(param, "'" + param + "'", "a string", *s);
      const std::string v = s->get<std::string>();
      if (v != "auto" && v != "concise" && v != "detailed")
        throw bad_param(param, "'" + param + "' must be auto, concise or detailed");
      echo["summary"] = v;  // accepted; reasoning comes back whole (reasoning_text), no summary
    }
  }
  const Json* e = field(*reasoning, "effort");
  if (!e) return;
  if (!e->is_string()) throw wrong_type("reasoning.effort", "'reasoning.effort'", "a string", *e);
  const std::string effort = e->get<std::string>();
  Json set = Json::object();
  if (effort == "none" || effort == "minimal") set["enable_thinking"] = false;
  else if (effort == "low") set = {{"enable_thinking", true}, {"low_effort", true}, {"medium_effort", true}};
  else if (effort == "medium") set = {{"enable_thinking", true}, {"medium_effort", true}};
  else if (effort == "high" || effort == "xhigh") set["enable_thinking"] = true;
  else throw bad_param("reasoning.effort", "'reasoning.effort' must be none, minimal, low, medium, high or xhigh");
  for (auto it = set.begin(); it != set.end(); ++it)
    if (!kwargs.contains(it.key())) kwargs[it.key()] = it.value();
  echo["effort"] = effort;
}

// text {format, verbosity}. format {type: text | json_object | json_schema {name, schema,
// strict}} becomes chat's response_format (constrained decoding); the echo repeats it.
Json convert_text(const Json* text, Json& chat) {
  Json echo = {{"format", {{"type", "text"}}}};
  if (!text) return echo;
  if (!text->is_object()) throw wrong_type("text", "'text'", "an object", *text);
  if (const Json* f = field(*text, "format")) {
    if (!f->is_object()) throw wrong_type("text.format", "'text.format'", "an object", *f);
    const std::string type = get_string(*f, "type", "text.format", "text.format", true);
    if (type == "json_object") {
      chat["response_format"] = {{"type", "json_object"}};
    } else if (type == "json_schema") {
      const Json* schema = field(*f, "schema");
      if (!schema) throw bad_param("text.format", "text.format type 'json_schema' needs 'schema'");
      std::string name = "output";
      if (const Json* n = field(*f, "name")) {
        if (!n->is_string()) throw wrong_type("text.format", "'text.format.name'", "a string", *n);
        name = n->get<std::string>();
      }
      chat["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", name}, {"schema", *schema}}}};
    } else if (type != "text") {
      throw bad_param("text.format", "text.format type '" + type + "' is not one of text, json_schema, json_object");
    }
    echo["format"] = *f;
  }
  if (const Json* v = field(*text, "verbosity")) {
    if (!v->is_string() || (*v != "low" && *v != "medium" && *v != "high"))
      throw bad_param("text.verbosity", "'text.verbosity' must be low, medium or high");
    echo["verbosity"] = *v;  // accepted, no effect
  }
  return echo;
}

void refuse_unsupported(const Json& body) {
  if (const Json* b = field(body, "background")) {
    if (!b->is_boolean()) throw wrong_type("background", "'background'", "a boolean", *b);
    if (b->get<bool>()) throw unsupported("background", "background responses are not supported");
  }
  if (field(body, "conversation"))
    throw unsupported("conversation", "conversations are not supported; use previous_response_id");
  if (field(body, "prompt")) throw unsupported("prompt", "prompt templates ('prompt') are not supported");
  if (const Json* t = field(body, "top_logprobs")) {
    if (!t->is_number_integer()) throw wrong_type("top_logprobs", "'top_logprobs'", "an integer", *t);
    if (t->get<int64_t>() != 0) throw unsupported("top_logprobs", "logprobs are not supported on /v1/responses");
  }
}

}  // namespace

std::string previous_response_id(const Json& body) {
  if (!body.is_object()) return "";
  const Json* p = field(body, "previous_response_id");
  if (!p) return "";
  if (!p->is_string()) throw wrong_type("previous_response_id", "'previous_response_id'", "a string", *p);
  if (p->get<std::string>().empty())
    throw bad_param("previous_response_id", "'previous_response_id' must not be empty");
  return p->get<std::string>();
}

Json normalize_items(const Json& input, const std::string& param) {
  Json out = Json::array();
  if (input.is_string()) {
    out.push_back({{"type", "message"}, {"role", "user"}, {"content", input}});
    return out;
  }
  if (!input.is_array()) throw wrong_type(param, "'" + param + "'", "a string or a list of items", input);
  for (std::size_t i = 0; i < input.size(); ++i)
    out.push_back(normalize_item(input[i], param, param + "[" + std::to_string(i) + "]"));
  return out;
}

Json items_to_messages(const Json& items, const std::string& instructions) {
  Json msgs = Json::array();
  if (!instructions.empty()) msgs.push_back({{"role", "system"}, {"content", instructions}});
  std::string reasoning;
  bool has_reasoning = false;
  bool after_assistant = false;  // the last message is an assistant turn a call may join
  auto assistant = [&](Json m) {
    if (has_reasoning) m["reasoning_content"] = reasoning;
    reasoning.clear();
    has_reasoning = false;
    msgs.push_back(std::move(m));
    after_assistant = true;
  };
  for (const Json& item : items) {
    const std::string type = item["type"].get<std::string>();
    if (type == "reasoning") {
      if (has_reasoning) reasoning += "\n";
      reasoning += item["text"].get<std::string>();
      has_reasoning = true;
      after_assistant = false;
    } else if (type == "message" && item["role"] == "assistant") {
      assistant({{"role", "assistant"}, {"content", item["content"]}});
    } else if (type == "function_call") {
      Json call = {{"id", item["call_id"]},
                   {"type", "function"},
                   {"function", {{"name", item["name"]}, {"arguments", item["arguments"]}}}};
      if (after_assistant && !has_reasoning) {
        Json& last = msgs.back();
        if (!last.contains("tool_calls")) last["tool_calls"] = Json::array();
        last["tool_calls"].push_back(std::move(call));
      } else {
        assistant({{"role", "assistant"}, {"content", ""}, {"tool_calls", Json::array({std::move(call)})}});
      }
    } else {
      // user / system / developer messages and tool results; reasoning before them is dropped.
      if (type == "function_call_output")
        msgs.push_back({{"role", "tool"}, {"tool_call_id", item["call_id"]}, {"content", item["output"]}});
      else
        msgs.push_back({{"role", item["role"]}, {"content", item["content"]}});
      reasoning.clear();
      has_reasoning = false;
      after_assistant = false;
    }
  }
  return msgs;
}

ResponsesRequest parse_responses_request(const Json& body, const Json& history) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_type");
  refuse_unsupported(body);
  ResponsesRequest r;
  Json& echo = r.echo;
  Json chat = Json::object();
  if (const Json* m = field(body, "model")) chat["model"] = *m;

  std::string instructions;
  echo["instructions"] = nullptr;
  if (const Json* v = field(body, "instructions")) {
    if (!v->is_string()) throw wrong_type("instructions", "'instructions'", "a string", *v);
    instructions = v->get<std::string>();
    echo["instructions"] = instructions;
  }

  r.previous_response_id = previous_response_id(body);
  echo["previous_response_id"] = r.previous_response_id.empty() ? Json(nullptr) : Json(r.previous_response_id);
  Json input = Json::array();
  if (const Json* in = field(body, "input")) {
    if (in->is_string() && in->get<std::string>().empty()) throw bad_param("input", "'input' must not be empty");
    input = normalize_items(*in, "input");
  }
  r.items = history;
  for (const Json& item : input) r.items.push_back(item);
  chat["messages"] = items_to_messages(r.items, instructions);
  if (chat["messages"].size() == (instructions.empty() ? 0u : 1u))
    throw bad_param("input", "'input' is required (a string or a list of items)", "missing_required_parameter");

  echo["tools"] = Json::array();
  if (const Json* t = field(body, "tools")) {
    Json tools = convert_tools(*t, echo["tools"]);
    if (!tools.empty()) chat["tools"] = tools;
  }
  echo["tool_choice"] = "auto";
  if (const Json* tc = field(body, "tool_choice")) chat["tool_choice"] = convert_tool_choice(*tc, echo["tool_choice"]);
  echo["parallel_tool_calls"] = true;
  if (const Json* p = field(body, "parallel_tool_calls")) {
    chat["parallel_tool_calls"] = *p;  // validated by the chat parser
    if (p->is_boolean()) echo["parallel_tool_calls"] = *p;
  }
  echo["max_tool_calls"] = nullptr;
  if (const Json* m = field(body, "max_tool_calls")) {
    if (!m->is_number_integer() || m->get<int64_t>() < 1)
      throw bad_param("max_tool_calls", "'max_tool_calls' must be a positive integer");
    r.max_tool_calls = static_cast<int>(std::min<int64_t>(m->get<int64_t>(), 1 << 20));
    echo["max_tool_calls"] = *m;
  }

  echo["max_output_tokens"] = nullptr;
  if (const Json* m = field(body, "max_output_tokens")) {
    const bool integral = m->is_number_integer() ||
                          (m->is_number_float() && std::floor(m->get<double>()) == m->get<double>());
    if (!integral) throw wrong_type("max_output_tokens", "'max_output_tokens'", "an integer", *m);
    if (m->get<double>() < 1) throw bad_param("max_output_tokens", "'max_output_tokens' must be at least 1");
    chat["max_tokens"] = *m;
    echo["max_output_tokens"] = *m;
  }

  Json kwargs = Json::object();
  if (const Json* k = field(body, "chat_template_kwargs")) {
    if (!k->is_object()) throw wrong_type("chat_template_kwargs", "'chat_template_kwargs'", "an object", *k);
    kwargs = *k;
  }
  convert_reasoning(field(body, "reasoning"), kwargs, echo["reasoning"]);
  if (!kwargs.empty()) chat["chat_template_kwargs"] = kwargs;
  echo["text"] = convert_text(field(body, "text"), chat);

  if (const Json* inc = field(body, "include")) {
    if (!inc->is_array()) throw wrong_type("include", "'include'", "a list of strings", *inc);
    for (const Json& v : *inc) {
      if (!v.is_string()) throw wrong_type("include", "'include' entries", "strings", v);
      if (v == "message.output_text.logprobs")
        throw unsupported("include", "'message.output_text.logprobs' is not supported on /v1/responses");
      if (v == "reasoning.encrypted_content") r.encrypted_reasoning = true;
    }
  }
  if (const Json* s = field(body, "store")) {
    if (!s->is_boolean()) throw wrong_type("store", "'store'", "a boolean", *s);
    r.store = s->get<bool>();
  }
  echo["store"] = r.store;
  echo["truncation"] = "disabled";
  if (const Json* t = field(body, "truncation")) {
    if (!t->is_string() || (*t != "auto" && *t != "disabled"))
      throw bad_param("truncation", "'truncation' must be auto or disabled");
    echo["truncation"] = *t;  // "auto" never truncates here: a prompt over the context is refused
  }
  echo["metadata"] = Json::object();
  if (const Json* m = field(body, "metadata")) {
    if (!m->is_object()) throw wrong_type("metadata", "'metadata'", "an object", *m);
    if (m->size() > 16) throw bad_param("metadata", "'metadata' may hold at most 16 keys");
    for (auto it = m->begin(); it != m->end(); ++it) {
      if (it.key().size() > 64) throw bad_param("metadata", "'metadata' keys may be at most 64 characters");
      if (!it.value().is_string() || it.value().get<std::string>().size() > 512)
        throw bad_param("metadata", "'metadata' values must be strings of at most 512 characters", "invalid_type");
    }
    echo["metadata"] = *m;
  }
  echo["user"] = nullptr;
  if (const Json* u = field(body, "user")) {
    if (!u->is_string()) throw wrong_type("user", "'user'", "a string", *u);
    echo["user"] = *u;
  }

  // Sampling and stopping fields with the chat endpoint's names and rules.
  for (const char* key : {"stream", "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                          "repetition_penalty", "seed", "stop", "stop_token_ids", "ignore_eos", "skip_special_tokens"})
    if (const Json* v = field(body, key)) chat[key] = *v;
  try {
    r.chat = parse_chat_request(chat);
  } catch (const ApiError& e) {
    throw renamed(e, "response_format", "text.format");
  }
  echo["temperature"] = field(body, "temperature") ? body["temperature"] : Json(nullptr);
  echo["top_p"] = field(body, "top_p") ? body["top_p"] : Json(nullptr);
  return r;
}

}  // namespace nemotron::server
