// Pre-tokenizers: every Split behavior (examples from the HF docs: "the-final--countdown"
// split on "-"), invert, Digits, Whitespace, WhitespaceSplit, Metaspace, ByteLevel.
#include <gtest/gtest.h>

#include "text/tokenizer/pre_tokenizer.h"
#include "text/tokenizer/tokenizer_json.h"

using Json = nemotron::text::TokJson;
using namespace nemotron::text;

namespace {

std::vector<std::string> run(const Json& spec, const std::string& text, bool at_start = true) {
  auto pt = make_pre_tokenizer(spec, "pre_tokenizer");
  std::vector<Piece> pieces{{text, at_start}};
  pt->split(pieces);
  std::vector<std::string> out;
  for (const auto& p : pieces) out.push_back(p.text);
  return out;
}

using V = std::vector<std::string>;

Json split(const char* behavior, bool invert = false, const char* literal = "-") {
  return Json{{"type", "Split"}, {"pattern", {{"String", literal}}}, {"behavior", behavior}, {"invert", invert}};
}

TEST(PreTokenizers, SplitBehaviorsFromTheHfDocs) {
  const std::string t = "the-final--countdown";
  EXPECT_EQ(run(split("Removed"), t), (V{"the", "final", "countdown"}));
  EXPECT_EQ(run(split("Isolated"), t), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(run(split("MergedWithPrevious"), t), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(run(split("MergedWithNext"), t), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(run(split("Contiguous"), t), (V{"the", "-", "final", "--", "countdown"}));
}

TEST(PreTokenizers, SplitInvertTreatsMatchesAsContent) {
  // invert: the pattern marks what to keep; with Removed the rest disappears.
  const Json re = Json{{"type", "Split"}, {"pattern", {{"Regex", "\\d+"}}}, {"behavior", "Removed"}, {"invert", true}};
  EXPECT_EQ(run(re, "ab12cd345"), (V{"12", "345"}));
  const Json re2 = Json{{"type", "Split"}, {"pattern", {{"Regex", "\\d+"}}}, {"behavior", "Removed"}, {"invert", false}};
  EXPECT_EQ(run(re2, "ab12cd345"), (V{"ab", "cd"}));
}

TEST(PreTokenizers, RegexUsesUnicodePropertiesAndLookahead) {
  // GPT-2 style: trailing spaces before a word stay with the word ("\s+(?!\S)").
  const Json bl = Json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  EXPECT_EQ(run(bl, "Hello  world"), (V{"Hello", "\xC4\xA0", "\xC4\xA0world"}));  // Ġ = space
  EXPECT_EQ(run(bl, "caf\xC3\xA9"), (V{"caf\xC3\x83\xC2\xA9"}));                   // é bytes mapped
  const Json prefixed = Json{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}};
  EXPECT_EQ(run(prefixed, "a b"), (V{"\xC4\xA0" "a\xC4\xA0" "b"}));
}

TEST(PreTokenizers, Digits) {
  EXPECT_EQ(run(Json{{"type", "Digits"}, {"individual_digits", true}}, "Call 123 please"),
            (V{"Call ", "1", "2", "3", " please"}));
  EXPECT_EQ(run(Json{{"type", "Digits"}, {"individual_digits", false}}, "Call 123 please"),
            (V{"Call ", "123", " please"}));
}

TEST(PreTokenizers, WhitespaceAndWhitespaceSplit) {
  EXPECT_EQ(run(Json{{"type", "Whitespace"}}, "Hello there! How's it?"),
            (V{"Hello", "there", "!", "How", "'", "s", "it", "?"}));
  EXPECT_EQ(run(Json{{"type", "WhitespaceSplit"}}, "Hello there!\t How's"), (V{"Hello", "there!", "How's"}));
}

TEST(PreTokenizers, MetaspacePrependSchemes) {
  const std::string m = "\xE2\x96\x81";  // ▁
  auto ms = [](const char* scheme, bool split_) {
    return Json{{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", scheme}, {"split", split_}};
  };
  EXPECT_EQ(run(ms("always", true), "Hey friend"), (V{m + "Hey", m + "friend"}));
  EXPECT_EQ(run(ms("never", true), "Hey friend"), (V{"Hey", m + "friend"}));
  EXPECT_EQ(run(ms("always", false), "Hey friend"), (V{m + "Hey" + m + "friend"}));
  // "first": only the piece that starts the original input gets the prefix.
  EXPECT_EQ(run(ms("first", false), "Hey", true), (V{m + "Hey"}));
  EXPECT_EQ(run(ms("first", false), "Hey", false), (V{"Hey"}));
}

TEST(PreTokenizers, SequenceAndErrors) {
  const Json seq = Json{{"type", "Sequence"}, {"pretokenizers", Json::array({Json{{"type", "WhitespaceSplit"}},
                                                                             Json{{"type", "Digits"}, {"individual_digits", true}}})}};
  EXPECT_EQ(run(seq, "ab12 c3"), (V{"ab", "1", "2", "c", "3"}));
  try {
    make_pre_tokenizer(Json{{"type", "Sequence"}, {"pretokenizers", Json::array({Json{{"type", "Nope"}}})}}, "pre_tokenizer");
    FAIL() << "expected SpecError";
  } catch (const SpecError& e) {
    EXPECT_EQ(e.path(), "pre_tokenizer.pretokenizers[0].type");
  }
  try {
    make_pre_tokenizer(Json{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}}, "pre_tokenizer");
    FAIL() << "expected SpecError";
  } catch (const SpecError& e) {
    EXPECT_EQ(e.path(), "pre_tokenizer.pattern.Regex");
  }
}

}  // namespace
