// The real chat templates (data/chat_templates/*.jinja: Nano, Nano Omni, the 3.5 effort
// variant) rendered for a request body from the input, as `nemotron template --request`
// and the server's render_chat read it: {messages, tools, chat_template_kwargs,
// add_generation_prompt}. The message preprocessing (normalize_messages) and the renderer
// see arbitrary JSON shapes; anything else than a prompt must be a nemotron::Error. The body
// is read by the server's parse_body (nesting bounded at 64 levels, as for every request).
#include <filesystem>

#include "fuzz_common.h"
#include "server/api_error.h"
#include "server/request.h"
#include "text/jinja/chat_template.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::text;

namespace {

const std::vector<ChatTemplate>& templates() {
  static const std::vector<ChatTemplate> t = [] {
    std::vector<ChatTemplate> out;
    for (const char* name : {"nemotron3-nano-30b-a3b", "nemotron3-nano-omni", "nemotron3.5-effort-variant"})
      out.emplace_back(read_file(std::string(NEMOTRON_SOURCE_DIR "/data/chat_templates/") + name + ".chat_template.jinja"));
    return out;
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Json request;
  try {
    request = server::parse_body(text);
  } catch (const server::ApiError&) {
    return 0;
  }
  if (!request.is_object()) return 0;
  const Json messages = request.value("messages", Json());
  const Json tools = request.value("tools", Json());
  ChatTemplateOptions o;
  o.max_output_bytes = 256 << 10;
  o.max_steps = 200000;
  if (auto k = request.find("chat_template_kwargs"); k != request.end() && !k->is_null()) o.kwargs = *k;
  if (auto g = request.find("add_generation_prompt"); g != request.end() && g->is_boolean())
    o.add_generation_prompt = g->get<bool>();
  for (const ChatTemplate& t : templates()) {
    try {
      (void)t.render(messages, tools, o);
    } catch (const Error&) {
    }
  }
  return 0;
}
