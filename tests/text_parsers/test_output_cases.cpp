// Hand-written expected outputs for the reasoning split (serving doc §3.3) and Qwen3-Coder
// tool calls (§4), checked on the whole-text API; then the chunking property: every
// chunking of every case gives exactly the whole-text result.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parser_test_util.h"
#include "text/parsers/output_parser.h"

namespace nemotron::text {
namespace {

using testing::all_chunkings;
using testing::stream;

const char* kTools = R"([
 {"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{
   "city":{"type":"string"},"days":{"type":"integer"},"unit":{"type":"string","enum":["c","f"]},
   "verbose":{"type":"boolean"},"ratio":{"type":"number"},"tags":{"type":"array"},
   "opts":{"type":"object"},"note":{"anyOf":[{"type":"string"},{"type":"null"}]},
   "limit":{"type":["integer","null"]},"any":{}}}}},
 {"type":"function","function":{"name":"write_file","parameters":{"type":"object","properties":{
   "path":{"type":"string"},"content":{"type":"string"}}}}},
 {"name":"noargs","parameters":{"type":"object","properties":{}}}
])";

struct Call {
  std::string name, arguments;
};

struct Case {
  const char* name;
  bool thinking;
  bool force;
  bool tools;        // use kTools
  bool choice_none;  // tool_choice "none"
  std::string text;
  std::string reasoning, content;
  std::vector<Call> calls;
};

const std::string kWeather =
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";
const std::string kNoArgs = "<tool_call>\n<function=noargs>\n</function>\n</tool_call>";

std::vector<Case> cases() {
  const std::string w = R"({"city":"Paris","days":3})";
  return {
      // §3.3 "thinking on, normal": one "\n" trimmed on each side of </think>.
      {"think_normal", true, false, false, false, "I think.\n</think>\nHello!", "I think.", "Hello!", {}},
      {"think_only_one_newline_trimmed", true, false, false, false, "A\n\n</think>\n\nB", "A\n", "\nB", {}},
      {"think_no_newlines", true, false, false, false, "A</think>B", "A", "B", {}},
      // §3.1: a repeated <think> at the start is dropped.
      {"think_repeated_open", true, false, false, false, "<think>\nA\n</think>\nB", "A", "B", {}},
      {"think_ws_then_open", true, false, false, false, " \n<think>A</think>B", "A", "B", {}},
      {"think_leading_newline_kept", true, false, false, false, "\nA</think>B", "\nA", "B", {}},
      {"think_inner_open_kept", true, false, false, false, "a <think> b</think>c", "a <think> b", "c", {}},
      {"think_second_close_is_content", true, false, false, false, "a</think>b</think>c", "a", "b</think>c", {}},
      {"think_empty_reasoning", true, false, false, false, "</think>\nC", "", "C", {}},
      {"think_empty_output", true, false, false, false, "", "", "", {}},
      // §3.3 "thinking off": content from token 0; stray tags are content.
      {"off_all_content", false, false, false, false, "Hello</think> world", "", "Hello</think> world", {}},
      {"off_think_tags_content", false, false, false, false, "<think>x</think>y", "", "<think>x</think>y", {}},
      // §3.3 "max_tokens hit before </think>": reasoning only.
      {"length_stop", true, false, false, false, "still thinking\n", "still thinking\n", "", {}},
      {"length_stop_partial_tag", true, false, false, false, "hmm </thi", "hmm </thi", "", {}},
      {"whitespace_only_output", true, false, false, false, "\n\n", "\n\n", "", {}},
      // force_nonempty_content (§3.2 super_v3/nemotron_v3, §3.3): reasoning moves to content.
      {"force_length_stop", true, true, false, false, "still thinking", "", "still thinking", {}},
      {"force_blank_content", true, true, false, false, "R\n</think>\n\n  ", "", "R", {}},
      {"force_content_present", true, true, false, false, "R\n</think>\nC", "R", "C", {}},
      {"force_leading_blank_kept", true, true, false, false, "R</think>\n\n C", "R", "\n C", {}},
      {"force_thinking_off_blank", false, true, false, false, "  ", "", "  ", {}},
      {"force_with_tool_call", true, true, true, false, "R\n</think>\n" + kNoArgs, "R", "", {{"noargs", "{}"}}},
      // §3.3 "<tool_call> emitted without </think>": reasoning ends there.
      {"tool_call_ends_reasoning", true, false, true, false, "Plan.\n" + kNoArgs, "Plan.", "", {{"noargs", "{}"}}},
      {"tool_call_in_reasoning_without_tools", true, false, false, false, "Plan <tool_call> x", "Plan <tool_call> x", "", {}},
      // §4.1 grammar, §4.2 typing.
      {"basic_call", false, false, true, false, kWeather, "", "", {{"get_weather", w}}},
      {"content_before_call", false, false, true, false, "Let me check.\n" + kWeather, "", "Let me check.\n", {{"get_weather", w}}},
      {"reasoning_then_call", true, false, true, false, "Need weather.\n</think>\n\n" + kWeather, "Need weather.", "\n", {{"get_weather", w}}},
      {"two_calls", false, false, true, false, kWeather + "\n" + kNoArgs + "\n", "", "", {{"get_weather", w}, {"noargs", "{}"}}},
      {"text_after_call_is_content", false, false, true, false, kNoArgs + "\nDone.", "", "\nDone.", {{"noargs", "{}"}}},
      {"types", false, false, true, false,
       "<tool_call>\n<function=get_weather>\n<parameter=verbose>\nTrue\n</parameter>\n<parameter=ratio>\n2.0\n</parameter>\n"
       "<parameter=tags>\n['a', \"b\"]\n</parameter>\n<parameter=opts>\n{\"k\": 1}\n</parameter>\n<parameter=note>\nNone\n"
       "</parameter>\n<parameter=limit>\nnull\n</parameter>\n<parameter=unit>\nc\n</parameter>\n</function>\n</tool_call>",
       "", "", {{"get_weather", R"({"verbose":true,"ratio":2,"tags":["a","b"],"opts":{"k":1},"note":null,"limit":null,"unit":"c"})"}}},
      {"type_fallbacks", false, false, true, false,
       "<tool_call>\n<function=get_weather>\n<parameter=extra>\n5\n</parameter>\n<parameter=days>\nabc\n</parameter>\n"
       "<parameter=verbose>\nyes\n</parameter>\n<parameter=ratio>\n0.5\n</parameter>\n<parameter=opts>\n{'a': True, 'b': None}\n"
       "</parameter>\n<parameter=city>\nnull\n</parameter>\n<parameter=any>\n[1, 2]\n</parameter>\n</function>\n</tool_call>",
       "", "", {{"get_weather", R"({"extra":"5","days":"abc","verbose":false,"ratio":0.5,"opts":{"a":true,"b":null},"city":"null","any":"[1, 2]"})"}}},
      // §4.1: "</parameter>" counts only when followed by a schema-known "<parameter=": an
      // undeclared parameter after a declared one stays inside the value (vLLM does the same).
      {"undeclared_param_after_declared_is_literal", false, false, true, false,
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nX\n</parameter>\n<parameter=extra>\n5\n</parameter>\n"
       "</function>\n</tool_call>", "", "",
       {{"get_weather", R"({"city":"X\n</parameter>\n<parameter=extra>\n5\n</parameter>"})"}}},
      {"double_encoded_object", false, false, true, false,
       "<tool_call>\n<function=get_weather>\n<parameter=opts>\n\"{'k': 'v'}\"\n</parameter>\n</function>\n</tool_call>",
       "", "", {{"get_weather", R"({"opts":{"k":"v"}})"}}},
      {"multiline_value_one_newline_stripped", false, false, true, false,
       "<tool_call>\n<function=write_file>\n<parameter=content>\n\nline1\nline2\n\n</parameter>\n</function>\n</tool_call>",
       "", "", {{"write_file", R"({"content":"\nline1\nline2\n"})"}}},
      {"empty_value", false, false, true, false,
       "<tool_call>\n<function=get_weather>\n<parameter=city>\n</parameter>\n</function>\n</tool_call>", "", "",
       {{"get_weather", R"({"city":""})"}}},
      // §4.1 leniency: missing </parameter> (final, and between parameters), missing closers at the end.
      {"missing_final_param_close", false, false, true, false,
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</function>\n</tool_call>", "", "",
       {{"get_weather", R"({"city":"Paris"})"}}},
      {"missing_param_close_between", false, false, true, false,
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
       "", "", {{"get_weather", w}}},
      {"truncated_call", false, false, true, false, "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar", "", "",
       {{"get_weather", R"({"city":"Par"})"}}},
      {"missing_tool_call_close", false, false, true, false, "<tool_call>\n<function=noargs>\n</function>\n", "", "",
       {{"noargs", "{}"}}},
      // §4.1: tag-like text inside values.
      {"literal_param_close_in_value", false, false, true, false,
       "<tool_call>\n<function=write_file>\n<parameter=content>\na</parameter>b\n</parameter>\n</function>\n</tool_call>", "", "",
       {{"write_file", R"({"content":"a</parameter>b"})"}}},
      {"inline_param_open_in_value", false, false, true, false,
       "<tool_call>\n<function=write_file>\n<parameter=content>\nx <parameter=path> z\n</parameter>\n<parameter=path>\n/t\n"
       "</parameter>\n</function>\n</tool_call>", "", "", {{"write_file", R"({"content":"x <parameter=path> z","path":"/t"})"}}},
      {"nested_call_example_in_value", false, false, true, false,
       "<tool_call>\n<function=write_file>\n<parameter=path>\nex.md\n</parameter>\n<parameter=content>\n<tool_call>\n<function=f>\n"
       "<parameter=content>\nhi\n</parameter>\n</function>\n</tool_call>\nmore\n</parameter>\n</function>\n</tool_call>", "", "",
       {{"write_file", R"({"path":"ex.md","content":"<tool_call>\n<function=f>\n<parameter=content>\nhi\n</parameter>\n</function>\n</tool_call>\nmore"})"}}},
      {"unknown_function_strings", false, false, true, false,
       "<tool_call>\n<function=unknown_fn>\n<parameter=x>\n5\n</parameter>\n</function>\n</tool_call>", "", "",
       {{"unknown_fn", R"({"x":"5"})"}}},
      // Malformed calls come back as content.
      {"malformed_no_function", false, false, true, false, "<tool_call>\nnot a function\n</tool_call>", "",
       "<tool_call>\nnot a function\n</tool_call>", {}},
      {"malformed_bad_name", false, false, true, false, "<tool_call>\n<function={{ name }}>\n</function>\n</tool_call>", "",
       "<tool_call>\n<function={{ name }}>\n</function>\n</tool_call>", {}},
      {"nested_tool_call_open", false, false, true, false, "<tool_call>\n" + kNoArgs, "", "<tool_call>\n", {{"noargs", "{}"}}},
      {"junk_in_body_ends_call", false, false, true, false, "<tool_call>\n<function=noargs>\nhello\n</function>\n</tool_call>", "",
       "\nhello\n</function>\n</tool_call>", {{"noargs", "{}"}}},
      {"tool_choice_none", false, false, true, true, kNoArgs, "", kNoArgs, {}},
      {"no_tools_no_parsing", false, false, false, false, kNoArgs, "", kNoArgs, {}},
      {"utf8_content", true, false, true, false, "réflexion 😀\n</think>\nnaïve ✓ " + kNoArgs, "réflexion 😀", "naïve ✓ ",
       {{"noargs", "{}"}}},
      {"utf8_value", false, false, true, false,
       "<tool_call>\n<function=write_file>\n<parameter=content>\n日本語 \"q\"\n</parameter>\n</function>\n</tool_call>", "", "",
       {{"write_file", R"({"content":"日本語 \"q\""})"}}},
      // Python: b"a\xffb\xe2\x82".decode("utf-8", "replace") == "a\ufffdb\ufffd" (a truncated
      // sequence is one maximal invalid subpart, so one U+FFFD).
      {"invalid_utf8_replaced", false, false, false, false, "a\xff" "b\xe2\x82", "", "a\xEF\xBF\xBD" "b\xEF\xBF\xBD", {}},
  };
}

OutputParserOptions options_for(const Case& c) {
  OutputParserOptions o;
  o.thinking_enabled = c.thinking;
  o.force_nonempty_content = c.force;
  o.tools = c.tools ? Json::parse(kTools) : Json::array();
  o.tool_choice_none = c.choice_none;
  o.make_tool_call_id = testing::counter_ids();
  return o;
}

class OutputCases : public ::testing::TestWithParam<Case> {};

TEST_P(OutputCases, WholeTextMatchesHandWrittenExpectation) {
  const Case& c = GetParam();
  const OutputResult r = parse_output(c.text, options_for(c));
  EXPECT_EQ(r.reasoning, c.reasoning);
  EXPECT_EQ(r.content, c.content);
  ASSERT_EQ(r.tool_calls.size(), c.calls.size());
  for (std::size_t i = 0; i < c.calls.size(); ++i) {
    EXPECT_EQ(r.tool_calls[i].id, "call_" + std::to_string(i));
    EXPECT_EQ(r.tool_calls[i].name, c.calls[i].name);
    EXPECT_EQ(r.tool_calls[i].arguments, c.calls[i].arguments);
    EXPECT_FALSE(Json::parse(r.tool_calls[i].arguments, nullptr, false).is_discarded());
  }
}

TEST_P(OutputCases, EveryChunkingGivesTheWholeTextResult) {
  const Case& c = GetParam();
  const OutputResult whole = parse_output(c.text, options_for(c));
  for (const auto& chunking : all_chunkings(c.text)) {
    SCOPED_TRACE(chunking.name);
    const OutputResult r = stream(chunking.pieces, options_for(c));
    EXPECT_EQ(r.reasoning, whole.reasoning);
    EXPECT_EQ(r.content, whole.content);
    ASSERT_EQ(r.tool_calls.size(), whole.tool_calls.size());
    for (std::size_t i = 0; i < r.tool_calls.size(); ++i) {
      EXPECT_EQ(r.tool_calls[i].name, whole.tool_calls[i].name);
      EXPECT_EQ(r.tool_calls[i].arguments, whole.tool_calls[i].arguments);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Doc, OutputCases, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace nemotron::text
