// EBNF / GBNF front end and the composition helpers.
#include <gtest/gtest.h>

#include "grammar_test_util.h"
#include "util/error.h"

using namespace nemotron::text::grammar;
using grammar_test::matches;
using grammar_test::viable;

namespace {

// llama.cpp's grammars/json.gbnf, written from its description (GBNF syntax: rule per line,
// alternatives continuing after '|', repetition bounds, comments).
const char* kJsonGbnf = R"(
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
)";

void expect_error(const std::string& text, const std::string& needle) {
  try {
    from_ebnf(text);
    FAIL() << "no error for " << text;
  } catch (const nemotron::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Ebnf, LlamaCppJsonGrammar) {
  auto g = from_ebnf(kJsonGbnf);
  EXPECT_TRUE(matches(g, R"({"a": [1, 2.5, -3e12, true, null], "b": {"c": "d\n\u00e9"}})"));
  EXPECT_TRUE(matches(g, "{}"));
  EXPECT_TRUE(matches(g, "{\n  \"k\": \"\xE4\xB8\xAD\"\n}"));
  EXPECT_FALSE(matches(g, R"({"a": })"));
  EXPECT_FALSE(matches(g, R"([1])"));  // root is an object
  EXPECT_TRUE(viable(g, R"({"a": [1, )"));
  EXPECT_FALSE(viable(g, R"({"a" 1)"));
}

TEST(Ebnf, Constructs) {
  auto g = from_ebnf(R"(
    root ::= greeting ("," ' ' name)+ "!"? [0-9]{2,3}
    greeting ::= "hi" | "hello"   # two ways
    name ::= [A-Z] [a-z]* | "\u00c9mile" | .
  )");
  EXPECT_TRUE(matches(g, "hi, Bob!12"));
  EXPECT_TRUE(matches(g, "hello, Ann, \xC3\x89mile123"));
  EXPECT_TRUE(matches(g, "hi, \xE4\xB8\xAD" "99"));
  EXPECT_FALSE(matches(g, "hi!12"));
  EXPECT_FALSE(matches(g, "hi, Bob!1234"));
}

TEST(Ebnf, ErrorsNameLineAndColumn) {
  expect_error("root ::= foo", "rule 'foo' is referenced but not defined at line 1, column 10");
  expect_error("root ::= \"a\"\nroot ::= \"b\"", "defined twice at line 2, column 1");
  expect_error("root ::= [a-", "unterminated character class at line 1, column 10");
  expect_error("root ::= \"abc", "unterminated literal");
  expect_error("root ::= (\"a\"", "missing ')'");
  expect_error("root ::= x \"a\"\nx ::= root \"b\" | \"c\"", "left recursion");
  expect_error("start ::= \"a\"", "no rule named 'root'");
  expect_error("root ::= \"a\"{5,2}", "n < m");
}

TEST(Ebnf, ToolCallComposition) {
  // The tool-call format: literal tags around a schema-typed JSON value.
  auto args = from_json_schema(nemotron::parse_json(R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})", "t"));
  auto call = Grammar::sequence({Grammar::literal("<tool_call>\n<function="),
                                 Grammar::alternatives({Grammar::literal("get_weather"), Grammar::literal("get_time")}),
                                 Grammar::literal(">\n"), args, Grammar::literal("\n</function>\n</tool_call>")});
  EXPECT_TRUE(matches(call, "<tool_call>\n<function=get_time>\n{\"city\": \"Oslo\"}\n</function>\n</tool_call>"));
  EXPECT_FALSE(matches(call, "<tool_call>\n<function=get_date>\n{\"city\": \"Oslo\"}\n</function>\n</tool_call>"));
  EXPECT_FALSE(matches(call, "<tool_call>\n<function=get_time>\n{}\n</function>\n</tool_call>"));
  auto many = Grammar::repeat(call, 1, 2);
  const std::string one = "<tool_call>\n<function=get_time>\n{\"city\":\"a\"}\n</function>\n</tool_call>";
  EXPECT_TRUE(matches(many, one + one));
  EXPECT_FALSE(matches(many, one + one + one));
}
