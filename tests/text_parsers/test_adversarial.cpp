// Hostile input: must not crash, must stay chunking-invariant, must stay fast.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "parser_test_util.h"
#include "text/parsers/output_parser.h"
#include "time_scale.h"

namespace nemotron::text {
namespace {

const char* kTools = R"([{"type":"function","function":{"name":"f","parameters":{"properties":{
  "a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"object"}}}}}])";

OutputParserOptions opts(bool thinking, bool force, bool tools) {
  OutputParserOptions o;
  o.thinking_enabled = thinking;
  o.force_nonempty_content = force;
  o.tools = tools ? Json::parse(kTools) : Json::array();
  return o;
}

void expect_same(const OutputResult& a, const OutputResult& b) {
  EXPECT_EQ(a.reasoning, b.reasoning);
  EXPECT_EQ(a.content, b.content);
  ASSERT_EQ(a.tool_calls.size(), b.tool_calls.size());
  for (std::size_t i = 0; i < a.tool_calls.size(); ++i) {
    EXPECT_EQ(a.tool_calls[i].name, b.tool_calls[i].name);
    EXPECT_EQ(a.tool_calls[i].arguments, b.tool_calls[i].arguments);
    EXPECT_FALSE(Json::parse(a.tool_calls[i].arguments, nullptr, false).is_discarded()) << a.tool_calls[i].arguments;
  }
}

// Random "tag soup" built from the structural pieces of both formats plus text, UTF-8
// and invalid bytes; every chunking must agree with the whole-text result.
TEST(Adversarial, FuzzedTagSoupIsChunkingInvariant) {
  const std::vector<std::string> atoms = {
      "<think>", "</think>", "<tool_call>", "</tool_call>", "<function=f>", "<function=g>", "<function=",
      "</function>", "<parameter=a>", "<parameter=b>", "<parameter=c>", "<parameter=z>", "</parameter>",
      "<parameter=", "\n", "\n", " ", "x", "12", "True", "{'k': [1, 2]}", "é", "😀", "\xff", "\xe2\x82", "<", ">",
      "</", "<tool_", "</thi", "None", "\"q\"",
      "<tool_call>\n<function=f>\n", "<tool_call><function=g>", "\n</parameter>\n<parameter=a>\n"};
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> pick(0, atoms.size() - 1), len(0, 40);
  int with_calls = 0, with_reasoning = 0, with_content = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string text;
    for (std::size_t n = len(rng); n > 0; --n) text += atoms[pick(rng)];
    const OutputParserOptions o = opts(iter % 3 != 0, iter % 4 == 0, iter % 5 != 0);
    SCOPED_TRACE(text);
    const OutputResult whole = parse_output(text, o);
    with_calls += !whole.tool_calls.empty();
    with_reasoning += !whole.reasoning.empty();
    with_content += !whole.content.empty();
    auto chunkings = testing::all_chunkings(text);
    chunkings.resize(std::min<std::size_t>(chunkings.size(), 12));
    for (const auto& c : chunkings) {
      SCOPED_TRACE(c.name);
      expect_same(testing::stream(c.pieces, o), whole);
    }
  }
  // The soup must exercise every path, or the test proves nothing.
  EXPECT_GT(with_calls, 30);
  EXPECT_GT(with_reasoning, 30);
  EXPECT_GT(with_content, 30);
}

// Found by fuzz_output_parser: a `<parameter=` name of exactly the 256-byte limit inside a
// value was valid when its '>' arrived in the same piece and invalid when a piece ended right
// before the '>', so the value ended at a different place. Every split point must agree.
TEST(Adversarial, NamesAtTheLengthLimitAreChunkingInvariant) {
  for (std::size_t n : {255, 256, 257}) {
    const std::string name(n, 'q');
    const std::string text = "<tool_call>\n<function=f>\n<parameter=b>\nx\n<parameter=" + name +
                             ">\ny\n</parameter>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call>";
    const OutputParserOptions o = opts(false, false, true);
    const OutputResult whole = parse_output(text, o);
    ASSERT_EQ(whole.tool_calls.size(), 1u) << n;
    for (std::size_t i = 1; i < text.size(); ++i) {
      SCOPED_TRACE("name " + std::to_string(n) + ", split at " + std::to_string(i));
      expect_same(testing::stream({text.substr(0, i), text.substr(i)}, o), whole);
    }
  }
}

TEST(Adversarial, DegenerateInputs) {
  for (const char* t : {"", "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_call></tool_call>",
                        "<tool_call><tool_call><tool_call>", "<function=f>", "</parameter>", "<<<<>>>>",
                        "<tool_call>\n<function=f>", "<tool_call>\n<function=f>\n<parameter=a>",
                        "<tool_call>\n<function=f>\n<parameter=a", "<tool_call>\n<function=f\n"}) {
    for (bool thinking : {true, false}) {
      SCOPED_TRACE(t);
      const OutputResult r = parse_output(t, opts(thinking, true, true));
      for (const auto& c : testing::all_chunkings(t)) expect_same(testing::stream(c.pieces, opts(thinking, true, true)), r);
    }
  }
  // Nested <tool_call> inside a value survives as text.
  const OutputResult r = parse_output(
      "<tool_call>\n<function=f>\n<parameter=b>\n<tool_call>\n<tool_call>\n</parameter>\n</function>\n</tool_call>",
      opts(false, false, true));
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, R"({"b":"<tool_call>\n<tool_call>"})");
}

// A 4 MB value streamed in 3-byte deltas must be linear-time.
TEST(Adversarial, HugeValueStreamsInLinearTime) {
  std::string value;
  while (value.size() < (4u << 20)) value += "line <x> </y> é\n";
  const std::string text = "<tool_call>\n<function=f>\n<parameter=b>\n" + value + "</parameter>\n</function>\n</tool_call>";
  OutputParserOptions o = opts(false, false, true);
  const auto t0 = std::chrono::steady_clock::now();
  OutputParser p(o);
  OutputResult r;
  for (std::size_t i = 0; i < text.size(); i += 3) accumulate(r, p.feed(std::string_view(text).substr(i, 3)));
  accumulate(r, p.finish());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, Json({{"b", value.substr(0, value.size() - 1)}}).dump());
  EXPECT_LT(secs, 5.0 * nemotron::testing::time_scale());
  // Long reasoning and content too.
  const std::string big(4u << 20, 'r');
  const OutputResult rr = parse_output(big + "</think>" + big, opts(true, false, true));
  EXPECT_EQ(rr.reasoning.size(), big.size());
  EXPECT_EQ(rr.content.size(), big.size());
}

TEST(Adversarial, InvalidUtf8EverywhereIsReplaced) {
  const std::string bad = "\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80";
  const OutputResult r = parse_output(bad + "</think>" + bad + "<tool_call>\n<function=f\xff>\n<parameter=b\xff>\n" + bad +
                                          "\n</parameter>\n</function>\n</tool_call>",
                                      opts(true, false, true));
  EXPECT_TRUE(utf8_valid(r.reasoning));
  EXPECT_TRUE(utf8_valid(r.content));
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_TRUE(utf8_valid(r.tool_calls[0].name));
  EXPECT_TRUE(utf8_valid(r.tool_calls[0].arguments));
  EXPECT_FALSE(Json::parse(r.tool_calls[0].arguments, nullptr, false).is_discarded());
}

}  // namespace
}  // namespace nemotron::text
