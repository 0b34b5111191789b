// The Anthropic Messages API layer (server/anthropic.h): request parsing and conversion to the
// chat request (every error names the field), error bodies, stop reasons, and the response /
// SSE formatting of a reply fed through the real output pipeline (demo tokenizer) from a known
// tool-call text -- streamed blocks, accumulated as a client does, equal the whole message.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "server/anthropic.h"
#include "server/output_pipeline.h"
#include "text/tokenizer/tokenizer.h"

namespace nemotron::server {
namespace {

Json j(const char* s) { return Json::parse(s); }

// A request body with `extra` merged over {max_tokens: 16, messages: [user "hi"]}.
Json body(const char* extra = "{}") {
  Json b = j(R"({"model":"demo","max_tokens":16,"messages":[{"role":"user","content":"hi"}]})");
  b.update(j(extra));
  return b;
}

// The field an ApiError names ("<no error>" when parsing succeeds).
std::string error_param(const Json& b, bool count_tokens = false, std::string* message = nullptr) {
  try {
    parse_messages_request(b, count_tokens);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    if (message) *message = e.what();
    return e.param().empty() ? "<none>" : e.param();
  }
  return "<no error>";
}

TEST(AnthropicRequest, Minimal) {
  const MessagesRequest r = parse_messages_request(body());
  EXPECT_EQ(r.chat.model, "demo");
  EXPECT_EQ(r.chat.messages, j(R"([{"role":"user","content":"hi"}])"));
  EXPECT_EQ(r.chat.gen.max_tokens.value(), 16);
  EXPECT_TRUE(r.chat.add_generation_prompt);
  EXPECT_FALSE(r.prefill);
  EXPECT_TRUE(r.chat.tools.is_null());
  EXPECT_EQ(r.chat.tool_choice, ToolChoice::kAuto);
  EXPECT_FALSE(r.chat.gen.stream);
  EXPECT_FALSE(r.chat.gen.given.temperature);
  EXPECT_EQ(r.chat.gen.n, 1);
  EXPECT_TRUE(r.chat.chat_template_kwargs.empty());  // thinking absent: the template's default
}

TEST(AnthropicRequest, RequiredFieldsAndTypes) {
  Json b = body();
  b.erase("max_tokens");
  EXPECT_EQ(error_param(b), "max_tokens");
  EXPECT_EQ(error_param(b, true), "<no error>");  // count_tokens needs no max_tokens
  EXPECT_EQ(error_param(body(R"({"max_tokens":0})")), "max_tokens");
  EXPECT_EQ(error_param(body(R"({"max_tokens":1.5})")), "max_tokens");
  b = body();
  b.erase("messages");
  EXPECT_EQ(error_param(b), "messages");
  EXPECT_EQ(error_param(body(R"({"messages":[]})")), "messages");
  EXPECT_EQ(error_param(body(R"({"messages":"hi"})")), "messages");
  EXPECT_EQ(error_param(body(R"({"model":5})")), "model");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"system","content":"x"}]})")), "messages[0].role");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user"}]})")), "messages[0].content");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":""}]})")), "messages[0].content");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":7}]})")), "messages[0].content");
  EXPECT_EQ(error_param(Json::array()), "<none>");
}

TEST(AnthropicRequest, Sampling) {
  const MessagesRequest r = parse_messages_request(
      body(R"({"temperature":0,"top_p":0.5,"top_k":40,"stop_sequences":["END","\n\n"],"stream":true,
               "metadata":{"user_id":"u1"},"service_tier":"auto"})"));
  EXPECT_FLOAT_EQ(r.chat.gen.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.chat.gen.sampling.top_p, 0.5f);
  EXPECT_EQ(r.chat.gen.sampling.top_k, 40);
  EXPECT_TRUE(r.chat.gen.given.temperature && r.chat.gen.given.top_p && r.chat.gen.given.top_k);
  EXPECT_EQ(r.chat.gen.stop, (std::vector<std::string>{"END", "\n\n"}));
  EXPECT_TRUE(r.chat.gen.stream);
  EXPECT_EQ(error_param(body(R"({"temperature":1.5})")), "temperature");
  EXPECT_EQ(error_param(body(R"({"temperature":"hot"})")), "temperature");
  EXPECT_EQ(error_param(body(R"({"top_p":0})")), "top_p");
  EXPECT_EQ(error_param(body(R"({"top_k":-1})")), "top_k");
  EXPECT_EQ(error_param(body(R"({"stop_sequences":"END"})")), "stop_sequences");
  EXPECT_EQ(error_param(body(R"({"stop_sequences":["a",""]})")), "stop_sequences[1]");
  EXPECT_EQ(error_param(body(R"({"stop_sequences":["a",3]})")), "stop_sequences[1]");
  EXPECT_EQ(error_param(body(R"({"stream":"yes"})")), "stream");
  EXPECT_EQ(error_param(body(R"({"metadata":"x"})")), "metadata");
}

TEST(AnthropicRequest, SystemStringAndBlocks) {
  MessagesRequest r = parse_messages_request(body(R"({"system":"Be brief."})"));
  EXPECT_EQ(r.chat.messages[0], j(R"({"role":"system","content":"Be brief."})"));
  r = parse_messages_request(body(
      R"({"system":[{"type":"text","text":"A"},{"type":"text","text":"B","cache_control":{"type":"ephemeral"}}]})"));
  EXPECT_EQ(r.chat.messages[0],
            j(R"({"role":"system","content":[{"type":"text","text":"A"},{"type":"text","text":"B"}]})"));
  EXPECT_EQ(r.chat.messages.size(), 2u);
  r = parse_messages_request(body(R"({"system":""})"));
  EXPECT_EQ(r.chat.messages.size(), 1u);
  EXPECT_EQ(error_param(body(R"({"system":[{"type":"image","source":{}}]})")), "system[0].type");
  EXPECT_EQ(error_param(body(R"({"system":[{"type":"text"}]})")), "system[0].text");
  EXPECT_EQ(error_param(body(R"({"system":5})")), "system");
}

TEST(AnthropicRequest, BlocksBecomeChatMessages) {
  const MessagesRequest r = parse_messages_request(body(R"({"messages":[
      {"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"text","text":"In Paris."}]},
      {"role":"assistant","content":[{"type":"thinking","thinking":"Use the tool.","signature":"sig"},
                                     {"type":"redacted_thinking","data":"xyz"},
                                     {"type":"text","text":"Checking."},
                                     {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}},
                                     {"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"Sunny"},
                                {"type":"tool_result","tool_use_id":"toolu_2","is_error":true,
                                 "content":[{"type":"text","text":"no"},{"type":"text","text":"clock"}]},
                                {"type":"text","text":"Thanks"}]}]})"));
  const Json want = j(R"([
      {"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"text","text":"In Paris."}]},
      {"role":"assistant","content":"Checking.","reasoning_content":"Use the tool.","tool_calls":[
          {"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}},
          {"id":"toolu_2","type":"function","function":{"name":"get_time","arguments":{}}}]},
      {"role":"tool","tool_call_id":"toolu_1","content":"Sunny"},
      {"role":"tool","tool_call_id":"toolu_2","content":"Error: no\nclock"},
      {"role":"user","content":[{"type":"text","text":"Thanks"}]}])");
  EXPECT_EQ(r.chat.messages, want) << r.chat.messages.dump(1);
  EXPECT_FALSE(r.prefill);
}

TEST(AnthropicRequest, BadBlocksNameTheirPlace) {
  std::string msg;
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":[{"type":"text","text":"x"},
      {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]})"), false, &msg),
            "messages[0].content[1].type");
  EXPECT_NE(msg.find("text only"), std::string::npos) << msg;
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]})")),
            "messages[0].content[0].type");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"f",
      "input":{}}]}]})")), "messages[0].content[0].type");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})")),
            "messages[0].content[0].text");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":[{"text":"x"}]}]})")),
            "messages[0].content[0].type");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":["x"]}]})")), "messages[0].content[0]");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":[{"type":"bogus"}]}]})")),
            "messages[0].content[0].type");
  // tool_result: names an earlier tool_use; text-only content.
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x",
      "content":"r"}]}]})")), "messages[0].content[0].tool_use_id");
  const char* with_call = R"({"messages":[
      {"role":"user","content":"go"},
      {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"image","source":{}}]}]}]})";
  EXPECT_EQ(error_param(body(with_call)), "messages[2].content[0].content[0].type");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":"go"},
      {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":"{}"}]},
      {"role":"user","content":"ok"}]})")), "messages[1].content[0].input");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":"go"},
      {"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]},
      {"role":"user","content":"ok"}]})")), "messages[1].content[0].id");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":"go"},
      {"role":"assistant","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]},
      {"role":"user","content":"ok"}]})")), "messages[1].content[0].type");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":"go"},
      {"role":"assistant","content":[{"type":"thinking"}]},{"role":"user","content":"ok"}]})")),
            "messages[1].content[0].thinking");
}

TEST(AnthropicRequest, FinalAssistantMessageIsAPrefill) {
  MessagesRequest r = parse_messages_request(body(R"({"messages":[{"role":"user","content":"Count"},
      {"role":"assistant","content":"  One, two,"}]})"));
  EXPECT_TRUE(r.prefill);
  EXPECT_FALSE(r.chat.add_generation_prompt);
  EXPECT_EQ(r.prefill_text, "One, two,");
  EXPECT_EQ(r.chat.messages.back(), j(R"({"role":"assistant","content":"  One, two,"})"));
  // An empty final assistant turn is dropped: a normal request.
  r = parse_messages_request(body(R"({"messages":[{"role":"user","content":"Count"},
      {"role":"assistant","content":[]}]})"));
  EXPECT_FALSE(r.prefill);
  EXPECT_TRUE(r.chat.add_generation_prompt);
  EXPECT_EQ(r.chat.messages.size(), 1u);
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":"Count"},
      {"role":"assistant","content":"One "}]})")), "messages[1].content");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":"Count"},
      {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}]})")),
            "messages[1].content");
  EXPECT_EQ(error_param(body(R"({"messages":[{"role":"user","content":"Count"},
      {"role":"assistant","content":[{"type":"thinking","thinking":"hm"}]}]})")), "messages[1].content");
}

TEST(AnthropicRequest, ToolsAndToolChoice) {
  const char* tools = R"({"tools":[{"name":"get_weather","description":"Weather.","input_schema":
      {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"cache_control":{"type":"ephemeral"}},
      {"type":"custom","name":"get_time","input_schema":{"type":"object"}}]})";
  MessagesRequest r = parse_messages_request(body(tools));
  EXPECT_EQ(r.chat.tools, j(R"([
      {"type":"function","function":{"name":"get_weather","description":"Weather.","parameters":
          {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
      {"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}])"));
  EXPECT_TRUE(r.chat.parallel_tool_calls);
  auto with_choice = [&](const char* choice) {
    Json b = body(tools);
    b["tool_choice"] = j(choice);
    return b;
  };
  EXPECT_EQ(parse_messages_request(with_choice(R"({"type":"auto"})")).chat.tool_choice, ToolChoice::kAuto);
  EXPECT_EQ(parse_messages_request(with_choice(R"({"type":"none"})")).chat.tool_choice, ToolChoice::kNone);
  EXPECT_EQ(parse_messages_request(with_choice(R"({"type":"any"})")).chat.tool_choice, ToolChoice::kRequired);
  r = parse_messages_request(with_choice(R"({"type":"tool","name":"get_time","disable_parallel_tool_use":true})"));
  EXPECT_EQ(r.chat.tool_choice, ToolChoice::kNamed);
  EXPECT_EQ(r.chat.tool_choice_name, "get_time");
  EXPECT_FALSE(r.chat.parallel_tool_calls);
  EXPECT_EQ(error_param(with_choice(R"({"type":"tool","name":"nope"})")), "tool_choice.name");
  EXPECT_EQ(error_param(with_choice(R"({"type":"tool"})")), "tool_choice.name");
  EXPECT_EQ(error_param(with_choice(R"({"type":"required"})")), "tool_choice.type");
  EXPECT_EQ(error_param(with_choice(R"("auto")")), "tool_choice");
  EXPECT_EQ(error_param(with_choice(R"({"type":"auto","disable_parallel_tool_use":1})")),
            "tool_choice.disable_parallel_tool_use");
  EXPECT_EQ(error_param(body(R"({"tool_choice":{"type":"any"}})")), "tool_choice");
  EXPECT_EQ(error_param(body(R"({"tools":[{"type":"web_search_20250305","name":"web_search"}]})")), "tools[0].type");
  EXPECT_EQ(error_param(body(R"({"tools":[{"name":"f"}]})")), "tools[0].input_schema");
  EXPECT_EQ(error_param(body(R"({"tools":[{"name":"f","input_schema":"{}"}]})")), "tools[0].input_schema");
  EXPECT_EQ(error_param(body(R"({"tools":[{"name":"a b","input_schema":{}}]})")), "tools[0].name");
  EXPECT_EQ(error_param(body(R"({"tools":[{"name":"f","input_schema":{}},{"name":"f","input_schema":{}}]})")),
            "tools[1].name");
  EXPECT_EQ(error_param(body(R"({"tools":{"name":"f"}})")), "tools");
}

TEST(AnthropicRequest, Thinking) {
  MessagesRequest r = parse_messages_request(body(R"({"thinking":{"type":"enabled","budget_tokens":2048}})"));
  EXPECT_EQ(r.chat.chat_template_kwargs, j(R"({"enable_thinking":true})"));
  EXPECT_EQ(r.thinking_budget.value(), 2048);
  EXPECT_TRUE(r.chat.include_reasoning);
  r = parse_messages_request(body(R"({"thinking":{"type":"disabled"},"chat_template_kwargs":{"low_effort":true}})"));
  EXPECT_EQ(r.chat.chat_template_kwargs["enable_thinking"], false);
  EXPECT_EQ(r.chat.chat_template_kwargs["low_effort"], true);
  EXPECT_FALSE(r.thinking_budget.has_value());
  r = parse_messages_request(body(R"({"thinking":{"type":"adaptive","display":"omitted"}})"));
  EXPECT_EQ(r.chat.chat_template_kwargs, j(R"({"enable_thinking":true})"));
  EXPECT_FALSE(r.chat.include_reasoning);
  EXPECT_EQ(error_param(body(R"({"thinking":{"type":"enabled"}})")), "thinking.budget_tokens");
  EXPECT_EQ(error_param(body(R"({"thinking":{"type":"enabled","budget_tokens":0}})")), "thinking.budget_tokens");
  EXPECT_EQ(error_param(body(R"({"thinking":{"type":"on"}})")), "thinking.type");
  EXPECT_EQ(error_param(body(R"({"thinking":{}})")), "thinking.type");
  EXPECT_EQ(error_param(body(R"({"thinking":true})")), "thinking");
  EXPECT_EQ(error_param(body(R"({"thinking":{"type":"adaptive","display":"full"}})")), "thinking.display");
}

TEST(AnthropicRequest, StructuredOutputFormat) {
  auto r = parse_messages_request(body(R"({"output_format":{"type":"json_schema","schema":{"type":"object"}}})"));
  EXPECT_EQ(r.chat.gen.structured.kind, StructuredOutput::Kind::kJsonSchema);
  EXPECT_EQ(r.chat.gen.structured.schema, j(R"({"type":"object"})"));
  EXPECT_EQ(r.chat.gen.structured.param, "output_format");
  r = parse_messages_request(body(R"({"output_config":{"format":{"type":"json_schema","schema":{}}}})"));
  EXPECT_EQ(r.chat.gen.structured.param, "output_config.format");
  EXPECT_EQ(error_param(body(R"({"output_format":{"type":"text","schema":{}}})")), "output_format.type");
  EXPECT_EQ(error_param(body(R"({"output_format":{"type":"json_schema"}})")), "output_format.schema");
  EXPECT_EQ(error_param(body(R"({"output_format":"json"})")), "output_format");
  EXPECT_EQ(error_param(body(R"({"output_format":{"type":"json_schema","schema":{}},)"
                             R"("output_config":{"format":{"type":"json_schema","schema":{}}}})")),
            "output_config.format");
}

TEST(AnthropicRequest, UnsupportedFieldsAreRefused) {
  EXPECT_EQ(error_param(body(R"({"output_config":{"effort":"low"}})")), "<no error>");
  EXPECT_EQ(error_param(body(R"({"mcp_servers":[{"type":"url","url":"x","name":"m"}]})")), "mcp_servers");
  EXPECT_EQ(error_param(body(R"({"container":"c1"})")), "container");
  // Unknown fields are ignored, as in chat requests.
  EXPECT_EQ(error_param(body(R"({"cache_control":{"type":"ephemeral"},"speed":"standard","inference_geo":"x"})")),
            "<no error>");
}

TEST(AnthropicFormat, ErrorBodies) {
  EXPECT_EQ(anthropic_error_body(bad_param("max_tokens", "Field required")),
            j(R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}})"));
  EXPECT_EQ(anthropic_error_body(ApiError(401, "Incorrect API key provided"))["error"]["type"], "authentication_error");
  EXPECT_EQ(anthropic_error_body(404, "x", "model")["error"]["message"], "model: x");
  EXPECT_EQ(anthropic_error_body(400, "model: x", "model")["error"]["message"], "model: x");
  EXPECT_STREQ(anthropic_error_type(400), "invalid_request_error");
  EXPECT_STREQ(anthropic_error_type(404), "not_found_error");
  EXPECT_STREQ(anthropic_error_type(405), "invalid_request_error");
  EXPECT_STREQ(anthropic_error_type(413), "request_too_large");
  EXPECT_STREQ(anthropic_error_type(500), "api_error");
  EXPECT_STREQ(anthropic_error_type(503), "overloaded_error");
  EXPECT_STREQ(anthropic_error_type(529), "overloaded_error");
}

TEST(AnthropicFormat, StopReasonsAndUsage) {
  Json seq;
  EXPECT_EQ(anthropic_stop_reason("stop", nullptr, seq), "end_turn");
  EXPECT_TRUE(seq.is_null());
  EXPECT_EQ(anthropic_stop_reason("stop", 42, seq), "end_turn");  // a stop token id
  EXPECT_EQ(anthropic_stop_reason("stop", "END", seq), "stop_sequence");
  EXPECT_EQ(seq, "END");
  EXPECT_EQ(anthropic_stop_reason("length", nullptr, seq), "max_tokens");
  EXPECT_EQ(anthropic_stop_reason("tool_calls", nullptr, seq), "tool_use");
  EXPECT_EQ(anthropic_usage_json({100, 64, 7}),
            j(R"({"input_tokens":36,"output_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":64})"));
}

// --- a reply through the real output pipeline ---------------------------------------------

const text::Tokenizer& tok() {
  static const text::Tokenizer t = text::Tokenizer::load(std::string(NEMOTRON_SOURCE_DIR) + "/models/demo");
  return t;
}

struct SseEvent {
  std::string name;
  Json data;
};

std::vector<SseEvent> parse_sse(const std::string& text) {
  std::vector<SseEvent> out;
  std::istringstream in(text);
  std::string line;
  SseEvent ev;
  while (std::getline(in, line)) {
    if (line.rfind("event: ", 0) == 0) ev.name = line.substr(7);
    else if (line.rfind("data: ", 0) == 0) ev.data = Json::parse(line.substr(6));
    else if (line.empty() && !ev.name.empty()) {
      out.push_back(ev);
      ev = SseEvent{};
    }
  }
  return out;
}

// What a client does with the stream (the SDK's accumulation): the message's content blocks.
Json accumulate(const std::vector<SseEvent>& events) {
  Json content = Json::array();
  std::vector<std::string> json_bufs;
  for (const auto& e : events) {
    EXPECT_EQ(e.name, e.data["type"].get<std::string>());
    if (e.name == "content_block_start") {
      EXPECT_EQ(e.data["index"], content.size());
      content.push_back(e.data["content_block"]);
      json_bufs.emplace_back();
    } else if (e.name == "content_block_delta") {
      const std::size_t i = e.data["index"].get<std::size_t>();
      EXPECT_EQ(i + 1, content.size()) << "deltas go to the open (last) block";
      const Json& d = e.data["delta"];
      if (d["type"] == "text_delta") content[i]["text"] = content[i]["text"].get<std::string>() + d["text"].get<std::string>();
      if (d["type"] == "thinking_delta")
        content[i]["thinking"] = content[i]["thinking"].get<std::string>() + d["thinking"].get<std::string>();
      if (d["type"] == "input_json_delta") {
        json_bufs[i] += d["partial_json"].get<std::string>();
        content[i]["input"] = Json::parse(json_bufs[i], nullptr, false);
      }
    }
  }
  return content;
}

TEST(AnthropicFormat, KnownToolCallReplyStreamsAsItIsReturned) {
  const std::string reply =
      "I should look it up.\n</think>\nLet me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
      "Paris\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
      "<function=get_time>\n</function>\n</tool_call>";
  PipelineOptions o;
  o.chat = true;
  o.parser.thinking_enabled = true;  // the prompt ended in "<think>\n"
  o.parser.tools = Json::parse(R"([
      {"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
          "properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}},
      {"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}])");
  int next_id = 0;
  o.parser.make_tool_call_id = [&] { return "toolu_" + std::to_string(next_id++); };
  const int32_t eos = tok().token_to_id("<|im_end|>");
  o.eos_ids = {eos};
  for (const char* t : {"<think>", "</think>", "<tool_call>", "</tool_call>"}) o.keep_special_ids.push_back(tok().token_to_id(t));
  OutputPipeline p(tok(), o);
  std::vector<int32_t> ids = tok().encode(reply);
  ids.push_back(eos);

  AnthropicBlockStream blocks;
  std::string sse = anthropic_message_start("msg_1", "demo", {20, 0, 0});
  for (std::size_t i = 0; i < ids.size(); ++i) {
    runtime::TokenEvent ev;
    ev.token = ids[i];
    ev.finished = i + 1 == ids.size();
    ev.reason = ev.finished ? runtime::FinishReason::Stop : runtime::FinishReason::None;
    sse += blocks.push(p.push(ev).events);
  }
  ASSERT_TRUE(p.done());
  sse += blocks.close();
  Json stop_sequence;
  const std::string stop_reason = anthropic_stop_reason(p.finish_reason(), p.stop_reason(), stop_sequence);
  EXPECT_EQ(stop_reason, "tool_use");
  const AnthropicUsage usage{20, 0, static_cast<int64_t>(ids.size())};
  sse += anthropic_message_end(stop_reason, stop_sequence, usage);

  // The whole message.
  const Json content = anthropic_content(p.result());
  EXPECT_EQ(content, j(R"([
      {"type":"thinking","thinking":"I should look it up.","signature":""},
      {"type":"text","text":"Let me check.\n"},
      {"type":"tool_use","id":"toolu_0","name":"get_weather","input":{"city":"Paris","days":3}},
      {"type":"tool_use","id":"toolu_1","name":"get_time","input":{}}])")) << content.dump(1);
  const Json message = anthropic_message("msg_1", "demo", content, stop_reason, stop_sequence, usage);
  EXPECT_EQ(message["type"], "message");
  EXPECT_EQ(message["role"], "assistant");
  EXPECT_EQ(message["stop_reason"], "tool_use");
  EXPECT_TRUE(message["stop_sequence"].is_null());
  EXPECT_EQ(message["usage"]["output_tokens"], ids.size());
  EXPECT_EQ(anthropic_content(p.result(), false).size(), 3u);  // thinking.display "omitted"

  // The stream: Anthropic's order, and its blocks accumulate to the same content.
  const std::vector<SseEvent> events = parse_sse(sse);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front().name, "message_start");
  EXPECT_EQ(events.front().data["message"]["content"], Json::array());
  EXPECT_TRUE(events.front().data["message"]["stop_reason"].is_null());
  EXPECT_EQ(events[events.size() - 2].name, "message_delta");
  EXPECT_EQ(events[events.size() - 2].data["delta"]["stop_reason"], "tool_use");
  EXPECT_EQ(events[events.size() - 2].data["usage"]["output_tokens"], ids.size());
  EXPECT_EQ(events.back().name, "message_stop");
  std::string order;  // one letter per event between message_start and message_delta
  for (std::size_t i = 1; i + 2 < events.size(); ++i)
    order += events[i].name == "content_block_start" ? 'S' : events[i].name == "content_block_stop" ? 'E' : 'd';
  for (std::size_t i = 0; i + 1 < order.size(); ++i)
    if (order[i] == 'E') {
      EXPECT_EQ(order[i + 1], 'S') << order;  // nothing between blocks
    }
  EXPECT_EQ(std::count(order.begin(), order.end(), 'S'), 4) << order;
  EXPECT_EQ(std::count(order.begin(), order.end(), 'E'), 4) << order;
  EXPECT_EQ(accumulate(events), content);

  // The same events without thinking blocks: indices still start at 0.
  AnthropicBlockStream no_thinking(false);
  std::vector<text::OutputEvent> evs(2);
  evs[0].kind = text::OutputEvent::Kind::kReasoning;
  evs[0].text = "hidden";
  evs[1].kind = text::OutputEvent::Kind::kContent;
  evs[1].text = "shown";
  std::string hidden_sse = no_thinking.push(evs);
  hidden_sse += no_thinking.close();
  const auto hidden = parse_sse(hidden_sse);
  ASSERT_EQ(hidden.size(), 3u) << no_thinking.blocks();
  EXPECT_EQ(hidden[0].data, j(R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"));
  EXPECT_EQ(hidden[1].data["delta"], j(R"({"type":"text_delta","text":"shown"})"));
}

TEST(AnthropicFormat, SseLines) {
  EXPECT_EQ(anthropic_sse("ping", {{"type", "ping"}}), "event: ping\ndata: {\"type\":\"ping\"}\n\n");
  const auto start = parse_sse(anthropic_message_start("msg_x", "demo", {10, 4, 1}));
  ASSERT_EQ(start.size(), 1u);
  EXPECT_EQ(start[0].data["message"]["usage"],
            j(R"({"input_tokens":6,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":4})"));
  EXPECT_EQ(start[0].data["message"]["id"], "msg_x");
  const auto end = parse_sse(anthropic_message_end("stop_sequence", "END", {10, 0, 3}));
  ASSERT_EQ(end.size(), 2u);
  EXPECT_EQ(end[0].data["delta"], j(R"({"stop_reason":"stop_sequence","stop_sequence":"END"})"));
  EXPECT_EQ(end[1].data, j(R"({"type":"message_stop"})"));
}

}  // namespace
}  // namespace nemotron::server
