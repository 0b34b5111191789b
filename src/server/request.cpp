#include "server/request.h"

#include <cmath>
#include <limits>

#include "server/api_error.h"

namespace nemotron::server {
namespace {

constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxStops = 16;

// The value of `key`, or nullptr when absent or null.
const Json* field(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string type_name(const Json& v) { return v.type_name(); }

ApiError wrong_type(const std::string& param, const char* expected, const Json& v) {
  return bad_param(param, "'" + param + "' must be " + expected + ", got " + type_name(v), "invalid_type");
}

std::optional<bool> get_bool(const Json& body, const char* key) {
  const Json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw wrong_type(key, "a boolean", *v);
  return v->get<bool>();
}

std::optional<double> get_number(const Json& body, const char* key) {
  const Json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw wrong_type(key, "a number", *v);
  const double d = v->get<double>();
  if (!std::isfinite(d)) throw bad_param(key, std::string("'") + key + "' must be finite");
  return d;
}

// Integers only (1.0 is accepted as 1; 1.5 is not).
std::optional<int64_t> get_int(const Json& body, const char* key) {
  const Json* v = field(body, key);
  if (!v) return std::nullopt;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw bad_param(key, std::string("'") + key + "' is too large");
    return v->get<int64_t>();
  }
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
  }
  throw wrong_type(key, "an integer", *v);
}

void check_range(const char* key, double v, double lo, double hi, bool lo_open = false) {
  if (v < lo || v > hi || (lo_open && v == lo)) {
    throw bad_param(key, std::string("'") + key + "' must be in " + (lo_open ? "(" : "[") + std::to_string(lo) +
                             ", " + std::to_string(hi) + "], got " + std::to_string(v));
  }
}

std::string get_model(const Json& body) {
  const Json* v = field(body, "model");
  if (!v) return "";
  if (!v->is_string()) throw wrong_type("model", "a string", *v);
  return v->get<std::string>();
}

std::vector<int32_t> get_token_list(const Json& v, const std::string& param) {
  if (!v.is_array()) throw wrong_type(param, "a list of integers", v);
  std::vector<int32_t> ids;
  for (const Json& t : v) {
    if (!t.is_number_integer()) throw bad_param(param, "'" + param + "' must contain only integers", "invalid_type");
    const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > (1ull << 40) ? -1 : t.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      throw bad_param(param, "'" + param + "' contains an invalid token id " + t.dump());
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

void refuse_unsupported(const Json& body) {
  if (const Json* lb = field(body, "logit_bias")) {
    if (!lb->is_object()) throw wrong_type("logit_bias", "an object", *lb);
    if (!lb->empty()) throw bad_param("logit_bias", "'logit_bias' is not supported", "unsupported_parameter");
  }
  if (get_bool(body, "use_beam_search").value_or(false))
    throw bad_param("use_beam_search", "beam search is not supported", "unsupported_parameter");
}

// A JSON schema given as an object (or true/false) or as JSON text.
Json schema_value(const Json& v, const std::string& param) {
  if (v.is_object() || v.is_boolean()) return v;
  if (v.is_string()) {
    Json j = Json::parse(v.get<std::string>(), nullptr, false);
    if (j.is_discarded() || !(j.is_object() || j.is_boolean()))
      throw bad_param(param, "'" + param + "' is not a JSON schema (an object, or its JSON text)");
    return j;
  }
  throw wrong_type(param, "a JSON schema object", v);
}

std::string string_value(const Json& v, const std::string& param) {
  if (!v.is_string() || v.get<std::string>().empty()) throw wrong_type(param, "a non-empty string", v);
  return v.get<std::string>();
}

std::vector<std::string> choice_value(const Json& v, const std::string& param) {
  if (!v.is_array() || v.empty()) throw wrong_type(param, "a non-empty list of strings", v);
  std::vector<std::string> out;
  for (const Json& c : v) {
    if (!c.is_string()) throw wrong_type(param, "a non-empty list of strings", v);
    out.push_back(c.get<std::string>());
  }
  return out;
}

}  // namespace

StructuredOutput parse_structured_output(const Json& body) {
  using Kind = StructuredOutput::Kind;
  StructuredOutput s;
  auto set = [&](Kind k, const std::string& param) {
    if (s.kind != Kind::kNone)
      throw bad_param(param, "'" + param + "' and '" + s.param + "' both constrain the output: give one");
    s.kind = k;
    s.param = param;
  };
  if (const Json* rf = field(body, "response_format")) {
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
      throw bad_param("response_format", "'response_format' must be an object with a string 'type'", "invalid_type");
    const std::string t = (*rf)["type"].get<std::string>();
    if (t == "json_object") {
      set(Kind::kJsonObject, "response_format");
    } else if (t == "json_schema") {
      const Json* js = field(*rf, "json_schema");
      if (!js || !js->is_object() || !js->contains("schema"))
        throw bad_param("response_format", "response_format type 'json_schema' needs 'json_schema': {name, schema}");
      set(Kind::kJsonSchema, "response_format");
      s.schema = schema_value((*js)["schema"], "response_format");
    } else if (t != "text") {
      throw bad_param("response_format", "response_format type '" + t + "' is not one of text, json_object, json_schema");
    }
  }
  if (const Json* v = field(body, "guided_json")) {
    set(Kind::kJsonSchema, "guided_json");
    s.schema = schema_value(*v, "guided_json");
  }
  if (const Json* v = field(body, "guided_regex")) {
    set(Kind::kRegex, "guided_regex");
    s.text = string_value(*v, "guided_regex");
  }
  if (const Json* v = field(body, "guided_choice")) {
    set(Kind::kChoice, "guided_choice");
    s.choices = choice_value(*v, "guided_choice");
  }
  if (const Json* v = field(body, "guided_grammar")) {
    set(Kind::kGrammar, "guided_grammar");
    s.text = string_value(*v, "guided_grammar");
  }
  if (const Json* so = field(body, "structured_outputs")) {
    if (!so->is_object()) throw wrong_type("structured_outputs", "an object", *so);
    for (const auto& [key, v] : so->items()) {
      if (v.is_null()) continue;
      const std::string param = "structured_outputs." + key;
      if (key == "json") {
        set(Kind::kJsonSchema, param);
        s.schema = schema_value(v, param);
      } else if (key == "regex") {
        set(Kind::kRegex, param);
        s.text = string_value(v, param);
      } else if (key == "choice") {
        set(Kind::kChoice, param);
        s.choices = choice_value(v, param);
      } else if (key == "grammar") {
        set(Kind::kGrammar, param);
        s.text = string_value(v, param);
      } else if (key == "json_object") {
        if (v.is_boolean() && v.get<bool>()) set(Kind::kJsonObject, param);
      } else {
        throw bad_param(param, "'" + param + "' is not supported (json, regex, choice, grammar, json_object)",
                        "unsupported_parameter");
      }
    }
  }
  return s;
}

namespace {

GenerationOptions parse_generation(const Json& body, bool chat) {
  GenerationOptions g;
  g.structured = parse_structured_output(body);
  kernels::SamplingParams& s = g.sampling;
  if (auto v = get_number(body, "temperature")) {
    check_range("temperature", *v, 0, 2);
    s.temperature = float(*v);
    g.given.temperature = true;
  }
  if (auto v = get_number(body, "top_p")) {
    check_range("top_p", *v, 0, 1, true);
    s.top_p = float(*v);
    g.given.top_p = true;
  }
  if (auto v = get_int(body, "top_k")) {
    if (*v < -1 || *v > 1'000'000) throw bad_param("top_k", "'top_k' must be -1 (off) or a non-negative integer");
    s.top_k = static_cast<int32_t>(*v);
    g.given.top_k = true;
  }
  if (auto v = get_number(body, "min_p")) {
    check_range("min_p", *v, 0, 1);
    s.min_p = float(*v);
    g.given.min_p = true;
  }
  if (auto v = get_number(body, "presence_penalty")) { check_range("presence_penalty", *v, -2, 2); s.presence_penalty = float(*v); }
  if (auto v = get_number(body, "frequency_penalty")) { check_range("frequency_penalty", *v, -2, 2); s.frequency_penalty = float(*v); }
  if (auto v = get_number(body, "repetition_penalty")) {
    check_range("repetition_penalty", *v, 0, 2, true);
    s.repetition_penalty = float(*v);
    g.given.repetition_penalty = true;
  }
  if (const Json* v = field(body, "seed")) {
    if (!v->is_number_integer()) throw wrong_type("seed", "an integer", *v);
    s.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  if (const Json* v = field(body, "stop")) {
    if (v->is_string()) {
      g.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const Json& x : *v) {
        if (!x.is_string()) throw bad_param("stop", "'stop' must be a string or a list of strings", "invalid_type");
        g.stop.push_back(x.get<std::string>());
      }
    } else {
      throw wrong_type("stop", "a string or a list of strings", *v);
    }
    if (g.stop.size() > kMaxStops) throw bad_param("stop", "'stop' may hold at most 16 strings");
    for (const auto& st : g.stop)
      if (st.empty()) throw bad_param("stop", "'stop' strings must not be empty");
  }
  if (const Json* v = field(body, "stop_token_ids")) g.stop_token_ids = get_token_list(*v, "stop_token_ids");
  const char* max_key = "max_tokens";
  if (chat && field(body, "max_completion_tokens")) max_key = "max_completion_tokens";
  if (auto v = get_int(body, max_key)) {
    if (*v < 1) throw bad_param(max_key, std::string("'") + max_key + "' must be at least 1");
    g.max_tokens = *v;
  }
  if (auto v = get_int(body, "n")) {
    if (*v < 1 || *v > 16) throw bad_param("n", "'n' must be in [1, 16]");
    g.n = static_cast<int>(*v);
  }
  if (auto v = get_int(body, "best_of"))
    if (*v != g.n) throw bad_param("best_of", "'best_of' other than n is not supported", "unsupported_parameter");
  g.ignore_eos = get_bool(body, "ignore_eos").value_or(false);
  g.skip_special_tokens = get_bool(body, "skip_special_tokens").value_or(true);
  g.stream = get_bool(body, "stream").value_or(false);
  if (const Json* so = field(body, "stream_options")) {
    if (!so->is_object()) throw wrong_type("stream_options", "an object", *so);
    if (!g.stream) throw bad_param("stream_options", "'stream_options' is only allowed when 'stream' is true");
    g.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
  if (chat) {
    g.logprobs = get_bool(body, "logprobs").value_or(false);
    if (auto v = get_int(body, "top_logprobs")) {
      if (*v < 0 || *v > 20) throw bad_param("top_logprobs", "'top_logprobs' must be in [0, 20]");
      if (!g.logprobs && *v > 0) throw bad_param("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
      g.top_logprobs = static_cast<int>(*v);
    }
  } else if (auto v = get_int(body, "logprobs")) {
    if (*v < 0 || *v > 20) throw bad_param("logprobs", "'logprobs' must be in [0, 20]");
    g.logprobs = true;
    g.top_logprobs = static_cast<int>(*v);
  }
  s.logprobs = g.logprobs ? g.top_logprobs : -1;
  return g;
}

void check_object(const Json& body) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_type");
}

// messages, tools, chat_template_kwargs, add_generation_prompt (shared by chat and /tokenize).
void parse_chat_input(const Json& body, ChatRequest& r) {
  const Json* m = field(body, "messages");
  if (!m) throw bad_param("messages", "'messages' is required", "missing_required_parameter");
  if (!m->is_array()) throw wrong_type("messages", "a list", *m);
  if (m->empty()) throw bad_param("messages", "'messages' must not be empty");
  for (std::size_t i = 0; i < m->size(); ++i) {
    const Json& msg = (*m)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) throw bad_param("messages", where + " must be an object", "invalid_type");
    if (!msg.contains("role") || !msg["role"].is_string())
      throw bad_param("messages", where + ".role must be a string", "invalid_type");
    const std::string role = msg["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
      throw bad_param("messages", where + ".role '" + role + "' is not one of system, user, assistant, tool, developer");
    if (msg.contains("content")) {
      const Json& c = msg["content"];
      if (!c.is_string() && !c.is_array() && !c.is_null())
        throw bad_param("messages", where + ".content must be a string or a list of content parts", "invalid_type");
    } else if (role != "assistant") {
      throw bad_param("messages", where + ".content is required", "missing_required_parameter");
    }
  }
  r.messages = *m;
  if (const Json* t = field(body, "tools")) {
    if (!t->is_array()) throw wrong_type("tools", "a list", *t);
    for (const Json& tool : *t) {
      if (!tool.is_object() || !tool.contains("function") || !tool["function"].is_object() ||
          !tool["function"].contains("name") || !tool["function"]["name"].is_string())
        throw bad_param("tools", "each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}", "invalid_type");
      if (tool.contains("type") && tool["type"] != "function")
        throw bad_param("tools", "only tools of type 'function' are supported");
    }
    if (!t->empty()) r.tools = *t;
  }
  if (const Json* k = field(body, "chat_template_kwargs")) {
    if (!k->is_object()) throw wrong_type("chat_template_kwargs", "an object", *k);
    r.chat_template_kwargs = *k;
  }
  r.add_generation_prompt = get_bool(body, "add_generation_prompt").value_or(true);
}

}  // namespace

Json error_body(int status, const std::string& message, const std::string& param, const std::string& code) {
  const char* type = status == 401 ? "authentication_error"
                     : status == 503 ? "service_unavailable_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  Json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return Json{{"error", e}};
}

ApiError renamed(const ApiError& e, const std::string& from, const std::string& to) {
  if (e.param() != from) return e;
  std::string msg = e.what();
  const std::string quoted = "'" + from + "'";
  for (std::size_t at = msg.find(quoted); at != std::string::npos; at = msg.find(quoted, at + to.size() + 2))
    msg.replace(at, quoted.size(), "'" + to + "'");
  return ApiError(e.status(), msg, to, e.code());
}

Json parse_body(const std::string& body) {
  // Bound the nesting before parsing so hostile input cannot exhaust the stack anywhere
  // that walks the tree recursively (dump, the template's tojson).
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) throw ApiError(400, "the request body nests deeper than 64 levels", "", "invalid_json");
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON", "", "invalid_json");
  return j;
}

ChatRequest parse_chat_request(const Json& body) {
  check_object(body);
  refuse_unsupported(body);
  ChatRequest r;
  r.model = get_model(body);
  parse_chat_input(body, r);
  r.gen = parse_generation(body, true);
  r.include_reasoning = get_bool(body, "include_reasoning").value_or(true);
  r.parallel_tool_calls = get_bool(body, "parallel_tool_calls").value_or(true);
  if (const Json* e = field(body, "reasoning_effort")) {
    if (!e->is_string()) throw wrong_type("reasoning_effort", "a string", *e);
    const std::string v = e->get<std::string>();
    if (v == "low") r.gen.reasoning_budget = 1024;
    else if (v == "medium") r.gen.reasoning_budget = 8192;
    else if (v != "high") throw bad_param("reasoning_effort", "'reasoning_effort' must be low, medium or high");
  }
  const auto kw = r.chat_template_kwargs.find("reasoning_budget");
  if (kw != r.chat_template_kwargs.end() && !kw->is_null()) {
    if (!kw->is_number_integer() || kw->get<int64_t>() < 0)
      throw bad_param("chat_template_kwargs", "'chat_template_kwargs.reasoning_budget' must be a non-negative integer");
    r.gen.reasoning_budget = kw->get<int64_t>();
  }
  if (auto v = get_int(body, "thinking_token_budget")) {
    if (*v < 0) throw bad_param("thinking_token_budget", "'thinking_token_budget' must be a non-negative integer");
    r.gen.reasoning_budget = *v;
  }
  if (field(body, "functions") || field(body, "function_call"))
    throw bad_param("functions", "the legacy 'functions' / 'function_call' fields are not supported; use 'tools'",
                    "unsupported_parameter");
  if (const Json* tc = field(body, "tool_choice")) {
    if (tc->is_string()) {
      const std::string s = tc->get<std::string>();
      if (s == "auto") r.tool_choice = ToolChoice::kAuto;
      else if (s == "none") r.tool_choice = ToolChoice::kNone;
      else if (s == "required") r.tool_choice = ToolChoice::kRequired;
      else throw bad_param("tool_choice", "'tool_choice' must be auto, none, required or a named function");
    } else if (tc->is_object()) {
      const Json* fn = field(*tc, "function");
      if (!fn || !fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string())
        throw bad_param("tool_choice", "a named 'tool_choice' must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                        "invalid_type");
      r.tool_choice = ToolChoice::kNamed;
      r.tool_choice_name = (*fn)["name"].get<std::string>();
    } else {
      throw wrong_type("tool_choice", "a string or an object", *tc);
    }
    if (r.tool_choice != ToolChoice::kNone && r.tool_choice != ToolChoice::kAuto && r.tools.is_null())
      throw bad_param("tool_choice", "'tool_choice' " + std::string(r.tool_choice == ToolChoice::kRequired ? "required" : "named") +
                                         " needs 'tools'");
    if (r.tool_choice == ToolChoice::kNamed) {
      bool found = false;
      for (const Json& t : r.tools) found = found || t["function"]["name"] == r.tool_choice_name;
      if (!found) throw bad_param("tool_choice", "'tool_choice' names function '" + r.tool_choice_name + "', which is not in 'tools'");
    }
  }
  return r;
}

CompletionRequest parse_completion_request(const Json& body) {
  check_object(body);
  refuse_unsupported(body);
  CompletionRequest r;
  r.model = get_model(body);
  const Json* p = field(body, "prompt");
  if (!p) throw bad_param("prompt", "'prompt' is required", "missing_required_parameter");
  const Json* one = p;
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    if (p->size() != 1) throw bad_param("prompt", "only one prompt per request is supported", "unsupported_parameter");
    one = &p->front();
  }
  if (one->is_string()) {
    r.prompt_text = one->get<std::string>();
    if (r.prompt_text.empty()) throw bad_param("prompt", "'prompt' must not be empty");
  } else if (one->is_array()) {
    r.prompt_is_ids = true;
    r.prompt_ids = get_token_list(*one, "prompt");
    if (r.prompt_ids.empty()) throw bad_param("prompt", "'prompt' must not be empty");
  } else {
    throw wrong_type("prompt", "a string or a list of token ids", *p);
  }
  if (field(body, "suffix")) throw bad_param("suffix", "'suffix' is not supported", "unsupported_parameter");
  r.echo = get_bool(body, "echo").value_or(false);
  r.gen = parse_generation(body, false);
  return r;
}

TokenizeRequest parse_tokenize_request(const Json& body) {
  check_object(body);
  TokenizeRequest r;
  r.model = get_model(body);
  if (field(body, "messages")) {
    r.is_chat = true;
    parse_chat_input(body, r.chat);
    r.add_special_tokens = false;
  } else if (const Json* p = field(body, "prompt")) {
    if (!p->is_string()) throw wrong_type("prompt", "a string", *p);
    r.prompt = p->get<std::string>();
  } else {
    throw bad_param("prompt", "'prompt' or 'messages' is required", "missing_required_parameter");
  }
  if (auto v = get_bool(body, "add_special_tokens")) r.add_special_tokens = *v;
  r.return_token_strs = get_bool(body, "return_token_strs").value_or(false);
  return r;
}

DetokenizeRequest parse_detokenize_request(const Json& body) {
  check_object(body);
  DetokenizeRequest r;
  r.model = get_model(body);
  const Json* t = field(body, "tokens");
  if (!t) throw bad_param("tokens", "'tokens' is required", "missing_required_parameter");
  r.tokens = get_token_list(*t, "tokens");
  return r;
}

}  // namespace nemotron::server
