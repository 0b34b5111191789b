// The server's grammar constraint (free reasoning until </think>, then the grammar; rollback
// across that boundary) and the enforced tool-call grammar (the Qwen3-Coder call format the
// tool parser reads, parameters typed by their JSON schemas).
#include <gtest/gtest.h>

#include "server/grammar_constraint.h"
#include "text/parsers/output_parser.h"
#include "util/error.h"

namespace nemotron::server {
namespace {

namespace grammar = text::grammar;

bool bit(const std::vector<uint32_t>& bits, int32_t t) { return (bits[t / 32] >> (t % 32)) & 1u; }

// Byte-level whole match.
bool matches(const std::shared_ptr<const grammar::Grammar>& g, const std::string& text) {
  grammar::Matcher m(g);
  return m.accept_bytes(text) && m.can_end();
}

TEST(GrammarConstraint, FreeUntilThinkEndThenConstrained) {
  // 0 eos, 1 </think>, 2 "yes", 3 "no", 4 "y", 5 "es", 6 "maybe"
  auto v = grammar::Vocabulary::from_token_bytes(
      {"", grammar::Vocabulary::special_token_bytes(1), "yes", "no", "y", "es", "maybe"});
  auto g = grammar::Grammar::alternatives({grammar::Grammar::literal("yes"), grammar::Grammar::literal("no")});
  const int64_t vocab = 40;  // the model's vocabulary may be padded past the tokenizer's
  GrammarConstraint c(g, v, {0}, vocab, /*think_end=*/1);
  std::vector<uint32_t> bits(2);
  c.fill_mask(bits.data());
  for (int32_t t = 0; t < vocab; ++t) EXPECT_TRUE(bit(bits, t)) << t;  // reasoning: free
  EXPECT_TRUE(c.accept(6));
  EXPECT_TRUE(c.accept(1));  // </think>
  c.fill_mask(bits.data());
  EXPECT_TRUE(bit(bits, 2));
  EXPECT_TRUE(bit(bits, 3));
  EXPECT_TRUE(bit(bits, 4));
  EXPECT_FALSE(bit(bits, 5));
  EXPECT_FALSE(bit(bits, 6));
  EXPECT_FALSE(bit(bits, 0));   // not complete
  EXPECT_FALSE(bit(bits, 39));  // padding ids never
  EXPECT_FALSE(c.accept(6));
  EXPECT_TRUE(c.accept(4));
  EXPECT_TRUE(c.accept(5));
  c.fill_mask(bits.data());
  EXPECT_TRUE(bit(bits, 0));  // done: only the end
  EXPECT_FALSE(bit(bits, 2));
  // Rolling back over </think> makes the output free again.
  c.rollback(3);
  c.fill_mask(bits.data());
  EXPECT_TRUE(bit(bits, 6));
  EXPECT_TRUE(c.accept(6));
  EXPECT_TRUE(c.accept(1));
  EXPECT_TRUE(c.accept(3));
}

TEST(GrammarConstraint, ConstrainedFromTheStartWithoutReasoning) {
  auto v = grammar::Vocabulary::from_token_bytes({"", "a", "b"});
  GrammarConstraint c(grammar::Grammar::literal("ab"), v, {0}, 3, -1);
  std::vector<uint32_t> bits(1);
  c.fill_mask(bits.data());
  EXPECT_EQ(bits[0], 1u << 1);
  EXPECT_FALSE(c.accept(2));
  EXPECT_TRUE(c.accept(1));
}

const Json kTools = Json::parse(R"([
  {"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
    "properties":{"city":{"type":"string"},"days":{"type":"integer","minimum":1,"maximum":7},
                  "unit":{"type":"string","enum":["c","f"]},
                  "note":{"type":"string","maxLength":3},"tags":{"type":["array","null"],"items":{"type":"string"}}},
    "required":["city"]}}},
  {"type":"function","function":{"name":"now"}}
])");

std::string call(const std::string& body) {
  return grammar::Vocabulary::special_token_bytes(10) + body + grammar::Vocabulary::special_token_bytes(11);
}

TEST(ToolCallGrammar, QwenCoderFormatTypedBySchema) {
  auto g = tool_call_grammar(kTools, false, 10, 11);
  const std::string city = "<parameter=city>\nParis\n</parameter>\n";
  EXPECT_TRUE(matches(g, call("\n<function=get_weather>\n" + city + "</function>\n")));
  EXPECT_TRUE(matches(g, call("\n<function=get_weather>\n" + city + "<parameter=days>\n3\n</parameter>\n" +
                              "<parameter=unit>\nc\n</parameter>\n<parameter=note>\nabc\n</parameter>\n" +
                              "<parameter=tags>\n[\"a\",\"b\"]\n</parameter>\n</function>\n")));
  EXPECT_TRUE(matches(g, call("\n<function=get_weather>\n" + city + "<parameter=tags>\nnull\n</parameter>\n" +
                              "</function>\n")));
  EXPECT_TRUE(matches(g, call("\n<function=now>\n</function>\n")));
  EXPECT_FALSE(matches(g, call("\n<function=get_weather>\n" + city + "<parameter=note>\nabcd\n</parameter>\n" +
                               "</function>\n")));  // maxLength
  EXPECT_FALSE(matches(g, call("\n<function=get_weather>\n<parameter=city>\na<b\n</parameter>\n</function>\n")));
  EXPECT_FALSE(matches(g, call("\n<function=get_weather>\n</function>\n")));  // city is required
  EXPECT_FALSE(matches(g, call("\n<function=get_weather>\n" + city + "<parameter=days>\n9\n</parameter>\n" +
                               "</function>\n")));  // days <= 7
  EXPECT_FALSE(matches(g, call("\n<function=get_weather>\n" + city + "<parameter=unit>\nk\n</parameter>\n" +
                               "</function>\n")));  // enum
  EXPECT_FALSE(matches(g, call("\n<function=get_weather>\n" + city + "<parameter=unit>\n\"c\"\n</parameter>\n" +
                               "</function>\n")));  // a string parameter is raw text, not JSON
  EXPECT_FALSE(matches(g, call("\n<function=other>\n</function>\n")));
  EXPECT_FALSE(matches(g, "<tool_call>\n<function=now>\n</function>\n</tool_call>"));  // the tags are tokens
  EXPECT_FALSE(matches(g, call("\n<function=now>\n</function>\n") + "\n" + call("\n<function=now>\n</function>\n")));
  auto parallel = tool_call_grammar(kTools, true, 10, 11);
  EXPECT_TRUE(matches(parallel, call("\n<function=now>\n</function>\n") + "\n" +
                                    call("\n<function=get_weather>\n" + city + "</function>\n")));
}

TEST(ToolCallGrammar, TheParserReadsWhatTheGrammarAllows) {
  // A text the grammar accepts, through the chat output pipeline's tool parser: one call with
  // the typed arguments.
  const std::string text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                           "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";
  auto g = tool_call_grammar(kTools, false, 10, 11);
  std::string bytes = text;
  bytes.replace(bytes.find("<tool_call>"), 11, grammar::Vocabulary::special_token_bytes(10));
  bytes.replace(bytes.find("</tool_call>"), 12, grammar::Vocabulary::special_token_bytes(11));
  ASSERT_TRUE(matches(g, bytes));
  text::OutputParserOptions po;
  po.thinking_enabled = false;
  po.tools = kTools;
  const text::OutputResult r = text::parse_output(text, po);
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(Json::parse(r.tool_calls[0].arguments), Json::parse(R"({"city":"Paris","days":3})"));
  EXPECT_EQ(r.content, "");
}

TEST(ToolCallGrammar, ErrorsNameWhatCannotCompile) {
  EXPECT_THROW(tool_call_grammar(Json::array(), false, 10, 11), Error);
  EXPECT_THROW(tool_call_grammar(kTools, false, -1, 11), Error);
  EXPECT_THROW(tool_call_grammar(Json::parse(R"([{"type":"function","function":{}}])"), false, 10, 11), Error);
  try {
    tool_call_grammar(Json::parse(R"([{"type":"function","function":{"name":"f","parameters":
        {"properties":{"a":{"type":"object","if":{}}}}}}])"), false, 10, 11);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'if'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nemotron::server
