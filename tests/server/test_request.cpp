// Request parsing/validation (typed structs, the parameter named in each error) and the
// service's engine-request building (n choices with seed + i, reproducible through the engine).
#include <gtest/gtest.h>

#include <sstream>

#include "server/api_error.h"
#include "server/request.h"
#include "server/service.h"
#include "server/session.h"

namespace nemotron::server {
namespace {

Json j(const char* s) { return Json::parse(s); }

// Returns the ApiError's param, or "<no error>".
template <class F>
std::string error_param(F f, int* status = nullptr) {
  try {
    f();
  } catch (const ApiError& e) {
    if (status) *status = e.status();
    return e.param().empty() ? "<none>" : e.param();
  }
  return "<no error>";
}

TEST(Request, ChatDefaults) {
  const ChatRequest r = parse_chat_request(j(R"({"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_EQ(r.gen.n, 1);
  EXPECT_FALSE(r.gen.max_tokens.has_value());
  EXPECT_FALSE(r.gen.stream);
  EXPECT_TRUE(r.add_generation_prompt);
  EXPECT_EQ(r.tool_choice, ToolChoice::kAuto);
  EXPECT_TRUE(r.tools.is_null());
  EXPECT_EQ(r.gen.sampling.logprobs, -1);
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 1.0f);
}

TEST(Request, ChatFields) {
  const ChatRequest r = parse_chat_request(j(R"({"model":"m","messages":[{"role":"user","content":"hi"}],
      "temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.1,"presence_penalty":1,"frequency_penalty":-1,
      "repetition_penalty":1.2,"seed":18446744073709551615,"stop":"END","stop_token_ids":[5,6],
      "max_tokens":7,"max_completion_tokens":9,"n":3,"logprobs":true,"top_logprobs":4,"stream":true,
      "stream_options":{"include_usage":true},"ignore_eos":true,"parallel_tool_calls":false,
      "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}},
      "chat_template_kwargs":{"enable_thinking":false},"response_format":{"type":"text"},"user":"ignored"})"));
  EXPECT_EQ(r.model, "m");
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 0.5f);
  EXPECT_EQ(r.gen.sampling.top_k, 40);
  EXPECT_EQ(*r.gen.sampling.seed, 18446744073709551615ull);
  EXPECT_EQ(r.gen.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(r.gen.stop_token_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(*r.gen.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_EQ(r.gen.n, 3);
  EXPECT_EQ(r.gen.sampling.logprobs, 4);
  EXPECT_TRUE(r.gen.include_usage);
  EXPECT_TRUE(r.gen.ignore_eos);
  EXPECT_FALSE(r.parallel_tool_calls);
  EXPECT_EQ(r.tool_choice, ToolChoice::kNamed);
  EXPECT_EQ(r.tool_choice_name, "f");
  EXPECT_EQ(r.chat_template_kwargs["enable_thinking"], false);
}

TEST(Request, NullMeansAbsent) {
  const ChatRequest r = parse_chat_request(
      j(R"({"messages":[{"role":"user","content":"hi"}],"temperature":null,"stop":null,"max_tokens":null})"));
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.gen.max_tokens);
}

TEST(Request, EachInvalidFieldIsNamed) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":true})", "temperature"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":2.5})", "temperature"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_p":0})", "top_p"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_k":-2})", "top_k"},
      {R"({"messages":[{"role":"user","content":"x"}],"min_p":-0.1})", "min_p"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":"5"})", "max_tokens"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1.5})", "max_tokens"},
      {R"({"messages":[{"role":"user","content":"x"}],"n":17})", "n"},
      {R"({"messages":[{"role":"user","content":"x"}],"seed":1.5})", "seed"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":[1]})", "stop"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop_token_ids":[-1]})", "stop_token_ids"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs"},
      {R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}})", "response_format"},
      {R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}})", "response_format"},
      {R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},"guided_regex":"a"})",
       "guided_regex"},
      {R"({"messages":[{"role":"user","content":"x"}],"guided_json":"{not json"})", "guided_json"},
      {R"({"messages":[{"role":"user","content":"x"}],"guided_regex":""})", "guided_regex"},
      {R"({"messages":[{"role":"user","content":"x"}],"guided_choice":[]})", "guided_choice"},
      {R"({"messages":[{"role":"user","content":"x"}],"guided_choice":["a",1]})", "guided_choice"},
      {R"({"messages":[{"role":"user","content":"x"}],"structured_outputs":{"xml":"a"}})", "structured_outputs.xml"},
      {R"({"messages":[{"role":"user","content":"x"}],"structured_outputs":[]})", "structured_outputs"},
      {R"({"messages":[{"role":"user","content":"x"}],"functions":[]})", "functions"},
      {R"({"messages":[{"role":"user","content":"x"}],"tool_choice":"required"})", "tool_choice"},
      {R"({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})", "stream_options"},
      {R"({"messages":{}})", "messages"},
      {R"({"messages":[{"role":"user"}]})", "messages"},
      {R"({"messages":[{"role":1,"content":"x"}]})", "messages"},
  };
  for (const auto& [body, param] : cases) {
    int status = 0;
    EXPECT_EQ(error_param([&] { parse_chat_request(j(body)); }, &status), param) << body;
    EXPECT_EQ(status, 400) << body;
  }
}

TEST(Request, Completions) {
  EXPECT_EQ(parse_completion_request(j(R"({"prompt":"hi"})")).prompt_text, "hi");
  EXPECT_EQ(parse_completion_request(j(R"({"prompt":["hi"]})")).prompt_text, "hi");
  const CompletionRequest ids = parse_completion_request(j(R"({"prompt":[[1,2,3]],"logprobs":3,"echo":true})"));
  EXPECT_TRUE(ids.prompt_is_ids);
  EXPECT_EQ(ids.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ids.gen.top_logprobs, 3);
  EXPECT_TRUE(ids.echo);
  EXPECT_EQ(error_param([] { parse_completion_request(j(R"({"prompt":["a","b"]})")); }), "prompt");
  EXPECT_EQ(error_param([] { parse_completion_request(j(R"({"prompt":[1,2.5]})")); }), "prompt");
  EXPECT_EQ(error_param([] { parse_completion_request(j(R"({"prompt":"x","logprobs":true})")); }), "logprobs");
}

TEST(Request, StructuredOutputs) {
  using Kind = StructuredOutput::Kind;
  auto so = [](const char* body) { return parse_chat_request(j(body)).gen.structured; };
  const char* m = R"("messages":[{"role":"user","content":"x"}])";
  auto with = [&](const std::string& extra) { return so(("{" + std::string(m) + "," + extra + "}").c_str()); };
  EXPECT_EQ(so(R"({"messages":[{"role":"user","content":"x"}]})").kind, Kind::kNone);
  EXPECT_EQ(with(R"("response_format":{"type":"text"})").kind, Kind::kNone);
  EXPECT_EQ(with(R"("response_format":{"type":"json_object"})").kind, Kind::kJsonObject);
  StructuredOutput s = with(R"("response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"integer"}}})");
  EXPECT_EQ(s.kind, Kind::kJsonSchema);
  EXPECT_EQ(s.schema, j(R"({"type":"integer"})"));
  EXPECT_EQ(s.param, "response_format");
  s = with(R"("guided_json":"{\"type\":\"string\"}")");  // a schema as JSON text
  EXPECT_EQ(s.kind, Kind::kJsonSchema);
  EXPECT_EQ(s.schema, j(R"({"type":"string"})"));
  EXPECT_EQ(s.param, "guided_json");
  s = with(R"("guided_regex":"[a-z]+")");
  EXPECT_EQ(s.kind, Kind::kRegex);
  EXPECT_EQ(s.text, "[a-z]+");
  s = with(R"("guided_choice":["yes","no"])");
  EXPECT_EQ(s.kind, Kind::kChoice);
  EXPECT_EQ(s.choices, (std::vector<std::string>{"yes", "no"}));
  s = with(R"("guided_grammar":"root ::= \"a\"")");
  EXPECT_EQ(s.kind, Kind::kGrammar);
  s = with(R"("structured_outputs":{"choice":["a"],"json":null})");
  EXPECT_EQ(s.kind, Kind::kChoice);
  EXPECT_EQ(s.param, "structured_outputs.choice");
  EXPECT_EQ(with(R"("structured_outputs":{"json_object":true})").kind, Kind::kJsonObject);
  EXPECT_EQ(parse_completion_request(j(R"({"prompt":"x","guided_regex":"a"})")).gen.structured.kind, Kind::kRegex);
}

TEST(Request, BodyParsing) {
  EXPECT_EQ(error_param([] { parse_body("{\"a\": "); }), "<none>");
  EXPECT_EQ(error_param([] { parse_body(std::string(10000, '[')); }), "<none>");
  EXPECT_NO_THROW(parse_body(std::string(60, '[') + std::string(60, ']')));
  EXPECT_NO_THROW(parse_body(R"({"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"["})"));
  EXPECT_EQ(error_param([] { parse_chat_request(parse_body("[]")); }), "<none>");
}

TEST(Request, ErrorBodyShape) {
  const Json e = error_body(ApiError(400, "bad", "temperature", "invalid_value"));
  EXPECT_EQ(e.dump(), R"({"error":{"message":"bad","type":"invalid_request_error","param":"temperature","code":"invalid_value"}})");
  EXPECT_EQ(error_body(401, "no key")["error"]["type"], "authentication_error");
  EXPECT_TRUE(error_body(500, "x")["error"]["param"].is_null());
}

// The demo model through the service: n choices, seed + i, context checks.
class ServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServiceConfig c;
    c.model_dir = std::string(NEMOTRON_SOURCE_DIR) + "/models/demo";
    c.plan.memory_gib = 1.0;
    c.plan.max_model_len = 4096;
    std::ostringstream log;
    service_ = ModelService::load(c, log).release();
    ASSERT_NE(log.str().find("memory plan"), std::string::npos);
  }
  static void TearDownTestSuite() { delete service_; }
  static std::vector<std::vector<int32_t>> generate(const ChatRequest& r) {
    const ChatPrompt p = service_->render_chat(r);
    const int64_t max_tokens = service_->resolve_max_tokens(r.gen, static_cast<int64_t>(p.ids.size()), "messages");
    GenerationSession s(service_->engine());
    for (int i = 0; i < r.gen.n; ++i) s.submit(service_->make_request(p.ids, r.gen, max_tokens, i));
    std::vector<std::vector<int32_t>> out(static_cast<std::size_t>(r.gen.n));
    while (!s.all_finished()) {
      ChoiceEvent ev;
      if (s.next(ev, std::chrono::milliseconds(1000)) && ev.event.token >= 0)
        out[static_cast<std::size_t>(ev.choice)].push_back(ev.event.token);
    }
    return out;
  }
  static ModelService* service_;
};
ModelService* ServiceTest::service_ = nullptr;

TEST_F(ServiceTest, NChoicesUseSeedPlusIndex) {
  ChatRequest r = parse_chat_request(
      j(R"({"messages":[{"role":"user","content":"hi"}],"n":3,"seed":100,"max_tokens":12,"ignore_eos":true})"));
  const auto three = generate(r);
  ASSERT_EQ(three.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    ChatRequest one = r;
    one.gen.n = 1;
    one.gen.sampling.seed = 100 + i;
    EXPECT_EQ(generate(one)[0], three[static_cast<std::size_t>(i)]) << i;
    EXPECT_EQ(three[static_cast<std::size_t>(i)].size(), 12u);
  }
  EXPECT_NE(three[0], three[1]);
}

TEST_F(ServiceTest, ContextChecksAndDefaults) {
  GenerationOptions g;
  EXPECT_EQ(service_->resolve_max_tokens(g, 96, "prompt"), 4096 - 96);
  g.max_tokens = 4001;
  try {
    service_->resolve_max_tokens(g, 96, "prompt");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "max_tokens");
    EXPECT_EQ(std::string(e.what()).rfind("This model's maximum context length is 4096 tokens.", 0), 0u);
  }
  g.max_tokens.reset();
  EXPECT_EQ(error_param([&] { service_->resolve_max_tokens(g, 4096, "prompt"); }), "prompt");
  EXPECT_EQ(error_param([&] { service_->check_model("other"); }), "model");
  EXPECT_NO_THROW(service_->check_model("demo"));
  // eos ids: config eos_token_id + the tokenizer's eos token (<|im_end|>, 11), once.
  EXPECT_EQ(service_->eos_ids(), std::vector<int32_t>{11});
  g.ignore_eos = true;
  EXPECT_TRUE(service_->make_request({1, 2}, g, 4, 0).stop_token_ids.empty());
}

TEST_F(ServiceTest, ChatPromptThinkingFromTheRenderedEnding) {
  ChatRequest r = parse_chat_request(j(R"({"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_TRUE(service_->render_chat(r).thinking);
  r.chat_template_kwargs["enable_thinking"] = false;
  const ChatPrompt off = service_->render_chat(r);
  EXPECT_FALSE(off.thinking);
  EXPECT_EQ(service_->tokenizer().decode(off.ids), off.text);  // no BOS added
  ChatRequest named = parse_chat_request(j(R"({"messages":[{"role":"user","content":"hi"}],
      "tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],
      "tool_choice":{"type":"function","function":{"name":"b"}}})"));
  const ChatPrompt p = service_->render_chat(named);
  EXPECT_NE(p.text.find("<name>b</name>"), std::string::npos);
  EXPECT_EQ(p.text.find("<name>a</name>"), std::string::npos);
}

}  // namespace
}  // namespace nemotron::server
