// The Responses API's pieces without a server: request parsing (the chat request it becomes,
// every bad field named), items <-> chat messages, the builder's output items and stream
// events from a real tool-call text through the output pipeline, and the store's bounds.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/output_pipeline.h"
#include "server/responses.h"
#include "text/tokenizer/tokenizer.h"

namespace nemotron::server {
namespace {

Json j(const char* s) { return Json::parse(s); }

std::string error_param(const Json& body, int* status = nullptr) {
  try {
    parse_responses_request(body);
  } catch (const ApiError& e) {
    if (status) *status = e.status();
    return e.param().empty() ? "<none>" : e.param();
  }
  return "<no error>";
}

TEST(Responses, StringInputAndDefaults) {
  const ResponsesRequest r = parse_responses_request(j(R"({"model":"demo","input":"Hi"})"));
  EXPECT_EQ(r.chat.model, "demo");
  EXPECT_EQ(r.chat.messages, j(R"([{"role":"user","content":"Hi"}])"));
  EXPECT_EQ(r.items, j(R"([{"type":"message","role":"user","content":"Hi"}])"));
  EXPECT_TRUE(r.chat.tools.is_null());
  EXPECT_EQ(r.chat.tool_choice, ToolChoice::kAuto);
  EXPECT_FALSE(r.chat.gen.max_tokens.has_value());
  EXPECT_FALSE(r.chat.gen.stream);
  EXPECT_EQ(r.chat.gen.n, 1);
  EXPECT_TRUE(r.store);
  EXPECT_TRUE(r.chat.chat_template_kwargs.empty());
  EXPECT_EQ(r.echo["tool_choice"], "auto");
  EXPECT_EQ(r.echo["text"], j(R"({"format":{"type":"text"}})"));
  EXPECT_EQ(r.echo["reasoning"], j(R"({"effort":null,"summary":null})"));
  EXPECT_TRUE(r.echo["temperature"].is_null());
  EXPECT_TRUE(r.echo["max_output_tokens"].is_null());
}

TEST(Responses, FieldsReachTheChatRequest) {
  const ResponsesRequest r = parse_responses_request(j(R"({
      "input":"Hi","instructions":"Be brief.","max_output_tokens":7,"temperature":0.5,"top_p":0.9,"seed":3,
      "stream":true,"store":false,"parallel_tool_calls":false,"max_tool_calls":2,
      "tools":[{"type":"function","name":"f","description":"d","parameters":{"type":"object"},"strict":true}],
      "tool_choice":{"type":"function","name":"f"},"reasoning":{"effort":"low"},
      "include":["reasoning.encrypted_content"],"metadata":{"a":"b"},"user":"u"})"));
  EXPECT_EQ(r.chat.messages, j(R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])"));
  EXPECT_EQ(r.chat.gen.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.chat.gen.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.chat.gen.sampling.top_p, 0.9f);
  EXPECT_EQ(r.chat.gen.sampling.seed, 3u);
  EXPECT_TRUE(r.chat.gen.stream);
  EXPECT_FALSE(r.store);
  EXPECT_FALSE(r.chat.parallel_tool_calls);
  EXPECT_EQ(r.max_tool_calls, 2);
  // Function tools in the chat template's form (strict is echoed, not rendered).
  EXPECT_EQ(r.chat.tools, j(R"([{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}])"));
  EXPECT_EQ(r.echo["tools"][0]["strict"], true);
  EXPECT_EQ(r.chat.tool_choice, ToolChoice::kNamed);
  EXPECT_EQ(r.chat.tool_choice_name, "f");
  EXPECT_EQ(r.echo["tool_choice"], j(R"({"type":"function","name":"f"})"));
  EXPECT_EQ(r.chat.chat_template_kwargs, j(R"({"enable_thinking":true,"low_effort":true,"medium_effort":true})"));
  EXPECT_TRUE(r.encrypted_reasoning);
  EXPECT_EQ(r.echo["instructions"], "Be brief.");
  EXPECT_EQ(r.echo["metadata"], j(R"({"a":"b"})"));
  EXPECT_EQ(r.echo["user"], "u");
  EXPECT_EQ(r.echo["temperature"], 0.5);
}

TEST(Responses, ReasoningEffortMapsToTemplateKwargs) {
  auto kwargs = [](const char* body) { return parse_responses_request(Json::parse(body)).chat.chat_template_kwargs; };
  EXPECT_EQ(kwargs(R"({"input":"x","reasoning":{"effort":"none"}})"), j(R"({"enable_thinking":false})"));
  EXPECT_EQ(kwargs(R"({"input":"x","reasoning":{"effort":"minimal"}})"), j(R"({"enable_thinking":false})"));
  EXPECT_EQ(kwargs(R"({"input":"x","reasoning":{"effort":"medium"}})"),
            j(R"({"enable_thinking":true,"medium_effort":true})"));
  EXPECT_EQ(kwargs(R"({"input":"x","reasoning":{"effort":"high"}})"), j(R"({"enable_thinking":true})"));
  // The request's own chat_template_kwargs win.
  EXPECT_EQ(kwargs(R"({"input":"x","reasoning":{"effort":"none"},"chat_template_kwargs":{"enable_thinking":true}})"),
            j(R"({"enable_thinking":true})"));
}

TEST(Responses, ItemsBecomeChatMessages) {
  const Json input = j(R"([
    {"role":"developer","content":"rules"},
    {"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},
    {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"think"}]},
    {"type":"message","role":"assistant","id":"msg_1","status":"completed",
     "content":[{"type":"output_text","text":"Let me look.","annotations":[]}]},
    {"type":"function_call","id":"fc_1","call_id":"c1","name":"f","arguments":"{\"x\":1}","status":"completed"},
    {"type":"function_call","call_id":"c2","name":"g","arguments":"{}"},
    {"type":"function_call_output","call_id":"c1","output":"one"},
    {"type":"function_call_output","call_id":"c2","output":[{"type":"input_text","text":"two"}]},
    {"type":"reasoning","summary":[{"type":"summary_text","text":"again"}]},
    {"type":"function_call","call_id":"c3","name":"f","arguments":"{}"},
    {"type":"reasoning","encrypted_content":"hidden"},
    {"role":"user","content":"next"}])");
  const Json items = normalize_items(input, "input");
  EXPECT_EQ(items[2], j(R"({"type":"reasoning","text":"think"})"));
  EXPECT_EQ(items[10], j(R"({"type":"reasoning","text":"hidden"})"));
  const Json msgs = items_to_messages(items, "sys");
  EXPECT_EQ(msgs, j(R"([
    {"role":"system","content":"sys"},
    {"role":"developer","content":"rules"},
    {"role":"user","content":"a\nb"},
    {"role":"assistant","content":"Let me look.","reasoning_content":"think","tool_calls":[
      {"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},
      {"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"c1","content":"one"},
    {"role":"tool","tool_call_id":"c2","content":"two"},
    {"role":"assistant","content":"","tool_calls":[{"id":"c3","type":"function","function":{"name":"f","arguments":"{}"}}],
     "reasoning_content":"again"},
    {"role":"user","content":"next"}])"));
}

TEST(Responses, HistoryIsPrepended) {
  const Json history = j(R"([{"type":"message","role":"user","content":"one"},
                             {"type":"message","role":"assistant","content":"two"}])");
  const ResponsesRequest r = parse_responses_request(j(R"({"input":"three","instructions":"i"})"), history);
  EXPECT_EQ(r.items.size(), 3u);
  EXPECT_EQ(r.chat.messages, j(R"([{"role":"system","content":"i"},{"role":"user","content":"one"},
      {"role":"assistant","content":"two"},{"role":"user","content":"three"}])"));
  // With history, input may be omitted.
  EXPECT_EQ(parse_responses_request(j(R"({})"), history).chat.messages.size(), 2u);
}

TEST(Responses, EachInvalidFieldIsNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({})", "input"},
      {R"({"instructions":"x"})", "input"},
      {R"({"input":""})", "input"},
      {R"({"input":[]})", "input"},
      {R"({"input":{"role":"user"}})", "input"},
      {R"({"input":[{"role":"tool","content":"x"}]})", "input"},
      {R"({"input":[{"role":"user"}]})", "input"},
      {R"({"input":[{"type":"message","role":"user","content":[{"type":"input_file","file_id":"f"}]}]})", "input"},
      {R"({"input":[{"type":"function_call","name":"f","arguments":"{}"}]})", "input"},
      {R"({"input":[{"type":"function_call_output","call_id":"c"}]})", "input"},
      {R"({"input":[{"type":"item_reference","id":"x"}]})", "input"},
      {R"({"input":[{"type":"web_search_call","id":"x"}]})", "input"},
      {R"({"input":"x","instructions":5})", "instructions"},
      {R"({"input":"x","tools":{}})", "tools"},
      {R"({"input":"x","tools":[{"type":"file_search"}]})", "tools"},
      {R"({"input":"x","tools":[{"type":"function","name":""}]})", "tools"},
      {R"({"input":"x","tools":[{"type":"function","name":"f","parameters":"x"}]})", "tools"},
      {R"({"input":"x","tool_choice":"any"})", "tool_choice"},
      {R"({"input":"x","tool_choice":{"type":"allowed_tools"}})", "tool_choice"},
      {R"({"input":"x","tool_choice":{"type":"function","name":"f"}})", "tool_choice"},
      {R"({"input":"x","parallel_tool_calls":"no"})", "parallel_tool_calls"},
      {R"({"input":"x","max_tool_calls":0})", "max_tool_calls"},
      {R"({"input":"x","max_output_tokens":0})", "max_output_tokens"},
      {R"({"input":"x","max_output_tokens":1.5})", "max_output_tokens"},
      {R"({"input":"x","reasoning":"high"})", "reasoning"},
      {R"({"input":"x","reasoning":{"effort":"max"}})", "reasoning.effort"},
      {R"({"input":"x","reasoning":{"summary":"long"}})", "reasoning.summary"},
      {R"({"input":"x","text":{"format":{"type":"json_schema","name":"s"}}})", "text.format"},
      {R"({"input":"x","text":{"format":{"type":"json_schema","schema":"{x"}}})", "text.format"},
      {R"({"input":"x","text":{"format":{"type":"yaml"}}})", "text.format"},
      {R"({"input":"x","text":{"format":{"type":"json_schema","name":{},"schema":{"type":"object"}}}})", "text.format"},
      {R"({"input":"x","text":{"format":{"type":"json_schema","name":7,"schema":{"type":"object"}}}})", "text.format"},
      {R"({"input":"x","text":{"verbosity":"loud"}})", "text.verbosity"},
      {R"({"input":"x","include":"all"})", "include"},
      {R"({"input":"x","include":["message.output_text.logprobs"]})", "include"},
      {R"({"input":"x","store":1})", "store"},
      {R"({"input":"x","truncation":"middle"})", "truncation"},
      {R"({"input":"x","metadata":{"k":{}}})", "metadata"},
      {R"({"input":"x","user":1})", "user"},
      {R"({"input":"x","background":true})", "background"},
      {R"({"input":"x","conversation":"conv_1"})", "conversation"},
      {R"({"input":"x","prompt":{"id":"p"}})", "prompt"},
      {R"({"input":"x","top_logprobs":3})", "top_logprobs"},
      {R"({"input":"x","previous_response_id":7})", "previous_response_id"},
      {R"({"input":"x","temperature":2.5})", "temperature"},
      {R"({"input":"x","top_k":-2})", "top_k"},
      {R"({"input":"x","stream":"yes"})", "stream"},
      {R"({"input":"x","model":3})", "model"},
  };
  for (const auto& [body, param] : cases) {
    int status = 0;
    EXPECT_EQ(error_param(Json::parse(body), &status), param) << body;
    EXPECT_EQ(status, 400) << body;
  }
  EXPECT_EQ(error_param(Json::array()), "<none>");
  EXPECT_EQ(error_param(j(R"({"input":"x","background":false,"truncation":"auto","service_tier":"auto"})")),
            "<no error>");
  try {
    parse_responses_request(j(R"({"input":"x","tools":[{"type":"web_search"}]})"));
  } catch (const ApiError& e) {
    EXPECT_NE(std::string(e.what()).find("'web_search'"), std::string::npos) << e.what();
    EXPECT_EQ(e.code(), "unsupported_parameter");
  }
}

// The demo model's tokenizer: a model's output text as token events through the chat pipeline.
const text::Tokenizer& tok() {
  static const text::Tokenizer t = text::Tokenizer::load(std::string(NEMOTRON_SOURCE_DIR) + "/models/demo");
  return t;
}

struct Built {
  std::vector<Json> events;
  Json output;
};

Built build(const std::string& text, bool thinking, runtime::FinishReason last, bool encrypted = false) {
  PipelineOptions o;
  o.chat = true;
  o.parser.thinking_enabled = thinking;
  o.parser.tools = j(R"([{"type":"function","function":{"name":"get_weather","parameters":
      {"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}}])");
  const int32_t eos = tok().token_to_id("<|im_end|>");
  o.eos_ids = {eos};
  for (const char* s : {"<think>", "</think>", "<tool_call>", "</tool_call>"}) o.keep_special_ids.push_back(tok().token_to_id(s));
  OutputPipeline pipe(tok(), o);
  ResponseBuilder b(encrypted);
  Built out;
  std::vector<int32_t> ids = tok().encode(text);
  if (last == runtime::FinishReason::Stop) ids.push_back(eos);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    runtime::TokenEvent ev;
    ev.token = ids[i];
    ev.finished = i + 1 == ids.size();
    ev.reason = ev.finished ? last : runtime::FinishReason::None;
    const PipelineOutput po = pipe.push(ev);
    b.add(po.events, out.events);
    if (po.finished) b.finish(pipe.finish_reason() == "length", out.events);
  }
  out.output = b.output();
  return out;
}

std::vector<std::string> types(const std::vector<Json>& events) {
  std::vector<std::string> t;
  for (const Json& e : events) {
    const std::string s = e["type"].get<std::string>();
    if (t.empty() || t.back() != s || s.find(".delta") == std::string::npos) t.push_back(s);  // deltas collapsed
  }
  return t;
}

TEST(ResponseBuilder, ToolCallTextBecomesFunctionCallItems) {
  const Built b = build(
      "Let me check.\n</think>\nSure.<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
      "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n"
      "<parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>",
      true, runtime::FinishReason::Stop);
  ASSERT_EQ(b.output.size(), 4u);
  EXPECT_EQ(b.output[0]["type"], "reasoning");
  EXPECT_EQ(b.output[0]["content"], j(R"([{"type":"reasoning_text","text":"Let me check."}])"));
  EXPECT_FALSE(b.output[0].contains("encrypted_content"));
  EXPECT_EQ(b.output[1]["type"], "message");
  EXPECT_EQ(b.output[1]["content"][0]["text"], "Sure.");
  for (int i : {2, 3}) {
    const Json& call = b.output[static_cast<std::size_t>(i)];
    EXPECT_EQ(call["type"], "function_call");
    EXPECT_EQ(call["name"], "get_weather");
    EXPECT_EQ(call["status"], "completed");
    EXPECT_EQ(call["call_id"].get<std::string>().rfind("call_", 0), 0u) << call;
    EXPECT_EQ(call["id"].get<std::string>().rfind("fc_", 0), 0u) << call;
  }
  // Arguments typed by the tool's schema (days is an integer), as a JSON string.
  EXPECT_EQ(Json::parse(b.output[2]["arguments"].get<std::string>()), j(R"({"city":"Paris","days":3})"));
  EXPECT_EQ(Json::parse(b.output[3]["arguments"].get<std::string>()), j(R"({"city":"Rome"})"));
  EXPECT_NE(b.output[2]["call_id"], b.output[3]["call_id"]);

  const std::vector<std::string> expected = {
      "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
      "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done",
      "response.output_item.done",
      "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done",
      "response.output_item.done"};
  EXPECT_EQ(types(b.events), expected);
  // Sequence numbers count up; deltas concatenate to the done events and the items.
  std::string args;
  for (std::size_t i = 0; i < b.events.size(); ++i) {
    const Json& e = b.events[i];
    EXPECT_EQ(e["sequence_number"], i);
    if (e["type"] == "response.function_call_arguments.delta" && e["output_index"] == 2) args += e["delta"];
    if (e["type"] == "response.function_call_arguments.done" && e["output_index"] == 2) {
      EXPECT_EQ(e["arguments"], args);
    }
    if (e["type"] == "response.output_item.added") {
      EXPECT_EQ(e["item"]["status"], "in_progress");
    }
  }
  EXPECT_EQ(args, b.output[2]["arguments"]);

  // Function calls round-trip as input items: the next prompt's assistant turn.
  const Json msgs = items_to_messages(normalize_items(b.output, "input"), "");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0]["content"], "Sure.");
  EXPECT_EQ(msgs[0]["reasoning_content"], "Let me check.");
  EXPECT_EQ(msgs[0]["tool_calls"].size(), 2u);
  EXPECT_EQ(msgs[0]["tool_calls"][0]["id"], b.output[2]["call_id"]);
}

TEST(ResponseBuilder, LengthMarksTheLastItemIncomplete) {
  const Built b = build("Thinking about it and", true, runtime::FinishReason::Length, true);
  ASSERT_EQ(b.output.size(), 1u);
  EXPECT_EQ(b.output[0]["status"], "incomplete");
  EXPECT_EQ(b.output[0]["encrypted_content"], "Thinking about it and");
  const Built m = build("Plain answer.", false, runtime::FinishReason::Stop);
  ASSERT_EQ(m.output.size(), 1u);
  EXPECT_EQ(m.output[0]["status"], "completed");
  EXPECT_EQ(m.output[0]["content"][0], j(R"({"type":"output_text","text":"Plain answer.","annotations":[],"logprobs":[]})"));
  EXPECT_EQ(m.events.back()["type"], "response.output_item.done");
}

TEST(ResponseObject, ShapeAndSse) {
  ResponseObject o;
  o.id = "resp_1";
  o.model = "demo";
  o.created_at = 5;
  o.echo = {{"store", true}};
  o.status = "completed";
  o.usage = responses_usage(10, 4, 3, 1);
  const Json r = o.to_json();
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["store"], true);
  EXPECT_TRUE(r["error"].is_null());
  EXPECT_EQ(r["usage"], j(R"({"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":3,
      "output_tokens_details":{"reasoning_tokens":1},"total_tokens":13})"));
  ResponseBuilder b;
  const Json e = b.event("response.created", {{"response", r}});
  EXPECT_EQ(e["sequence_number"], 0);
  EXPECT_EQ(b.event("x")["sequence_number"], 1);
  EXPECT_EQ(responses_sse(e).rfind("event: response.created\ndata: {\"type\":\"response.created\"", 0), 0u);
}

TEST(ResponseStore, LeastRecentlyUsedEvictedByCountAndBytes) {
  ResponseStore s;
  EXPECT_FALSE(s.enabled());
  EXPECT_FALSE(s.put("a", j(R"({"output":[]})"), Json::array()));
  s.configure(2, 1000);
  const Json out = j(R"({"output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hi"}]}]})");
  EXPECT_TRUE(s.put("a", out, j(R"([{"type":"message","role":"user","content":"q"}])")));
  EXPECT_TRUE(s.put("b", out, Json::array()));
  EXPECT_TRUE(s.get("a").has_value());  // a becomes the most recent
  EXPECT_TRUE(s.put("c", out, Json::array()));
  EXPECT_FALSE(s.get("b").has_value());
  EXPECT_EQ(s.size(), 2u);
  // The conversation: the stored items, then the output items normalised.
  EXPECT_EQ(*s.conversation("a"), j(R"([{"type":"message","role":"user","content":"q"},
      {"type":"message","role":"assistant","content":"hi"}])"));
  EXPECT_TRUE(s.erase("a"));
  EXPECT_FALSE(s.erase("a"));
  EXPECT_FALSE(s.conversation("a").has_value());
  // Bytes: one entry too large is not kept; the bound evicts older ones.
  const std::size_t one = s.bytes();
  s.configure(100, 2 * one + one / 2);
  EXPECT_TRUE(s.put("d", out, Json::array()));
  EXPECT_TRUE(s.put("e", out, Json::array()));
  EXPECT_FALSE(s.get("c").has_value());
  EXPECT_LE(s.bytes(), 2 * one + one / 2);
  EXPECT_FALSE(s.put("big", {{"output", Json::array()}, {"pad", std::string(10 * one, 'x')}}, Json::array()));
  EXPECT_TRUE(s.get("d") && s.get("e"));
  s.configure(0, 1000);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.bytes(), 0u);
}

}  // namespace
}  // namespace nemotron::server
