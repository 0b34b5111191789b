// Regex front end: accepts / rejects per construct (a matcher fed bytes directly), errors
// naming the position.
#include <gtest/gtest.h>

#include "grammar_test_util.h"
#include "util/error.h"

using namespace nemotron::text::grammar;
using grammar_test::matches;

namespace {

void expect_error(const std::string& pattern, const std::string& needle) {
  try {
    from_regex(pattern);
    FAIL() << "no error for /" << pattern << "/";
  } catch (const nemotron::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Regex, LiteralsAndAlternation) {
  auto g = from_regex("cat|dog|");
  EXPECT_TRUE(matches(g, "cat"));
  EXPECT_TRUE(matches(g, "dog"));
  EXPECT_TRUE(matches(g, ""));
  EXPECT_FALSE(matches(g, "ca"));
  EXPECT_FALSE(matches(g, "cats"));
}

TEST(Regex, Quantifiers) {
  auto g = from_regex("ab?c*d+e{2}f{1,3}g{2,}");
  EXPECT_TRUE(matches(g, "adeefgg"));
  EXPECT_TRUE(matches(g, "abcccdddeefffggggg"));
  EXPECT_FALSE(matches(g, "abbdeefgg"));
  EXPECT_FALSE(matches(g, "aeefgg"));     // d+ needs one
  EXPECT_FALSE(matches(g, "adefgg"));     // e{2}
  EXPECT_FALSE(matches(g, "adeeffffgg")); // f{1,3}
  EXPECT_FALSE(matches(g, "adeefg"));     // g{2,}
  auto lazy = from_regex("a+?b*?");
  EXPECT_TRUE(matches(lazy, "aab"));
}

TEST(Regex, ClassesAndEscapes) {
  auto g = from_regex("[a-c_][^a-z0-9]\\d\\w\\s.\\.\\x41\\u00e9\\u{1F600}");
  EXPECT_TRUE(matches(g, "b#7_ x.A\xC3\xA9\xF0\x9F\x98\x80"));
  EXPECT_FALSE(matches(g, "d#7_ x.A\xC3\xA9\xF0\x9F\x98\x80"));
  EXPECT_FALSE(matches(g, "bq7_ x.A\xC3\xA9\xF0\x9F\x98\x80"));
  EXPECT_FALSE(matches(g, "b#7_ xxA\xC3\xA9\xF0\x9F\x98\x80"));  // \. is a dot
  EXPECT_FALSE(matches(from_regex("."), "\n"));
  EXPECT_TRUE(matches(from_regex("."), "\xE4\xB8\xAD"));  // one character, three bytes
  EXPECT_FALSE(matches(from_regex("."), "ab"));
  EXPECT_TRUE(matches(from_regex("[^a]"), "\xF0\x9F\x98\x80"));
  EXPECT_FALSE(matches(from_regex("[^a]"), "\xED\xA0\x80"));  // a surrogate is not UTF-8
  EXPECT_TRUE(matches(from_regex("[\\d-]+"), "1-2"));
  EXPECT_TRUE(matches(from_regex("[]a]|b"), "b"));  // ECMAScript: [] is an empty class
}

TEST(Regex, ShorthandsAreRightInBothDialects) {
  // \d is ASCII only; \D excludes every Unicode digit (Python's \d), e.g. U+0663.
  EXPECT_FALSE(matches(from_regex("\\d"), "\xD9\xA3"));
  EXPECT_FALSE(matches(from_regex("\\D"), "\xD9\xA3"));
  EXPECT_TRUE(matches(from_regex("\\D"), "x"));
  EXPECT_FALSE(matches(from_regex("\\W"), "\xC3\xA9"));  // é is a word character in Python
  EXPECT_FALSE(matches(from_regex("[^\\w]"), "\xC3\xA9"));
  EXPECT_TRUE(matches(from_regex("\\s"), "\xC2\xA0"));
  EXPECT_FALSE(matches(from_regex("\\s"), "\xEF\xBB\xBF"));  // U+FEFF: ECMAScript only
}

TEST(Regex, GroupsAndAnchors) {
  auto g = from_regex("^(?:ab|c)(?<n>d)*$");
  EXPECT_TRUE(matches(g, "abddd"));
  EXPECT_TRUE(matches(g, "c"));
  EXPECT_FALSE(matches(g, "abc"));
}

TEST(Regex, SearchModeForJsonPattern) {
  // JSON Schema patterns are unanchored: "a+" matches any string containing an a.
  auto g = from_json_schema(nemotron::parse_json(R"({"type":"string","pattern":"a+"})", "t"));
  EXPECT_TRUE(matches(g, "\"xxaxx\""));
  EXPECT_FALSE(matches(g, "\"xyz\""));
  auto anchored = from_json_schema(nemotron::parse_json(R"({"type":"string","pattern":"^a+$"})", "t"));
  EXPECT_FALSE(matches(anchored, "\"xa\""));
  EXPECT_TRUE(matches(anchored, "\"aa\""));
  // Characters JSON must escape appear escaped: the DECODED string matches.
  auto q = from_json_schema(nemotron::parse_json(R"({"type":"string","pattern":"^\"\\n$"})", "t"));
  EXPECT_TRUE(matches(q, "\"\\\"\\n\""));
  EXPECT_FALSE(matches(q, "\"\"\n\""));
}

TEST(Regex, RefusedConstructsNameThePosition) {
  expect_error("(a)\\1", "backreferences are not supported at position 3");
  expect_error("a(?=b)", "lookahead assertions are not supported at position 1");
  expect_error("(?<!a)b", "lookbehind assertions are not supported at position 0");
  expect_error("\\bword", "word boundary");
  expect_error("\\p{L}", "Unicode property escapes");
  expect_error("a^b", "anchor '^' inside the pattern is not supported at position 1");
  expect_error("(a", "missing ')' at position 0");
  expect_error("a)", "unmatched ')' at position 1");
  expect_error("*a", "nothing to repeat at position 0");
  expect_error("[z-a]", "range out of order");
  expect_error("a{3,2}", "max < min");
  expect_error("(?i)a", "inline flags");
}
