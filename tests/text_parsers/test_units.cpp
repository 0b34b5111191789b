// Unit tests: §4.2 value conversion, prompt tail detection (§1.3), streaming event shape
// (§4.3 header then fragments, held-back partial tags), errors.
#include <gtest/gtest.h>

#include "parser_test_util.h"
#include "text/parsers/output_parser.h"
#include "text/parsers/reasoning_parser.h"
#include "text/parsers/tool_call_parser.h"
#include "util/error.h"

namespace nemotron::text {
namespace {

std::string conv(const std::string& value, const char* schema) {
  const Json s = Json::parse(schema);
  return convert_param_value(value, &s).dump();
}

// Expected values follow serving doc §4.2 steps 3-6 (vLLM _convert_param_value).
TEST(ConvertParamValue, FollowsDocRules) {
  EXPECT_EQ(convert_param_value("42", nullptr).dump(), R"("42")");          // step 2: no schema
  EXPECT_EQ(conv("None", R"({"type":"string"})"), R"("None")");              // step 5 before 6
  EXPECT_EQ(conv("None", R"({"anyOf":[{"type":"string"},{"type":"null"}]})"), "null");  // step 4
  EXPECT_EQ(conv("NULL", R"({"type":"integer"})"), "null");                   // step 6
  EXPECT_EQ(conv(" -12 ", R"({"type":"integer"})"), "-12");
  EXPECT_EQ(conv("1_000", R"({"type":"int64"})"), "1000");
  EXPECT_EQ(conv("1.5", R"({"type":"integer"})"), R"("1.5")");                // int() fails → string
  EXPECT_EQ(conv("99999999999999999999", R"({"type":"integer"})"), R"("99999999999999999999")");  // ours
  EXPECT_EQ(conv("2.0", R"({"type":"number"})"), "2");                        // integral float → int
  EXPECT_EQ(conv("1e3", R"({"type":"number"})"), "1000");
  EXPECT_EQ(conv("-0.25", R"({"type":"float"})"), "-0.25");
  EXPECT_EQ(conv("inf", R"({"type":"number"})"), R"("inf")");                 // ours: no JSON form
  EXPECT_EQ(conv("abc", R"({"type":"number"})"), R"("abc")");
  EXPECT_EQ(conv("True", R"({"type":"boolean"})"), "true");
  EXPECT_EQ(conv("FALSE", R"({"type":"bool"})"), "false");
  EXPECT_EQ(conv("yes", R"({"type":"boolean"})"), "false");
  EXPECT_EQ(conv("[1, 2]", R"({"type":"array"})"), "[1,2]");
  EXPECT_EQ(conv("(1, 'x')", R"({"type":"list"})"), R"([1,"x"])");
  EXPECT_EQ(conv("{'a': (1,)}", R"({"type":"object"})"), R"({"a":[1]})");
  EXPECT_EQ(conv("\"{'k': 'v'}\"", R"({"type":"dict"})"), R"({"k":"v"})");    // double-encoded
  EXPECT_EQ(conv("not json", R"({"type":"object"})"), R"("not json")");
  EXPECT_EQ(conv("{\"z\":1,\"a\":2}", R"({"type":"object"})"), R"({"z":1,"a":2})");  // key order kept
  EXPECT_EQ(conv("5", R"({"type":"whatever"})"), "5");                        // literal_eval branch
  EXPECT_EQ(conv("hello", R"({"type":"whatever"})"), R"("hello")");
  EXPECT_EQ(conv("7", R"({"anyOf":[{"type":"null"},{"type":"integer"},{"type":"string"}]})"), "7");
  EXPECT_EQ(conv("7", R"({"type":["integer","null"]})"), "7");                // ours: list = union
  EXPECT_EQ(conv("none", R"({"type":["integer","null"]})"), "null");
  EXPECT_EQ(conv("x", R"({"type":"null"})"), R"("x")");
  EXPECT_EQ(conv("7", R"({"description":"no type"})"), R"("7")");             // no type → string
  EXPECT_EQ(conv("c", R"({"type":"string","enum":["c","f"]})"), R"("c")");
  EXPECT_EQ(conv(std::string(5000, '['), R"({"type":"array"})"), "\"" + std::string(5000, '[') + "\"");
}

TEST(ToolSchemas, ValidatesAndLooksUp) {
  EXPECT_THROW(ToolSchemas(Json::parse(R"({"name":"x"})")), Error);
  EXPECT_THROW(ToolSchemas(Json::parse(R"([{"type":"function","function":{"parameters":{}}}])")), Error);
  EXPECT_THROW(ToolSchemas(Json::parse(R"([42])")), Error);
  const ToolSchemas s(Json::parse(R"([{"type":"function","function":{"name":"f","parameters":{"properties":{"a":{"type":"integer"}}}}},
    {"name":"f","parameters":{"properties":{"b":{}}}}, {"name":"g"}])"));
  ASSERT_NE(s.properties("f"), nullptr);
  EXPECT_TRUE(s.properties("f")->contains("a"));  // first declaration wins
  EXPECT_EQ(s.properties("g"), nullptr);
  EXPECT_EQ(s.properties("h"), nullptr);
}

// §1.3 generation prompts: thinking on ends "<think>\n", off ends "<think></think>".
TEST(PromptEndsInReasoning, GenerationPromptTails) {
  const std::string hist = "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n";
  EXPECT_TRUE(prompt_ends_in_reasoning(hist + "<|im_start|>assistant\n<think>\n"));
  EXPECT_FALSE(prompt_ends_in_reasoning(hist + "<|im_start|>assistant\n<think></think>"));
  EXPECT_FALSE(prompt_ends_in_reasoning(hist));
  EXPECT_FALSE(prompt_ends_in_reasoning(""));
  EXPECT_TRUE(prompt_ends_in_reasoning(hist + "<|im_start|>assistant\n<think>\npartial prefill"));
  EXPECT_FALSE(prompt_ends_in_reasoning(hist + "<|im_start|>assistant\n<think>\nr\n</think>\nprefill"));
  // An earlier turn's open <think> does not count.
  EXPECT_FALSE(prompt_ends_in_reasoning("<|im_start|>assistant\n<think>\nx<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"));
}

OutputParserOptions tool_opts() {
  OutputParserOptions o;
  o.thinking_enabled = false;
  o.tools = Json::parse(R"([{"type":"function","function":{"name":"f","parameters":{"properties":{"a":{"type":"integer"},"b":{"type":"string"}}}}}])");
  o.make_tool_call_id = testing::counter_ids();
  return o;
}

// §4.3: id + name first, then fragments emitted only when a parameter is complete.
TEST(StreamShape, ToolCallHeaderThenCompleteParameters) {
  OutputParser p(tool_opts());
  auto e = p.feed("Hi <tool_call>\n<function=f>\n<parameter=a>\n1");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].kind, OutputEvent::Kind::kContent);
  EXPECT_EQ(e[0].text, "Hi ");
  EXPECT_EQ(e[1].kind, OutputEvent::Kind::kToolCall);
  EXPECT_EQ(e[1].tool_id, "call_0");
  EXPECT_EQ(e[1].tool_name, "f");
  EXPECT_EQ(e[1].text, "{");
  EXPECT_TRUE(p.feed("2\n</parameter>").empty());  // could still be a literal </parameter>
  e = p.feed("\n<parameter=b>\nx\n</parameter>\n</function>\n</tool_call>");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].text, R"("a":12,"b":"x"})");  // closed as soon as </tool_call> is seen
  EXPECT_TRUE(e[0].tool_id.empty());
  EXPECT_TRUE(p.finish().empty());
}

TEST(StreamShape, PartialCloseTagHeldBackThenReleased) {
  OutputParserOptions o;
  OutputParser p(o);
  auto e = p.feed("abc\n</thi");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].text, "abc");
  EXPECT_TRUE(p.feed("").empty());
  e = p.finish();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].kind, OutputEvent::Kind::kReasoning);
  EXPECT_EQ(e[0].text, "\n</thi");
}

TEST(StreamShape, SplitUtf8CharacterIsHeldBack) {
  OutputParserOptions o;
  o.thinking_enabled = false;
  OutputParser p(o);
  EXPECT_TRUE(p.feed("\xC3").empty());
  auto e = p.feed("\xA9!");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].text, "\xC3\xA9!");
}

// §3.3 "stream: duplicate at end": the rescue re-emits streamed reasoning as content.
TEST(StreamShape, ForceNonemptyContentDuplicatesInStream) {
  OutputParserOptions o;
  o.force_nonempty_content = true;
  OutputParser p(o);
  auto e = p.feed("thinking...");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].kind, OutputEvent::Kind::kReasoning);
  e = p.finish();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].kind, OutputEvent::Kind::kContent);
  EXPECT_TRUE(e[0].replaces_reasoning);
  EXPECT_EQ(e[0].text, "thinking...");
}

TEST(StreamShape, MisuseThrows) {
  OutputParserOptions o;
  OutputParser p(o);
  p.finish();
  EXPECT_THROW(p.feed("x"), Error);
  EXPECT_THROW(p.finish(), Error);
  o.tools = Json::parse(R"({"not":"an array"})");
  EXPECT_THROW(OutputParser{o}, Error);
}

TEST(ToolCallIds, RandomIdsHaveOpenAIShape) {
  const std::string a = random_tool_call_id(), b = random_tool_call_id();
  ASSERT_EQ(a.size(), 29u);
  EXPECT_EQ(a.substr(0, 5), "call_");
  for (char c : a.substr(5)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)));
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace nemotron::text
