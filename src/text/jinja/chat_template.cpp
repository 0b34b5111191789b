#include "text/jinja/chat_template.h"

#include "text/jinja/jinja_interpreter.h"
#include "util/error.h"

namespace nemotron::text {

namespace {

bool is_content_ref(const jinja::Expr& e) {
  if (e.kind == jinja::Expr::Kind::Attr) return e.name == "content";
  if (e.kind == jinja::Expr::Kind::Item && e.args[1]->kind == jinja::Expr::Kind::Const) {
    const auto& k = e.args[1]->value;
    return k.is_string() && k.str() == "content";
  }
  return false;
}

bool loops_over_content(const jinja::Body& body) {
  for (const auto& s : body) {
    if (s->kind == jinja::Stmt::Kind::For && is_content_ref(*s->expr)) return true;
    for (const auto& b : s->bodies)
      if (loops_over_content(b)) return true;
    if (loops_over_content(s->body) || loops_over_content(s->else_body)) return true;
  }
  return false;
}

std::string join_text_parts(const Json& parts, const std::string& where) {
  std::string out;
  bool first = true;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Json& p = parts[i];
    std::string at = where + ".content[" + std::to_string(i) + "]";
    if (!p.is_object()) throw Error(at + " must be an object");
    auto type = p.find("type");
    if (type == p.end() || !type->is_string()) throw Error(at + ".type must be a string");
    if (*type != "text")
      throw Error(at + ": content part type '" + type->get<std::string>() +
                  "' is not supported by this chat template (text only)");
    auto text = p.find("text");
    if (text == p.end() || !text->is_string()) throw Error(at + ".text must be a string");
    if (!first) out += "\n";
    first = false;
    out += text->get<std::string>();
  }
  return out;
}

}  // namespace

Json normalize_messages(const Json& messages, bool keep_content_parts) {
  if (!messages.is_array()) throw Error("messages must be an array");
  Json out = messages;
  for (std::size_t i = 0; i < out.size(); ++i) {
    Json& m = out[i];
    std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw Error(where + " must be an object");
    auto content = m.find("content");
    if (content != m.end() && content->is_array() && !keep_content_parts)
      *content = join_text_parts(*content, where);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string() || *role != "assistant") continue;
    if (m.contains("reasoning") && !m.contains("reasoning_content")) m["reasoning_content"] = m["reasoning"];
    auto calls = m.find("tool_calls");
    if (calls == m.end() || !calls->is_array()) continue;
    for (std::size_t j = 0; j < calls->size(); ++j) {
      Json& call = (*calls)[j];
      if (!call.is_object()) continue;
      auto fn = call.find("function");
      if (fn == call.end() || !fn->is_object()) continue;
      auto args = fn->find("arguments");
      std::string at = where + ".tool_calls[" + std::to_string(j) + "].function.arguments";
      if (args == fn->end() || args->is_null() || (args->is_string() && args->get<std::string>().empty())) {
        (*fn)["arguments"] = Json::object();
      } else if (args->is_string()) {
        *args = parse_json(args->get<std::string>(), at);
      }
    }
  }
  return out;
}

ChatTemplate::ChatTemplate(const std::string& source)
    : template_(std::make_unique<jinja::Template>(source)),
      iterates_content_(loops_over_content(template_->body())) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const Json& messages, const Json& tools,
                                 const ChatTemplateOptions& options) const {
  using jinja::Value;
  if (!tools.is_null() && !tools.is_array()) throw Error("tools must be an array");
  if (!options.kwargs.is_null() && !options.kwargs.is_object())
    throw Error("chat_template_kwargs must be an object");
  std::vector<std::pair<std::string, Value>> context;
  context.emplace_back("messages", Value::from_json(normalize_messages(messages, iterates_content_)));
  context.emplace_back("tools", Value::from_json(tools));
  context.emplace_back("documents", Value::none());
  context.emplace_back("add_generation_prompt", Value(options.add_generation_prompt));
  context.emplace_back("bos_token", Value(options.bos_token));
  context.emplace_back("eos_token", Value(options.eos_token));
  if (options.kwargs.is_object()) {
    for (auto it = options.kwargs.begin(); it != options.kwargs.end(); ++it) {
      for (const auto& [name, v] : context)
        if (name == it.key()) throw Error("chat_template_kwargs may not set '" + name + "'");
      context.emplace_back(it.key(), Value::from_json(it.value()));
    }
  }
  jinja::RenderLimits limits;
  limits.max_output_bytes = options.max_output_bytes;
  limits.max_steps = options.max_steps;
  return template_->render(context, limits);
}

std::string render_chat_template(const std::string& template_source, const Json& messages,
                                 const Json& tools, const ChatTemplateOptions& options) {
  return ChatTemplate(template_source).render(messages, tools, options);
}

}  // namespace nemotron::text
