// JSON Schema front end: accepts / rejects per keyword, documented restrictions, errors
// naming the keyword and its JSON pointer.
#include <gtest/gtest.h>

#include "grammar_test_util.h"
#include "util/error.h"

using namespace nemotron::text::grammar;
using grammar_test::matches;
using grammar_test::viable;

namespace {

std::shared_ptr<const Grammar> schema(const std::string& text, JsonOptions opt = {}) {
  return from_json_schema(nemotron::parse_json(text, "test schema"), opt);
}

void expect_error(const std::string& text, const std::string& needle) {
  try {
    schema(text);
    FAIL() << "no error for " << text;
  } catch (const nemotron::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(JsonSchema, ScalarTypesAndTypeArrays) {
  auto g = schema(R"({"type":["string","null"]})");
  EXPECT_TRUE(matches(g, "\"x\""));
  EXPECT_TRUE(matches(g, "null"));
  EXPECT_FALSE(matches(g, "1"));
  auto b = schema(R"({"type":"boolean"})");
  EXPECT_TRUE(matches(b, "true"));
  EXPECT_FALSE(matches(b, "\"true\""));
  auto n = schema(R"({"type":"number"})");
  for (const char* ok : {"0", "-1.5", "3e7", "2.25E-10", "10"}) EXPECT_TRUE(matches(n, ok)) << ok;
  for (const char* bad : {"01", "1.", ".5", "+1", "1e", "NaN"}) EXPECT_FALSE(matches(n, bad)) << bad;
  auto i = schema(R"({"type":"integer"})");
  EXPECT_TRUE(matches(i, "-42"));
  EXPECT_FALSE(matches(i, "4.0"));
}

TEST(JsonSchema, IntegerBoundsExhaustive) {
  struct Case {
    const char* schema;
    int lo, hi;
  };
  for (const Case& c : {Case{R"({"type":"integer","minimum":-17,"maximum":123})", -17, 123},
                        Case{R"({"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":100})", 1, 99},
                        Case{R"({"type":"integer","minimum":-250})", -250, 1000000},
                        Case{R"({"type":"integer","maximum":-3})", -1000000, -3},
                        Case{R"({"type":"integer","minimum":7,"maximum":7})", 7, 7},
                        Case{R"({"type":"integer","minimum":-1.5,"maximum":2.5})", -1, 2}}) {
    auto g = schema(c.schema);
    for (int v = -400; v <= 400; ++v) EXPECT_EQ(matches(g, std::to_string(v)), v >= c.lo && v <= c.hi) << c.schema << " " << v;
    EXPECT_FALSE(matches(g, "-0")) << c.schema;
    EXPECT_FALSE(matches(g, "007")) << c.schema;
  }
}

TEST(JsonSchema, NumberBounds) {
  auto g = schema(R"({"type":"number","minimum":-2.5,"exclusiveMaximum":3})");
  for (const char* ok : {"-2", "-1.75", "0", "0.5", "2.999", "-0.5", "2"}) EXPECT_TRUE(matches(g, ok)) << ok;
  for (const char* bad : {"3", "3.5", "-3", "4", "1e2"}) EXPECT_FALSE(matches(g, bad)) << bad;
  // Documented restriction: fractions only where the whole interval (i, i+1) is in range.
  EXPECT_FALSE(matches(g, "-2.25"));
}

TEST(JsonSchema, ObjectsPropertyOrderRequiredOptional) {
  auto g = schema(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},
                      "required":["b"]})");
  EXPECT_TRUE(matches(g, R"({"b":"x"})"));
  EXPECT_TRUE(matches(g, R"({"a":1,"b":"x","c":true})"));
  EXPECT_TRUE(matches(g, R"({ "a" : 1 , "b" : "x" })"));
  EXPECT_FALSE(matches(g, R"({"a":1})"));             // b is required
  EXPECT_FALSE(matches(g, R"({"b":"x","a":1})"));     // schema order
  EXPECT_FALSE(matches(g, R"({"b":"x","d":1})"));     // no extras when properties are declared
  EXPECT_FALSE(matches(g, R"({"b":"x",})"));
  EXPECT_FALSE(matches(g, R"({,"b":"x"})"));
}

TEST(JsonSchema, AdditionalProperties) {
  auto any = schema(R"({"type":"object"})");
  EXPECT_TRUE(matches(any, R"({"x":[1,{"y":null}],"z":"w"})"));
  auto typed = schema(R"({"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":{"type":"string"}})");
  EXPECT_TRUE(matches(typed, R"({"id":1,"name":"n","k":"v"})"));
  EXPECT_TRUE(matches(typed, R"({"name":"n"})"));
  EXPECT_FALSE(matches(typed, R"({"id":1,"name":2})"));
  EXPECT_FALSE(matches(typed, R"({"id":1,"id":"x"})"));   // an extra key never equals a declared one
  EXPECT_TRUE(matches(typed, R"({"id":1,"idx":"x"})"));
  EXPECT_TRUE(matches(typed, R"({"id":1,"i":"x"})"));
  auto closed = schema(R"({"type":"object","properties":{"a":{}},"additionalProperties":false})");
  EXPECT_FALSE(matches(closed, R"({"b":1})"));
  auto open = schema(R"({"type":"object","properties":{"a":{"type":"null"}},"additionalProperties":true})");
  EXPECT_TRUE(matches(open, R"({"a":null,"b":[true]})"));
}

TEST(JsonSchema, ArraysItemsPrefixItemsBounds) {
  auto g = schema(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3})");
  EXPECT_FALSE(matches(g, "[]"));
  EXPECT_TRUE(matches(g, "[1]"));
  EXPECT_TRUE(matches(g, "[1, 2, 3]"));
  EXPECT_FALSE(matches(g, "[1,2,3,4]"));
  EXPECT_FALSE(matches(g, "[\"a\"]"));
  auto t = schema(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})");
  EXPECT_TRUE(matches(t, R"(["a",1])"));
  EXPECT_TRUE(matches(t, R"(["a"])"));
  EXPECT_FALSE(matches(t, R"(["a",1,2])"));
  EXPECT_FALSE(matches(t, R"([1])"));
  auto d7 = schema(R"({"items":[{"type":"null"}],"additionalItems":{"type":"boolean"}})");
  EXPECT_TRUE(matches(d7, "[null,true,false]"));
  EXPECT_FALSE(matches(d7, "[null,1]"));
}

TEST(JsonSchema, StringsLengthPatternFormat) {
  auto g = schema(R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_FALSE(matches(g, "\"a\""));
  EXPECT_TRUE(matches(g, "\"ab\""));
  EXPECT_TRUE(matches(g, "\"\xE4\xB8\xAD\xE6\x96\x87\""));  // two characters, six bytes
  EXPECT_TRUE(matches(g, "\"\\n\\u00e9x\""));              // escapes count as one character
  EXPECT_FALSE(matches(g, "\"abcd\""));
  EXPECT_FALSE(matches(schema(R"({"type":"string"})"), "\"\\ud800\""));  // no surrogate escapes
  auto date = schema(R"({"type":"string","format":"date"})");
  EXPECT_TRUE(matches(date, "\"2024-02-28\""));
  EXPECT_FALSE(matches(date, "\"2024-02-30\""));
  EXPECT_FALSE(matches(date, "\"2024-13-01\""));
  auto ip = schema(R"({"type":"string","format":"ipv4"})");
  EXPECT_TRUE(matches(ip, "\"192.168.0.255\""));
  EXPECT_FALSE(matches(ip, "\"256.1.1.1\""));
  EXPECT_FALSE(matches(ip, "\"01.1.1.1\""));
  EXPECT_TRUE(matches(schema(R"({"format":"uuid"})"), "\"123e4567-e89b-12d3-a456-426614174000\""));
  EXPECT_TRUE(matches(schema(R"({"format":"email"})"), "\"a.b+c@example.co.uk\""));
  EXPECT_TRUE(matches(schema(R"({"format":"date-time"})"), "\"2024-01-02T03:04:05.123Z\""));
  EXPECT_TRUE(matches(schema(R"({"format":"time"})"), "\"23:59:59+01:00\""));
}

TEST(JsonSchema, EnumConstAnyOfAllOf) {
  auto e = schema(R"({"enum":["red",1,null,{"k":[true]}]})");
  EXPECT_TRUE(matches(e, "\"red\""));
  EXPECT_TRUE(matches(e, "{\"k\":[true]}"));
  EXPECT_FALSE(matches(e, "\"blue\""));
  auto typed = schema(R"({"type":"string","enum":["a",1]})");
  EXPECT_FALSE(matches(typed, "1"));
  EXPECT_TRUE(matches(schema(R"({"const":"x"})"), "\"x\""));
  auto any = schema(R"({"anyOf":[{"type":"integer"},{"type":"string","maxLength":1}]})");
  EXPECT_TRUE(matches(any, "5"));
  EXPECT_TRUE(matches(any, "\"a\""));
  EXPECT_FALSE(matches(any, "\"ab\""));
  auto all = schema(R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
                                 {"properties":{"b":{"type":"string"}},"required":["b"]}]})");
  EXPECT_TRUE(matches(all, R"({"a":1,"b":"x"})"));
  EXPECT_FALSE(matches(all, R"({"a":1})"));
  auto dist = schema(R"({"type":"object","properties":{"x":{"type":"integer"}},"required":["x"],
                         "anyOf":[{"properties":{"y":{"const":1}},"required":["y"]},{"properties":{"z":{"const":2}},"required":["z"]}]})");
  EXPECT_TRUE(matches(dist, R"({"x":0,"y":1})"));
  EXPECT_TRUE(matches(dist, R"({"x":0,"z":2})"));
  EXPECT_FALSE(matches(dist, R"({"x":0})"));
}

TEST(JsonSchema, RefsAndRecursion) {
  auto g = schema(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
                      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}},"$ref":"#/$defs/node"})");
  EXPECT_TRUE(matches(g, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]})"));
  EXPECT_FALSE(matches(g, R"({"v":1,"kids":[{"w":2}]})"));
  auto root = schema(R"({"type":"array","items":{"anyOf":[{"type":"integer"},{"$ref":"#"}]}})");
  EXPECT_TRUE(matches(root, "[1,[2,[3,[]]]]"));
  auto defs = schema(R"({"definitions":{"a b":{"type":"null"}},"properties":{"x":{"$ref":"#/definitions/a%20b"}}})");
  EXPECT_TRUE(matches(defs, R"({"x":null})"));
}

TEST(JsonSchema, WhitespaceIsBounded) {
  auto g = schema(R"({"type":"array","items":{"type":"integer"}})", JsonOptions{4});
  EXPECT_TRUE(matches(g, "[\n\t 1 ,\r\n    2 ]"));
  EXPECT_TRUE(matches(g, "[1, 2]"));
  EXPECT_FALSE(matches(g, "[\n     1]"));  // five
  EXPECT_FALSE(matches(g, "[  1]"));       // a run of spaces mid-line
  EXPECT_FALSE(matches(g, "[\n\n1]"));    // a blank line
  EXPECT_FALSE(matches(g, "[ \n1]"));
  EXPECT_TRUE(matches(schema(R"({"type":"array"})", JsonOptions{0}), "[1,[2]]"));
  EXPECT_FALSE(matches(schema(R"({"type":"array"})", JsonOptions{0}), "[1, 2]"));
  // Top level: no whitespace before or after the value.
  EXPECT_FALSE(matches(g, " [1]"));
  EXPECT_FALSE(matches(g, "[1]\n"));
  EXPECT_TRUE(matches(g, "[1]"));
}

TEST(JsonSchema, JsonObjectMode) {
  auto g = json_object();
  EXPECT_TRUE(matches(g, R"({"a": [1, "b", {"c": null}], "d": -0.5e3})"));
  EXPECT_FALSE(matches(g, "[1]"));
  EXPECT_FALSE(matches(g, "\"s\""));
  EXPECT_TRUE(viable(g, "{\"a\": [1, {\"b\": \"x"));
}

TEST(JsonSchema, ErrorsNameKeywordAndPointer) {
  expect_error(R"({"properties":{"a":{"if":{"type":"string"}}}})", "unsupported JSON Schema keyword 'if' at /properties/a");
  expect_error(R"({"type":"array","items":{"not":{}}})", "unsupported JSON Schema keyword 'not' at /items");
  expect_error(R"({"patternProperties":{"^a":{}}})", "unsupported JSON Schema keyword 'patternProperties' at /");
  expect_error(R"({"type":"integer","multipleOf":3})", "'multipleOf' at /");
  expect_error(R"({"type":"string","pattern":"a","maxLength":3})", "'maxLength' at / (together with 'pattern')");
  expect_error(R"({"type":"string","format":"uri"})", "'format' at / (format 'uri')");
  expect_error(R"({"$ref":"other.json#/a"})", "'$ref' at /: only local references");
  expect_error(R"({"$ref":"#/definitions/missing"})", "does not resolve");
  expect_error(R"({"type":"strin"})", "invalid JSON Schema at /type: unknown type 'strin'");
  expect_error(R"~({"properties":{"a":{"type":"string","pattern":"(?=x)"}}})~", "lookahead assertions are not supported at position 0");
  expect_error(R"({"allOf":[{"pattern":"a"},{"pattern":"b"}]})", "conflicting values of 'pattern'");
  expect_error("false", "matches no text");
}
