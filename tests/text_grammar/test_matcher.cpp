// Matcher: token masks against a brute-force reference (every token's bytes simulated by an
// independent Earley recognizer) on random states, end ids, rollback, tokens that split UTF-8
// characters, the vocabulary of a real tokenizer.
#include <gtest/gtest.h>

#include <mutex>
#include <random>
#include <regex>

#include "grammar_test_util.h"
#include "text/grammar/automaton.h"
#include "text/grammar/sampler.h"
#include "text/tokenizer/tokenizer.h"
#include "text/utf8.h"
#include "util/error.h"

using namespace nemotron::text::grammar;

namespace {

bool bit(const std::vector<uint32_t>& bits, int32_t t) { return (bits[static_cast<std::size_t>(t) >> 5] >> (t & 31)) & 1; }

std::shared_ptr<const Grammar> nested_schema() {
  return from_json_schema(nemotron::parse_json(R"({
    "type":"object",
    "properties":{
      "name":{"type":"string","maxLength":12},
      "age":{"type":"integer","minimum":0,"maximum":150},
      "tags":{"type":"array","items":{"enum":["x","yy","zzz"]},"maxItems":4},
      "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string","pattern":"^[0-9]{5}$"}},
                 "required":["city"]},
      "score":{"type":["number","null"]}
    },
    "required":["name","age"]})", "schema"));
}

// Walks `steps` random tokens through g; at every state compares fill_mask with the Earley
// reference over every token of the vocabulary. Token 0 (no bytes) is the end id.
void compare_masks(const std::shared_ptr<const Grammar>& g, const std::shared_ptr<const Vocabulary>& v, int steps,
                   uint32_t seed) {
  Matcher m(g, v, {0});
  grammar_test::Earley ref(*g);
  std::mt19937 rng(seed);
  std::vector<uint32_t> bits(v->mask_words());
  for (int step = 0; step < steps; ++step) {
    m.fill_mask(bits.data());
    const std::size_t base = ref.size();
    int mismatches = 0;
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < v->size(); ++t) {
      bool expect;
      if (t == 0) {
        expect = ref.accepting();
      } else {
        const std::string& b = v->token_bytes(t);
        expect = !b.empty() && ref.feed(b);
        ref.truncate(base);
      }
      if (bit(bits, t) != expect && ++mismatches <= 5)
        ADD_FAILURE() << "step " << step << " token " << t << " '" << v->token_bytes(t) << "': mask " << bit(bits, t)
                      << ", reference " << expect;
      if (expect && t != 0) allowed.push_back(t);
    }
    ASSERT_EQ(mismatches, 0);
    EXPECT_EQ(m.can_end(), ref.accepting());
    if (allowed.empty()) break;
    // Prefer short tokens that close things sometimes, so the walk sees many kinds of state.
    const int32_t t = allowed[rng() % allowed.size()];
    ASSERT_TRUE(m.accept(t));
    ASSERT_TRUE(ref.feed(v->token_bytes(t)));
  }
}

}  // namespace

TEST(Matcher, MasksEqualBruteForceJsonObject) {
  compare_masks(json_object(), Vocabulary::synthetic(3000, 5), 40, 1);
}

TEST(Matcher, MasksEqualBruteForceNestedSchema) {
  auto v = Vocabulary::synthetic(3000, 9);
  for (uint32_t seed = 1; seed <= 3; ++seed) compare_masks(nested_schema(), v, 30, seed);
}

TEST(Matcher, MasksEqualBruteForceBoundedStrings) {
  // Count-down states (maxLength): subtrees are taken whole only while enough characters remain.
  auto v = Vocabulary::synthetic(3000, 13);
  compare_masks(from_json_schema(nemotron::parse_json(R"({"type":"string","maxLength":9})", "t")), v, 12, 6);
  compare_masks(from_json_schema(nemotron::parse_json(R"({"type":"array","items":{"type":"string","minLength":2,"maxLength":5}})", "t")), v, 25, 7);
}

TEST(Matcher, MasksEqualBruteForceRegexAndEbnf) {
  auto v = Vocabulary::synthetic(3000, 3);
  compare_masks(from_regex("(the|a) [a-z]+( [a-z]+){0,3}\\."), v, 12, 4);
  compare_masks(from_ebnf(R"(root ::= item ("," " "? item)*
                             item ::= [0-9]+ | "\"" [^"]* "\"" | "[" root? "]")"), v, 30, 5);
}

TEST(Matcher, RepetitionsOfNullableBodies) {
  // x* where x can be empty: a cycle of tail calls, ended in the closure (ir.cpp, automaton.cpp).
  auto v = Vocabulary::synthetic(1200, 2);
  auto r = from_regex("(a?b?)*c(d|)*");
  EXPECT_TRUE(grammar_test::matches(r, "ababbc"));
  EXPECT_TRUE(grammar_test::matches(r, "cdd"));
  EXPECT_FALSE(grammar_test::matches(r, "abca"));
  compare_masks(r, v, 10, 3);
  auto e = from_ebnf(R"(root ::= ( "x"? ("y" | "")* )* "z" item*
                        item ::= " "? | "w")");
  EXPECT_TRUE(grammar_test::matches(e, "xyyxz w w"));
  compare_masks(e, v, 10, 4);
}

// Stacks in the automaton state reached from the initial one by `text` (key: [len, ...]*).
std::size_t stacks_after(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  auto a = automaton_of(*g);
  std::lock_guard<std::mutex> lock(a->mutex);
  int32_t s = a->initial();
  for (char c : text) s = a->next(s, static_cast<unsigned char>(c));
  if (s == kDead) return 0;
  const std::vector<int32_t>& k = a->key(s);
  std::size_t n = 0;
  for (std::size_t i = 0; i < k.size(); i += static_cast<std::size_t>(k[i]) + 1) ++n;
  return n;
}

TEST(Matcher, NormalizedRepetitionsKeepTheirLanguage) {
  // Repetitions of bodies that can be empty, and of repetitions, are rewritten (Expr::repeat);
  // std::regex (ECMAScript) is the reference on every text over {a,b,c} up to 6 bytes.
  const char* patterns[] = {"(a?b?){3}",   "(ab|c?)*",  "(a{0,2}){2,3}", "(a{1,2}){0,3}", "(a{2,3}){0,2}",
                            "(a{1,}){2,3}", "(a?){2,}b", "((a|b)?c?){2}", "(a*b*){1,2}c?", "((ab)?){4}(c{0,1}){1,3}",
                            "(a{1,1}){2,4}", "(a?|bb){2}"};
  std::vector<std::string> texts{""};
  for (std::size_t i = 0; i < texts.size() && texts[i].size() < 6; ++i)
    for (char c : std::string("abc")) texts.push_back(texts[i] + c);
  for (const char* p : patterns) {
    auto g = from_regex(p);
    const std::regex ref(p, std::regex::ECMAScript);
    for (const std::string& t : texts) EXPECT_EQ(grammar_test::matches(g, t), std::regex_match(t, ref)) << "/" << p << "/ on '" << t << "'";
  }
}

TEST(Matcher, RepeatedOptionalsStayOneStack) {
  // p?{10000} (a fuzzer's find) unrolled as 10,000 optional copies kept one stack per copy
  // still to come after every byte: seconds per mask. Normalized, it is p{0,10000}.
  for (const char* p : {"p?{10000}", "(p?){10000}q", "(p{0,100}){100}", "(p?q?){5000}"}) {
    auto g = from_regex(p);
    EXPECT_LE(stacks_after(g, std::string(100, 'p')), 4u) << p;  // a few, not one per copy
    EXPECT_EQ(stacks_after(g, std::string(100, 'p')), stacks_after(g, std::string(1000, 'p'))) << p;
  }
  auto g = from_regex("x(p?){10000}");
  EXPECT_TRUE(grammar_test::matches(g, "x" + std::string(10000, 'p')));
  EXPECT_FALSE(grammar_test::matches(g, "x" + std::string(10001, 'p')));
  auto e = from_ebnf(R"(root ::= ("a"? "b"?){10000})");
  EXPECT_TRUE(grammar_test::matches(e, "abba"));
  EXPECT_LE(stacks_after(e, std::string(50, 'b')), 4u);
}

TEST(Matcher, AmbiguousRepetitionIsRefusedNotSlow) {
  // (.|..){9000}: after n characters every split into one- and two-character copies is a
  // stack; a mask over a full vocabulary took over a second. Past the per-call work bound a
  // call throws, and leaves the matcher as it was.
  const uint64_t saved = Automaton::max_work_per_call();
  Automaton::set_max_work_per_call(200000);
  auto v = Vocabulary::synthetic(1200, 2);
  auto g = from_regex("(.|..){9000}");
  Matcher m(g, v, {0});
  std::vector<uint32_t> bits(v->mask_words());
  bool refused = false;
  std::size_t accepted = 0;
  for (int step = 0; step < 400 && !refused; ++step) {
    try {
      m.fill_mask(bits.data());
    } catch (const nemotron::Error& e) {
      EXPECT_NE(std::string(e.what()).find("too ambiguous"), std::string::npos) << e.what();
      refused = true;
      break;
    }
    int32_t t = 1;
    while (t < v->size() && !bit(bits, t)) ++t;
    ASSERT_LT(t, v->size());
    ASSERT_TRUE(m.accept(t));
    ++accepted;
  }
  EXPECT_TRUE(refused);
  EXPECT_GT(accepted, 0u);
  EXPECT_EQ(m.history_size(), accepted);  // the refused call changed nothing
  Automaton::set_max_work_per_call(saved);
  m.fill_mask(bits.data());  // within the default bound it goes on
  // An unambiguous grammar of the same length is far inside the bound.
  Automaton::set_max_work_per_call(200000);
  auto plain = from_regex(".{0,9000}");
  Matcher p(plain, v, {0});
  for (int step = 0; step < 50; ++step) {
    p.fill_mask(bits.data());
    int32_t t = 1 + step % 100;
    while (t < v->size() && !bit(bits, t)) ++t;
    ASSERT_LT(t, v->size());
    ASSERT_TRUE(p.accept(t));
  }
  Automaton::set_max_work_per_call(saved);
}

TEST(Matcher, MasksStayRightAcrossAutomatonResets) {
  // Past the state limit the shared automaton is cleared and matchers re-intern their states.
  Automaton::set_max_states(20);
  auto v = Vocabulary::synthetic(3000, 5);
  auto g = nested_schema();
  Matcher other(g, v, {0});
  ASSERT_TRUE(other.accept_bytes("{\"name\": \"ab"));
  compare_masks(g, v, 25, 11);
  EXPECT_TRUE(other.accept_bytes("c\", \"age\": 7}"));
  EXPECT_TRUE(other.can_end());
  Automaton::set_max_states(Automaton::kMaxStates);
}

TEST(Matcher, EndIdsOnlyWhenComplete) {
  auto v = Vocabulary::from_token_bytes({"", "{", "}", "{}", "\"a\"", ":", "1", " ", ""});
  Matcher m(json_object(), v, {0, 8});
  std::vector<uint32_t> bits(v->mask_words());
  m.fill_mask(bits.data());
  EXPECT_FALSE(bit(bits, 0));
  EXPECT_FALSE(bit(bits, 8));
  EXPECT_TRUE(bit(bits, 1));
  EXPECT_TRUE(bit(bits, 3));
  EXPECT_FALSE(bit(bits, 2));
  EXPECT_FALSE(m.accept(0));  // not complete yet
  EXPECT_FALSE(m.accept(2));  // not allowed: no change
  EXPECT_TRUE(m.accept(3));
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.done());  // nothing may follow the value but an end id
  m.fill_mask(bits.data());
  EXPECT_TRUE(bit(bits, 0));
  EXPECT_TRUE(bit(bits, 8));
  EXPECT_FALSE(bit(bits, 7));  // no trailing whitespace
  EXPECT_FALSE(bit(bits, 1));
  EXPECT_TRUE(m.accept(8));
  EXPECT_TRUE(m.done());
  m.fill_mask(bits.data());
  for (uint32_t w : bits) EXPECT_EQ(w, 0u);
  EXPECT_FALSE(m.accept(7));
  m.rollback(1);  // the end id is undone too
  EXPECT_TRUE(m.done());  // still nothing but an end id may follow "{}"
  EXPECT_FALSE(m.accept(7));
  m.rollback(1);
  EXPECT_FALSE(m.done());
  EXPECT_TRUE(m.accept(1));
  EXPECT_TRUE(m.accept(7));  // whitespace inside the object
}

TEST(Matcher, DoneWhenNothingCanFollow) {
  auto v = Vocabulary::from_token_bytes({"", "ab", "a", "b"});
  Matcher m(Grammar::literal("ab"), v, {0});
  EXPECT_TRUE(m.accept(1));
  EXPECT_TRUE(m.done());
  EXPECT_TRUE(m.can_end());
  std::vector<uint32_t> bits(v->mask_words());
  m.fill_mask(bits.data());
  EXPECT_EQ(bits[0], 1u);  // only the end id
}

TEST(Matcher, Rollback) {
  auto v = Vocabulary::synthetic(2000, 1);
  auto g = nested_schema();
  std::vector<std::string> texts;
  Matcher m(g, v, {0});
  std::vector<uint32_t> before(v->mask_words()), after(v->mask_words());
  m.fill_mask(before.data());
  const std::vector<std::string> pieces = {"{", "\"name", "\":", "\"", "ab", "c\"", ",", " \"age\"", ":", "1"};
  for (const std::string& p : pieces) ASSERT_TRUE(m.accept_bytes(p)) << p;
  EXPECT_EQ(m.history_size(), pieces.size());
  m.rollback(3);
  EXPECT_TRUE(m.accept_bytes(" \"age\""));
  m.rollback(100);  // clamps at the start
  m.fill_mask(after.data());
  EXPECT_EQ(before, after);
  EXPECT_EQ(m.history_size(), 0u);
}

TEST(Matcher, TokensSplittingUtf8Characters) {
  // U+4E2D is E4 B8 AD; tokens hold its bytes in pieces.
  auto v = Vocabulary::from_token_bytes({"", "\"", "\xE4", "\xB8\xAD", "\xE4\xB8", "\xAD", "\xB8", "\xE4\xB8\xAD\""});
  auto g = from_json_schema(nemotron::parse_json(R"({"type":"string","maxLength":2})", "t"));
  Matcher m(g, v, {0});
  std::vector<uint32_t> bits(v->mask_words());
  ASSERT_TRUE(m.accept(1));
  m.fill_mask(bits.data());
  EXPECT_TRUE(bit(bits, 2));
  EXPECT_TRUE(bit(bits, 4));
  EXPECT_TRUE(bit(bits, 7));
  EXPECT_FALSE(bit(bits, 3));  // a continuation cannot start a character
  EXPECT_FALSE(bit(bits, 5));
  ASSERT_TRUE(m.accept(2));
  m.fill_mask(bits.data());
  EXPECT_TRUE(bit(bits, 3));
  EXPECT_TRUE(bit(bits, 6));
  EXPECT_FALSE(bit(bits, 1));  // the character is incomplete
  EXPECT_FALSE(bit(bits, 0));
  ASSERT_TRUE(m.accept(6));
  ASSERT_TRUE(m.accept(5));
  ASSERT_TRUE(m.accept(7));  // second character and the closing quote
  EXPECT_TRUE(m.can_end());
  EXPECT_FALSE(m.accept(2));  // maxLength 2 reached
}

TEST(Matcher, SampledTextsAreAccepted) {
  for (auto g : {json_object(), nested_schema(), from_regex("[a-c]{2,5}(x|yz)*")})
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      auto t = sample_text(g, seed, 120);
      ASSERT_TRUE(t.has_value());
      EXPECT_TRUE(grammar_test::matches(g, *t)) << *t;
    }
}

TEST(Vocabulary, FromDemoTokenizer) {
  const auto tok = nemotron::text::Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo");
  auto v = Vocabulary::from_tokenizer(tok);
  ASSERT_EQ(v->size(), tok.vocab_size());
  int checked = 0, partial = 0;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string& b = v->token_bytes(id);
    if (tok.is_special(id)) {
      EXPECT_EQ(b, Vocabulary::special_token_bytes(id)) << id;
      continue;
    }
    if (b.empty()) {
      EXPECT_TRUE(nemotron::text::utf8_valid(tok.token_bytes(id)) == false) << id;  // a raw byte >= 0xF8
      continue;
    }
    if (nemotron::text::utf8_valid(b)) {
      EXPECT_EQ(b, tok.decode({id})) << id;
      ++checked;
    } else {
      ++partial;  // a byte-level token holding part of a character
    }
  }
  EXPECT_GT(checked, 1000);
  // A JSON text tokenized by the tokenizer is accepted token by token.
  const std::string text = R"({"name": "Zoë", "n": [1, 2.5, -3], "ok": true})";
  Matcher m(json_object(), v, {});
  for (int32_t id : tok.encode(text)) ASSERT_TRUE(m.accept(id)) << id;
  EXPECT_TRUE(m.can_end());
  (void)partial;
}

TEST(Vocabulary, SpecialTokensOnlyWhereNamed) {
  // Nemotron's <tool_call> is a special token: the tool-call grammar names the TOKEN.
  const auto tok = nemotron::text::Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo");
  auto v = Vocabulary::from_tokenizer(tok);
  const int32_t open = tok.token_to_id("<tool_call>"), close = tok.token_to_id("</tool_call>");
  const int32_t eos = tok.token_to_id("<|im_end|>");
  ASSERT_TRUE(open >= 0 && close >= 0 && eos >= 0 && tok.is_special(open));
  auto args = from_json_schema(nemotron::parse_json(R"({"type":"object","properties":{"q":{"type":"string"}},"required":["q"]})", "t"));
  auto call = Grammar::sequence({Grammar::token(open), Grammar::literal("\n<function=search>\n"), args,
                                 Grammar::literal("\n</function>\n"), Grammar::token(close)});
  Matcher m(call, v, {eos});
  std::vector<uint32_t> bits(v->mask_words());
  m.fill_mask(bits.data());
  int allowed = 0;
  for (int32_t t = 0; t < v->size(); ++t) allowed += bit(bits, t);
  EXPECT_EQ(allowed, 1);  // only <tool_call>: not "<", not the text spelled out
  EXPECT_TRUE(bit(bits, open));
  const std::string text = "<tool_call>\n<function=search>\n{\"q\": \"x <tool_call> y\"}\n</function>\n</tool_call>";
  ASSERT_EQ(tok.encode("<tool_call>", false, true), std::vector<int32_t>{open});
  // The tags as tokens, the text between (a "<tool_call>" inside the JSON string as text).
  std::vector<int32_t> seq{open};
  const auto middle = tok.encode(text.substr(11, text.size() - 11 - 12), false, /*parse_special=*/false);
  seq.insert(seq.end(), middle.begin(), middle.end());
  seq.push_back(close);
  for (std::size_t i = 0; i < seq.size(); ++i) {
    m.fill_mask(bits.data());
    ASSERT_TRUE(bit(bits, seq[i])) << i;
    if (i > 0 && i + 1 < seq.size()) {
      EXPECT_FALSE(bit(bits, open)) << i;  // never inside the text
    }
    ASSERT_TRUE(m.accept(seq[i])) << i;
  }
  EXPECT_TRUE(m.can_end());
  m.fill_mask(bits.data());
  EXPECT_TRUE(bit(bits, eos));
  // EBNF names a special token as <[id]>.
  auto e = from_ebnf("root ::= <[" + std::to_string(open) + "]> \"x\"");
  EXPECT_TRUE(grammar_test::matches(e, Vocabulary::special_token_bytes(open) + "x"));
  EXPECT_FALSE(grammar_test::matches(e, "<tool_call>x"));
}
