// Tests of the OpenAI-request glue (src/text/chat_template.h): message preprocessing,
// context variables, errors, and the Nemotron templates' key layouts (serving doc §1.3).
#include <gtest/gtest.h>

#include <string>

#include "text/jinja/chat_template.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::text {
namespace {

std::string nano_template() { return read_file(std::string(NEMOTRON_SOURCE_DIR) + "/data/chat_templates/nemotron3-nano-30b-a3b.chat_template.jinja"); }

std::string error_of(const std::string& src, const Json& messages, const Json& tools = Json(),
                     const ChatTemplateOptions& options = {}) {
  try {
    render_chat_template(src, messages, tools, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ChatTemplateGlue, NormalizesArgumentsContentAndReasoning) {
  Json messages = Json::parse(R"([
    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    {"role": "assistant", "content": null, "reasoning": "R", "tool_calls": [
      {"type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}},
      {"type": "function", "function": {"name": "g", "arguments": ""}},
      {"type": "function", "function": {"name": "h"}}]}])");
  Json out = normalize_messages(messages, false);
  EXPECT_EQ(out[0]["content"], "a\nb");
  EXPECT_EQ(out[1]["reasoning_content"], "R");
  EXPECT_EQ(out[1]["tool_calls"][0]["function"]["arguments"], Json::parse(R"({"x": 1})"));
  EXPECT_EQ(out[1]["tool_calls"][1]["function"]["arguments"], Json::object());
  EXPECT_EQ(out[1]["tool_calls"][2]["function"]["arguments"], Json::object());
  EXPECT_TRUE(normalize_messages(messages, true)[0]["content"].is_array());
}

TEST(ChatTemplateGlue, ContextVariables) {
  ChatTemplateOptions o;
  o.kwargs = Json::parse(R"({"flag": true, "n": 2.5})");
  o.bos_token = "<B>";
  EXPECT_EQ(render_chat_template("{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ tools }}{{ documents }}"
                                 "{{ flag }}{{ n }}{{ messages|length }}",
                                 Json::array({Json{{"role", "user"}, {"content", "x"}}}), Json(), o),
            "<B></s>TrueNoneNoneTrue2.51");
  o.add_generation_prompt = false;
  EXPECT_EQ(render_chat_template("{{ add_generation_prompt }}{{ tools|length }}", Json::array(), Json::array(), o), "False0");
}

TEST(ChatTemplateGlue, Errors) {
  EXPECT_EQ(error_of("x", Json::object()), "messages must be an array");
  EXPECT_EQ(error_of("x", Json::array({1})), "messages[0] must be an object");
  EXPECT_EQ(error_of("x", Json::parse(R"([{"role": "user", "content": [{"type": "image_url"}]}])")),
            "messages[0].content[0]: content part type 'image_url' is not supported by this chat template (text only)");
  EXPECT_NE(error_of("x", Json::parse(R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}])"))
                .find("messages[0].tool_calls[0].function.arguments: invalid JSON"),
            std::string::npos);
  ChatTemplateOptions o;
  o.kwargs = Json::parse(R"({"messages": []})");
  EXPECT_EQ(error_of("x", Json::array(), Json(), o), "chat_template_kwargs may not set 'messages'");
  EXPECT_EQ(error_of("x", Json::array(), Json::object()), "tools must be an array");
  EXPECT_EQ(error_of(nano_template(), Json::array()), "template render error (line 23): list object has no element 0");
}

TEST(ChatTemplateNemotron, TurnLayout) {
  const std::string tpl = nano_template();
  Json msgs = Json::parse(R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", "reasoning_content": "think"},
                              {"role": "user", "content": "Bye"}])");
  EXPECT_EQ(render_chat_template(tpl, msgs, Json(), {}),
            "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think></think>\nYo<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n<think>\n");
  ChatTemplateOptions off;
  off.kwargs = Json::parse(R"({"enable_thinking": false, "truncate_history_thinking": false})");
  EXPECT_EQ(render_chat_template(tpl, msgs, Json(), off),
            "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nthink\n</think>\nYo<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n<think></think>");
  Json calls = Json::parse(R"([{"role": "user", "content": "w"}, {"role": "assistant", "content": "", "tool_calls": [
      {"type": "function", "function": {"name": "get", "arguments": "{\"city\": \"Paris\", \"n\": 2, \"ok\": true, \"l\": [1, \"é\"]}"}}]},
      {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"}])");
  EXPECT_EQ(render_chat_template(tpl, calls, Json(), {}),
            "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nw<|im_end|>\n<|im_start|>assistant\n<think></think>\n"
            "<tool_call>\n<function=get>\n<parameter=city>\nParis\n</parameter>\n<parameter=n>\n2\n</parameter>\n"
            "<parameter=ok>\nTrue\n</parameter>\n<parameter=l>\n[1, \"é\"]\n</parameter>\n</function>\n</tool_call>\n<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response>\n<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n");
}

}  // namespace
}  // namespace nemotron::text
