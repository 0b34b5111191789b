// BPE model on hand-made vocabularies: merge order by rank, both merge formats, byte
// fallback, unk handling, ignore_merges, continuing_subword_prefix.
#include <gtest/gtest.h>

#include "test_helpers.h"

using nemotron::Json;
using nemotron::text::Tokenizer;
using nemotron::text::testing::bpe_json;

namespace {

const std::vector<std::string> kVocab = {"a", "b", "c", "ab", "bc", "abc", "cc", "ccc"};

TEST(Bpe, AppliesMergesByRankNotByPosition) {
  // "b c" has the better rank, so "abc" = a + bc (no "a bc" merge) -> [a, bc].
  const Tokenizer t = Tokenizer::from_json(bpe_json(kVocab, Json{"b c", "a b", "ab c"}), "t");
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{0, 4}));
  // Other order: "a b" first, then "ab c" -> [abc].
  const Tokenizer u = Tokenizer::from_json(bpe_json(kVocab, Json{"a b", "b c", "ab c"}), "u");
  EXPECT_EQ(u.encode("abc"), (std::vector<int32_t>{5}));
  EXPECT_EQ(u.encode("abcbc"), (std::vector<int32_t>{5, 4}));
}

TEST(Bpe, TiesGoToTheLeftmostPair) {
  // "ccc": both pairs are (c, c); the left one merges first -> [cc, c].
  const Tokenizer t = Tokenizer::from_json(bpe_json(kVocab, Json{"c c", "cc c"}), "t");
  EXPECT_EQ(t.encode("ccc"), (std::vector<int32_t>{7}));
  const Tokenizer u = Tokenizer::from_json(bpe_json(kVocab, Json{"c c"}), "u");
  EXPECT_EQ(u.encode("ccc"), (std::vector<int32_t>{6, 2}));
  EXPECT_EQ(u.encode("cccc"), (std::vector<int32_t>{6, 6}));
}

TEST(Bpe, PairFormMergesEqualStringForm) {
  const Tokenizer s = Tokenizer::from_json(bpe_json(kVocab, Json{"a b", "ab c"}), "s");
  const Tokenizer p = Tokenizer::from_json(bpe_json(kVocab, Json::array({Json::array({"a", "b"}), Json::array({"ab", "c"})})), "p");
  for (const char* text : {"abc", "cab", "abcabcc", "bca"}) EXPECT_EQ(s.encode(text), p.encode(text)) << text;
}

TEST(Bpe, ByteFallbackAndUnk) {
  std::vector<std::string> vocab = {"<unk>", "a"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab.push_back(name);
  }
  const Tokenizer t = Tokenizer::from_json(
      bpe_json(vocab, Json::array(), Json{{"byte_fallback", true}, {"unk_token", "<unk>"}}), "t");
  // "é" = C3 A9 -> <0xC3> <0xA9> (ids 2 + byte).
  EXPECT_EQ(t.encode("a\xC3\xA9"), (std::vector<int32_t>{1, 2 + 0xC3, 2 + 0xA9}));
  // Without byte fallback: unknown chars become <unk>; fuse_unk joins a run into one.
  const std::vector<std::string> small = {"<unk>", "a"};
  const Tokenizer u = Tokenizer::from_json(bpe_json(small, Json::array(), Json{{"unk_token", "<unk>"}}), "u");
  EXPECT_EQ(u.encode("axya"), (std::vector<int32_t>{1, 0, 0, 1}));
  const Tokenizer f = Tokenizer::from_json(
      bpe_json(small, Json::array(), Json{{"unk_token", "<unk>"}, {"fuse_unk", true}}), "f");
  EXPECT_EQ(f.encode("axya"), (std::vector<int32_t>{1, 0, 1}));
  // No unk token at all: unknown characters are dropped.
  const Tokenizer d = Tokenizer::from_json(bpe_json(small, Json::array()), "d");
  EXPECT_EQ(d.encode("axa"), (std::vector<int32_t>{1, 1}));
}

TEST(Bpe, IgnoreMergesTakesWholeWordsFromTheVocab) {
  // "abc" is in the vocab but no merge path leads there.
  const Tokenizer t = Tokenizer::from_json(bpe_json(kVocab, Json{"b c"}, Json{{"ignore_merges", true}}), "t");
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{5}));
  const Tokenizer u = Tokenizer::from_json(bpe_json(kVocab, Json{"b c"}), "u");
  EXPECT_EQ(u.encode("abc"), (std::vector<int32_t>{0, 4}));
}

TEST(Bpe, ContinuingSubwordPrefix) {
  const std::vector<std::string> vocab = {"a", "##b", "##c", "ab", "##bc", "abc"};
  const Tokenizer t = Tokenizer::from_json(
      bpe_json(vocab, Json{"##b ##c", "a ##bc"}, Json{{"continuing_subword_prefix", "##"}}), "t");
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{5}));
  EXPECT_EQ(t.encode("ab"), (std::vector<int32_t>{0, 1}));
}

TEST(Bpe, LongWordsAreLinearithmic) {
  // One 200k-character word (no pre-tokenizer) must not take quadratic time.
  const Tokenizer t = Tokenizer::from_json(bpe_json(kVocab, Json{"c c", "cc c"}), "t");
  // All (c, c) merges (rank 0) happen first, left to right: 100000 "cc" then a "c", and the
  // final (cc, c) pair merges last.
  const auto ids = t.encode(std::string(200001, 'c'));
  ASSERT_EQ(ids.size(), 100000u);
  EXPECT_EQ(ids.front(), 6);
  EXPECT_EQ(ids.back(), 7);
}

}  // namespace
