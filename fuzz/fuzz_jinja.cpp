// The Jinja lexer, parser and renderer (text/jinja/) on a template from the input: tokenize,
// parse into a ChatTemplate, and render it with a fixed chat context (messages with content
// parts, tool calls and reasoning, tools, kwargs), under small render limits so that every
// input runs quickly. Anything else than output must be a nemotron::Error.
#include "fuzz_common.h"
#include "text/jinja/chat_template.h"
#include "text/jinja/jinja_lexer.h"
#include "text/jinja/jinja_parser.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::text;

namespace {

const char* kMessages = R"([
  {"role": "system", "content": "You are helpful."},
  {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
  {"role": "assistant", "content": "", "reasoning_content": "think",
   "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{\"x\": [1, 2.5, null, true], \"y\": \"s\"}"}}]},
  {"role": "tool", "tool_call_id": "call_0", "content": "{\"ok\": 1}"},
  {"role": "user", "content": "Ünïcødé 😀 <think>"}])";

const char* kTools = R"([{"type": "function", "function": {"name": "f", "description": "d",
  "parameters": {"type": "object", "properties": {"x": {"type": "array"}, "y": {"type": "string", "enum": ["s", "t"]}},
  "required": ["x"]}}}])";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  static const Json messages = Json::parse(kMessages), tools = Json::parse(kTools);
  try {
    (void)jinja::tokenize(source);
  } catch (const Error&) {
  }
  try {
    const ChatTemplate t(source);
    ChatTemplateOptions o;
    o.max_output_bytes = 64 << 10;
    o.max_steps = 20000;
    o.kwargs = {{"enable_thinking", size % 2 == 0}, {"reasoning_budget", 7}, {"custom", {{"a", {1, 2}}}}};
    (void)t.render(messages, tools, o);
    o.add_generation_prompt = false;
    (void)t.render(Json::array(), Json(), o);
  } catch (const Error&) {
  }
  return 0;
}
