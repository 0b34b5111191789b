// The demo tokenizer end to end (Nemotron 3 layout), added-token options, config files, load
// errors, and the incremental detokenizer's properties.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "test_helpers.h"
#include "text/tokenizer/pre_tokenizer.h"
#include "text/utf8.h"
#include "util/error.h"

using nemotron::Json;
using nemotron::text::IncrementalDetokenizer;
using nemotron::text::Tokenizer;
using nemotron::text::testing::bpe_json;
using nemotron::text::testing::demo_tokenizer;

namespace {

TEST(Tokenizer, DemoHasNemotronLayout) {
  const Tokenizer t = demo_tokenizer();
  EXPECT_EQ(t.vocab_size(), 8192);  // the trained demo model (tools/train_demo)
  EXPECT_EQ(t.token_to_id("<unk>"), 0);
  EXPECT_EQ(t.token_to_id("<s>"), 1);
  EXPECT_EQ(t.token_to_id("</s>"), 2);
  EXPECT_EQ(t.token_to_id("<|im_start|>"), 10);
  EXPECT_EQ(t.token_to_id("<|im_end|>"), 11);
  EXPECT_EQ(t.token_to_id("<think>"), 12);
  EXPECT_EQ(t.token_to_id("</think>"), 13);
  EXPECT_EQ(t.encode("\n"), (std::vector<int32_t>{1010}));
  EXPECT_EQ(t.encode("A"), (std::vector<int32_t>{1000 + 'A'}));
  EXPECT_TRUE(t.is_special(11));
  EXPECT_FALSE(t.is_special(1010));
  EXPECT_EQ(t.id_to_token(1032), "\xC4\xA0");  // byte 0x20 as GPT-2's Ġ
  EXPECT_EQ(t.token_to_id("no such token"), -1);
  EXPECT_EQ(t.bos_token(), "<s>");
  EXPECT_EQ(t.eos_token(), "<|im_end|>");
  EXPECT_EQ(t.chat_template(), nemotron::read_file(NEMOTRON_SOURCE_DIR "/data/chat_templates/nemotron3-nano-30b-a3b.chat_template.jinja"));
}

TEST(Tokenizer, SpecialTokensInText) {
  const Tokenizer t = demo_tokenizer();
  const auto ids = t.encode("<|im_start|>user\nhi<|im_end|>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 10);
  EXPECT_EQ(ids.back(), 11);
  // parse_special=false: the markers are plain text.
  const auto plain = t.encode("<|im_end|>", false, false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(t.decode(plain), "<|im_end|>");
  EXPECT_EQ(t.decode(ids, true), "user\nhi");
  EXPECT_EQ(t.decode(ids, false), "<|im_start|>user\nhi<|im_end|>");
}

TEST(Tokenizer, InvalidUtf8NeverThrowsAndBecomesReplacementChars) {
  const Tokenizer t = demo_tokenizer();
  const std::string bad = "a\xFF\xE2\x82 b\xC0";
  const auto ids = t.encode(bad);
  EXPECT_EQ(t.decode(ids), "a\xEF\xBF\xBD\xEF\xBF\xBD b\xEF\xBF\xBD");
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_TRUE(nemotron::text::utf8_valid(t.decode(t.encode(all))));
}

TEST(Tokenizer, AddedTokenOptions) {
  Json added = Json::array();
  auto tok = [&](int id, const char* content, bool special, bool lstrip, bool rstrip, bool single_word) {
    added.push_back({{"id", id}, {"content", content}, {"special", special}, {"lstrip", lstrip}, {"rstrip", rstrip},
                     {"single_word", single_word}, {"normalized", false}});
  };
  tok(3, "[M]", true, true, false, false);
  tok(4, "<r>", false, false, true, false);
  tok(5, "ab", false, false, false, true);
  tok(6, "abc", false, false, false, false);
  const Tokenizer t = Tokenizer::from_json(
      bpe_json({"a", "b", " "}, Json::array(), Json::object(), Json{{"added_tokens", added}}), "t");
  EXPECT_EQ(t.encode("a  [M]"), (std::vector<int32_t>{0, 3}));     // lstrip eats the spaces
  EXPECT_EQ(t.encode("<r>  a"), (std::vector<int32_t>{4, 0}));     // rstrip eats the spaces
  EXPECT_EQ(t.encode("ab"), (std::vector<int32_t>{5}));            // single word
  EXPECT_EQ(t.encode("bab"), (std::vector<int32_t>{1, 0, 1}));     // inside a word: not matched
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{6}));           // longest match wins
  EXPECT_EQ(t.vocab_size(), 7);
}

TEST(Tokenizer, LoadErrorsNameFileAndPath) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("nemotron_tok_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto expect_error = [&](const std::string& content, const std::string& needle) {
    const fs::path f = dir / "tokenizer.json";
    std::ofstream(f) << content;
    try {
      Tokenizer::load(dir.string());
      ADD_FAILURE() << "no error for " << needle;
    } catch (const nemotron::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(f.string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error("{not json", "invalid JSON");
  expect_error(bpe_json({"a"}, Json::array(), Json::object(), Json{{"normalizer", {{"type", "Bogus"}}}}), "normalizer.type");
  expect_error(bpe_json({"a"}, Json::array(), Json::object(), Json{{"decoder", {{"type", "Bogus"}}}}), "decoder.type");
  expect_error(bpe_json({"a"}, Json::array(), Json::object(),
                        Json{{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "[a-"}}}, {"behavior", "Isolated"}}}}),
               "pre_tokenizer.pattern.Regex");
  expect_error(bpe_json({"a"}, Json{"a b"}), "model.merges[0]");
  expect_error(bpe_json({"a"}, Json::array(), Json{{"type", "WordPiece"}}), "model.type");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "model.vocab");
  fs::remove_all(dir);
  try {
    Tokenizer::load((dir / "missing").string());
    ADD_FAILURE() << "no error for a missing file";
  } catch (const nemotron::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }
}

// Found by fuzz_tokenizer_json (and probes of what it reported): ids out of range overflowed
// the id count (UBSan: INT32_MAX + 1) or made loading allocate gigabytes, a post-processor's
// negative id came out of encode(), a special_tokens entry without "ids" was read through a
// const operator[] on a missing key (undefined behaviour), and a Strip decoder with an empty
// content never finished decoding.
TEST(Tokenizer, HostileIdsAndDecodersAreLoadErrors) {
  auto error_of = [](const std::string& json) -> std::string {
    try {
      const Tokenizer t = Tokenizer::from_json(json, "t.json");
      (void)t.decode(t.encode("a b", true));
    } catch (const nemotron::Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  auto with = [](const char* key, Json value) {
    return bpe_json({"a", "b", "ab", "<s>"}, Json{"a b"}, Json::object(), Json{{key, value}});
  };
  Json model = Json::parse(bpe_json({"a", "b"}, Json::array()))["model"];
  model["vocab"]["b"] = 2147483647;
  EXPECT_NE(error_of(Json{{"model", model}}.dump()).find("model.vocab[\"b\"]: expected a token id in [0, 16777215]"),
            std::string::npos);
  model["vocab"]["b"] = -3;
  EXPECT_NE(error_of(Json{{"model", model}}.dump()).find("expected a token id"), std::string::npos);
  EXPECT_NE(error_of(with("added_tokens", Json::parse(R"([{"id": 2147483647, "content": "<x>", "special": true}])")))
                .find("added_tokens[0].id: expected a token id"),
            std::string::npos);
  EXPECT_NE(error_of(with("added_tokens", Json::parse(R"([{"content": "<x>"}])"))).find("added_tokens[0].id: missing"),
            std::string::npos);
  const char* tmpl = R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
    {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": %s}})";
  auto post = [&](const char* entry) {
    char buf[512];
    std::snprintf(buf, sizeof buf, tmpl, entry);
    return with("post_processor", Json::parse(buf));
  };
  EXPECT_NE(error_of(post(R"({"id": "<s>", "ids": [-5], "tokens": ["<s>"]})")).find("special_tokens.<s>.ids[0]: expected a token id"),
            std::string::npos);
  EXPECT_NE(error_of(post(R"({"id": "<s>", "tokens": ["<s>"]})")).find("special_tokens.<s>.ids: expected a non-empty array"),
            std::string::npos);
  EXPECT_NE(error_of(post("7")).find("special_tokens.<s>.ids: expected a non-empty array"), std::string::npos);
  EXPECT_EQ(error_of(post(R"({"id": "<s>", "ids": [3], "tokens": ["<s>"]})")), "(no error)");
  EXPECT_NE(error_of(with("post_processor", Json::parse(R"({"type": "BertProcessing", "sep": ["<s>", 4294967299], "cls": ["<s>", 3]})")))
                .find("post_processor.sep[1]: expected a token id"),
            std::string::npos);
  EXPECT_NE(error_of(with("decoder", Json::parse(R"({"type": "Strip", "content": "", "start": 1000000000000, "stop": 0})")))
                .find("decoder.content: must not be empty"),
            std::string::npos);
  EXPECT_EQ(error_of(with("decoder", Json::parse(R"({"type": "Strip", "content": " ", "start": 1000000000000, "stop": 3})"))),
            "(no error)");
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  const Tokenizer t = demo_tokenizer();
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "word" + std::to_string(i) + " \xE6\x97\xA5 ";
  const auto expected = t.encode(text);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) threads.emplace_back([&, k] { got[static_cast<std::size_t>(k)] = t.encode(text); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

TEST(Tokenizer, DefaultConstructedThrows) {
  const Tokenizer t;
  EXPECT_THROW(t.encode("x"), nemotron::Error);
  EXPECT_THROW(t.vocab_size(), nemotron::Error);
}

// For every prefix of the ids: pieces are whole UTF-8 characters, and the pieces plus the
// flush concatenate to decode(prefix).
void check_stream(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip) {
  for (std::size_t n = 0; n <= ids.size(); ++n) {
    IncrementalDetokenizer d(t, skip);
    std::string all;
    for (std::size_t k = 0; k < n; ++k) {
      const std::string piece = d.push(ids[k]);
      ASSERT_TRUE(nemotron::text::utf8_valid(piece));
      all += piece;
    }
    const std::string tail = d.flush();
    ASSERT_TRUE(nemotron::text::utf8_valid(tail));
    all += tail;
    const std::vector<int32_t> prefix(ids.begin(), ids.begin() + static_cast<long>(n));
    ASSERT_EQ(all, t.decode(prefix, skip)) << "prefix length " << n;
  }
}

TEST(IncrementalDetokenizer, ByteLevelSplitsCharactersAcrossTokens) {
  const Tokenizer t = demo_tokenizer();
  const std::string text = "Hi 日本語 😀👨\xE2\x80\x8D👩 e\xCC\x81 <|im_end|><think>x</think> \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7\n";
  check_stream(t, t.encode(text), false);
  check_stream(t, t.encode(text), true);
  // A character split over three byte tokens comes out whole, once.
  IncrementalDetokenizer d(t);
  EXPECT_EQ(d.push(1000 + 'a'), "a");
  EXPECT_EQ(d.push(1000 + 0xE6), "");
  EXPECT_EQ(d.push(1000 + 0x97), "");
  EXPECT_EQ(d.push(1000 + 0xA5), "\xE6\x97\xA5");
  EXPECT_EQ(d.push(1000 + 0xE6), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");  // never completed: U+FFFD, as decode() gives
  // Raw byte ids, including ones that never complete a character.
  check_stream(t, {1000 + 0xE6, 1000 + 0x97, 1000 + 0xA5, 1000 + 0xE6, 1000 + 'a', 1000 + 0xF0, 11, 1000 + 0x9F}, false);
}

TEST(IncrementalDetokenizer, PositionDependentDecoders) {
  // SentencePiece style: Metaspace replacement, byte fallback, Strip of the first space.
  std::vector<std::string> vocab = {"<unk>", "\xE2\x96\x81" "a", "b", "\xE2\x96\x81"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab.push_back(name);
  }
  const Json dec = {{"type", "Sequence"}, {"decoders", Json::array({
      Json{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
      Json{{"type", "ByteFallback"}}, Json{{"type", "Fuse"}},
      Json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  const Tokenizer t = Tokenizer::from_json(
      bpe_json(vocab, Json::array(), Json{{"byte_fallback", true}}, Json{{"decoder", dec}}), "t");
  check_stream(t, {1, 2, 3, 1, 4 + 0xE6, 4 + 0x97, 4 + 0xA5, 2, 4 + 0xFF, 4 + 'x', 3, 3, 1}, false);
  const Json meta = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}};
  const Tokenizer m = Tokenizer::from_json(bpe_json(vocab, Json::array(), Json::object(), Json{{"decoder", meta}}), "m");
  check_stream(m, {1, 2, 3, 1, 3, 3, 2, 1}, false);
}

// A Llama-2 / Mistral-style tokenizer: SentencePiece pieces ("▁a" = id 1, "b" = 2, "▁" = 3)
// and the 256 byte-fallback tokens "<0x00>".."<0xFF>" (id 4 + byte), decoded by Replace(▁ ->
// space), ByteFallback, Fuse, Strip(one leading space).
Tokenizer byte_fallback_tokenizer() {
  std::vector<std::string> vocab = {"<unk>", "\xE2\x96\x81" "a", "b", "\xE2\x96\x81"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab.push_back(name);
  }
  const Json dec = {{"type", "Sequence"}, {"decoders", Json::array({
      Json{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
      Json{{"type", "ByteFallback"}}, Json{{"type", "Fuse"}},
      Json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  return Tokenizer::from_json(bpe_json(vocab, Json::array(), Json{{"byte_fallback", true}}, Json{{"decoder", dec}}), "t");
}

std::vector<int32_t> byte_ids(const std::string& bytes) {
  std::vector<int32_t> ids;
  for (unsigned char c : bytes) ids.push_back(4 + c);
  return ids;
}

// Pushes the ids one at a time: every piece is valid UTF-8; returns the concatenation (with
// the flush) and the most bytes ever held back (pushed minus emitted) once more than
// kMaxHeldTokens ids have been pushed.
std::pair<std::string, std::size_t> stream(const Tokenizer& t, const std::vector<int32_t>& ids, std::size_t from) {
  IncrementalDetokenizer d(t);
  std::string all;
  // What the start-of-text edits drop (Strip of the first piece's space) is not held.
  const std::size_t first = t.token_bytes(ids.at(0)).size(), shown = t.decode({ids[0]}).size();
  const std::size_t dropped = first > shown ? first - shown : 0;
  std::size_t held = 0, pushed = 0;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    const std::string piece = d.push(ids[k]);
    EXPECT_TRUE(nemotron::text::utf8_valid(piece)) << "id " << k;
    all += piece;
    pushed += t.token_bytes(ids[k]).size();
    if (k >= from) held = std::max(held, pushed - dropped - std::min(pushed - dropped, all.size()));
  }
  all += d.flush();
  return {all, held};
}

const char kReplacement[] = "\xEF\xBF\xBD";

// Issue 18: a run of more than 64 byte tokens was forced out in the middle of a character,
// which came out as U+FFFD.
TEST(IncrementalDetokenizer, LongByteFallbackRunsComeOutWhole) {
  const Tokenizer t = byte_fallback_tokenizer();
  const std::string texts[] = {
      "日本語のテキストを一文字ずつバイトで書くと、とても長い列になります。東京都と大阪府",  // 3-byte characters
      "ภาษาไทยเป็นภาษาที่มีสระและวรรณยุกต์มากมาย สวัสดีครับ",                   // Thai, combining marks
      "😀👨\xE2\x80\x8D👩\xE2\x80\x8D👧\xE2\x80\x8D👦🇫🇷🎉🚀✨🙂😎🤖🦀🐍👍🏽🌏🌸🍣🎌🏯🗻🚄🍵⛩️🎎🐉🐼",  // 4-byte, ZWJ, flags
  };
  for (const std::string& text : texts) {
    ASSERT_GE(text.size(), 120u);
    for (int shift = 0; shift < 4; ++shift) {  // the run starts 0-3 ASCII bytes early: every cut position
      const std::string bytes = std::string(static_cast<std::size_t>(shift), 'x') + text;
      for (bool closed : {true, false}) {  // a piece ends the run, or the stream ends inside it
        std::vector<int32_t> ids = {1};
        for (int32_t id : byte_ids(bytes)) ids.push_back(id);
        if (closed) ids.push_back(2);
        const auto [all, held] = stream(t, ids, IncrementalDetokenizer::kMaxHeldTokens + 1);
        EXPECT_EQ(all, t.decode(ids)) << text << " shift " << shift;
        EXPECT_EQ(all.find(kReplacement), std::string::npos) << text << " shift " << shift;
        EXPECT_LE(held, 3u) << "bytes held past the bound";
      }
    }
    // The whole stream one run of byte tokens (nothing before it).
    const auto [all, held] = stream(t, byte_ids(text), IncrementalDetokenizer::kMaxHeldTokens + 1);
    EXPECT_EQ(all, text);
    EXPECT_LE(held, 3u);
  }
  // Short runs are unchanged: held until the run ends, then decoded as a whole.
  const auto ids = byte_ids("日本");
  IncrementalDetokenizer d(t);
  EXPECT_EQ(d.push(1), "a");
  for (int32_t id : ids) EXPECT_EQ(d.push(id), "");
  EXPECT_EQ(d.push(2), "日本b");
}

TEST(IncrementalDetokenizer, InvalidBytesInALongRunBecomeReplacementCharacters) {
  const Tokenizer t = byte_fallback_tokenizer();
  std::string bytes;
  for (int i = 0; i < 12; ++i) {
    bytes += "日本";
    bytes += "\xFF";          // never valid
    bytes += "\x80";          // a lone continuation byte
    bytes += "\xE6\x97";      // a character cut short by ...
    bytes += "A";             // ... an ASCII byte
    bytes += "\xF0\x9F\x98";  // an emoji cut short
    bytes += "😀";
  }
  ASSERT_GE(bytes.size(), 120u);
  std::vector<int32_t> ids = {1};
  for (int32_t id : byte_ids(bytes)) ids.push_back(id);
  ids.push_back(2);
  const auto [all, held] = stream(t, ids, IncrementalDetokenizer::kMaxHeldTokens + 1);
  EXPECT_LE(held, 3u);
  // Nothing lost: every valid character in order, each invalid sequence one U+FFFD. (The
  // whole-text decode() replaces the entire run, valid characters included, by ByteFallback's
  // rule: one U+FFFD per byte.)
  EXPECT_EQ(all, "a" + nemotron::text::utf8_sanitize(bytes) + "b");
  std::size_t replacements = 0;
  for (std::size_t p = all.find(kReplacement); p != std::string::npos; p = all.find(kReplacement, p + 1)) ++replacements;
  EXPECT_EQ(replacements, 12u * 4);
  // A run that never completes its last character: flushed as U+FFFD.
  std::vector<int32_t> open = byte_ids(std::string(100, 'z') + "\xE6\x97");
  const auto [tail, tail_held] = stream(t, open, IncrementalDetokenizer::kMaxHeldTokens + 1);
  EXPECT_EQ(tail, std::string(100, 'z') + kReplacement);
  EXPECT_LE(tail_held, 3u);
}

TEST(IncrementalDetokenizer, ByteLevelTokensSplittingEveryCharacter) {
  // Byte-level tokens each of which ends inside a character: E6 97 | A5 E6 97 | ... | A5 is
  // 日 x 101, but no token boundary is a character boundary until the last.
  const std::string* alpha = nemotron::text::byte_level_alphabet();
  auto bl = [&](const std::string& bytes) {
    std::string s;
    for (unsigned char c : bytes) s += alpha[c];
    return s;
  };
  const std::vector<std::string> vocab = {bl("\xE6\x97"), bl("\xA5\xE6\x97"), bl("\xA5"), bl("x")};
  const Tokenizer t = Tokenizer::from_json(
      bpe_json(vocab, Json::array(), Json::object(), Json{{"decoder", Json{{"type", "ByteLevel"}}}}), "bl");
  std::vector<int32_t> ids = {3, 0};
  for (int i = 0; i < 100; ++i) ids.push_back(1);
  ids.push_back(2);
  ids.push_back(3);
  const auto [all, held] = stream(t, ids, IncrementalDetokenizer::kMaxHeldTokens + 2);
  EXPECT_EQ(all, t.decode(ids));
  EXPECT_EQ(all.find(kReplacement), std::string::npos);
  EXPECT_LE(held, 3u);
}

}  // namespace
