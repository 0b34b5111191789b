// The output path (detokenize -> stop strings -> reasoning/tool parser) fed with fake token
// streams made from the demo model's real tokenizer, and StopMatcher under every chunking.
#include <gtest/gtest.h>

#include <random>

#include "server/output_pipeline.h"
#include "server/stop_matcher.h"
#include "text/tokenizer/tokenizer.h"

namespace nemotron::server {
namespace {

const text::Tokenizer& tok() {
  static const text::Tokenizer t = text::Tokenizer::load(std::string(NEMOTRON_SOURCE_DIR) + "/models/demo");
  return t;
}

int32_t eos() { return tok().token_to_id("<|im_end|>"); }

runtime::TokenEvent token(int32_t id, runtime::FinishReason r = runtime::FinishReason::None) {
  runtime::TokenEvent ev;
  ev.token = id;
  ev.logprob = -0.5f;
  ev.top_logprobs = {{id, -0.5f}, {0, -1.5f}};
  ev.finished = r != runtime::FinishReason::None;
  ev.reason = r;
  return ev;
}

struct FedOutput {
  std::string text;  // concatenated content (+ reasoning prefixed "R:" per event)
  std::string content, reasoning;
  int outputs_with_events = 0;
};

// Feeds `ids` one token per event; the last one carries `last_reason` (a Stop reason means
// the engine stopped on an eos: the eos id is appended as the final token).
FedOutput feed(OutputPipeline& p, const std::vector<int32_t>& ids, runtime::FinishReason last_reason) {
  FedOutput r;
  std::vector<runtime::TokenEvent> evs;
  for (int32_t id : ids) evs.push_back(token(id));
  if (last_reason == runtime::FinishReason::Stop) evs.push_back(token(eos(), last_reason));
  else {
    evs.back().finished = true;
    evs.back().reason = last_reason;
  }
  for (const auto& ev : evs) {
    const PipelineOutput out = p.push(ev);
    if (!out.events.empty()) r.outputs_with_events++;
    for (const auto& e : out.events) {
      if (e.kind == text::OutputEvent::Kind::kContent) r.content += e.text;
      if (e.kind == text::OutputEvent::Kind::kReasoning) r.reasoning += e.text;
    }
    if (p.done()) break;
  }
  return r;
}

PipelineOptions completion_opts(std::vector<std::string> stop = {}) {
  PipelineOptions o;
  o.chat = false;
  o.stop = std::move(stop);
  o.eos_ids = {eos()};
  return o;
}

TEST(StopMatcher, FindsStopSplitAnywhere) {
  const std::string text = "Hello world, the answer is 42. END of text";
  for (std::size_t step = 1; step <= text.size(); ++step) {
    StopMatcher m({"END", "zzz"});
    std::string out;
    for (std::size_t i = 0; i < text.size() && !m.stopped(); i += step) out += m.push(text.substr(i, step));
    out += m.flush();
    EXPECT_TRUE(m.stopped()) << step;
    EXPECT_EQ(out, "Hello world, the answer is 42. ") << step;
    EXPECT_EQ(m.matched(), "END");
  }
}

TEST(StopMatcher, NoStopIsIdentityUnderRandomChunking) {
  std::mt19937 rng(3);
  const std::string text = "abcabdabcabcabe ababab aab \xc3\xa9t\xc3\xa9 ab";
  for (int trial = 0; trial < 200; ++trial) {
    StopMatcher m({"abcabf", "aaa", "\xc3\xa9t\xc3\xa9!"});
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
      const std::size_t n = 1 + rng() % 5;
      out += m.push(text.substr(i, n));
      i += n;
    }
    out += m.flush();
    EXPECT_FALSE(m.stopped());
    EXPECT_EQ(out, text);
  }
}

TEST(StopMatcher, EarliestMatchWins) {
  StopMatcher m({"cd", "bcde"});
  EXPECT_EQ(m.push("abcdef"), "a");
  EXPECT_EQ(m.matched(), "bcde");
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, HoldsBackOnlyPossiblePrefixes) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("abcST"), "abc");
  EXPECT_EQ(m.push("x"), "STx");
  EXPECT_EQ(m.push("S"), "");
  EXPECT_EQ(m.flush(), "S");
}

TEST(OutputPipeline, StopStringAcrossTokenBoundaries) {
  const std::string text = "The quick brown fox jumps over the lazy dog";
  const auto ids = tok().encode(text);
  ASSERT_GT(ids.size(), 6u);
  // "fox jum" spans several tokens.
  OutputPipeline p(tok(), completion_opts({"fox jum"}));
  const FedOutput r = feed(p, ids, runtime::FinishReason::Length);
  EXPECT_EQ(r.content, "The quick brown ");
  EXPECT_TRUE(p.stopped_by_string());
  EXPECT_EQ(p.finish_reason(), "stop");
  EXPECT_EQ(p.stop_reason(), Json("fox jum"));
  EXPECT_LT(p.completion_tokens(), static_cast<int64_t>(ids.size()));
  EXPECT_EQ(p.result().content, r.content);
}

TEST(OutputPipeline, HeldBackTextIsFlushedAtTheEnd) {
  const auto ids = tok().encode("value is 12 and then STO");
  OutputPipeline p(tok(), completion_opts({"STOP"}));
  const FedOutput r = feed(p, ids, runtime::FinishReason::Length);
  EXPECT_EQ(r.content, "value is 12 and then STO");
  EXPECT_EQ(p.finish_reason(), "length");
  EXPECT_TRUE(p.stop_reason().is_null());
  EXPECT_EQ(p.completion_tokens(), static_cast<int64_t>(ids.size()));
}

TEST(OutputPipeline, EosIsCountedButNotShown) {
  const auto ids = tok().encode("short answer");
  PipelineOptions o = completion_opts();
  o.logprobs = true;
  o.top_logprobs = 1;
  OutputPipeline p(tok(), o);
  const FedOutput r = feed(p, ids, runtime::FinishReason::Stop);
  EXPECT_EQ(r.content, "short answer");
  EXPECT_EQ(p.finish_reason(), "stop");
  EXPECT_TRUE(p.stop_reason().is_null());
  EXPECT_EQ(p.completion_tokens(), static_cast<int64_t>(ids.size() + 1));
  ASSERT_EQ(p.all_logprobs().size(), ids.size() + 1);
  EXPECT_EQ(p.all_logprobs().back().text, "<|im_end|>");
  EXPECT_EQ(p.all_logprobs()[0].top.size(), 1u);
}

TEST(OutputPipeline, UserStopTokenIdIsTheStopReason) {
  const auto ids = tok().encode("abc");
  OutputPipeline p(tok(), completion_opts());
  for (int32_t id : ids) p.push(token(id));
  p.push(token(1000 + 'x', runtime::FinishReason::Stop));
  EXPECT_EQ(p.stop_reason(), Json(1000 + 'x'));
  EXPECT_EQ(p.result().content, "abc");
}

TEST(OutputPipeline, ChatSplitsReasoningContentAndToolCalls) {
  const std::string out =
      "Let me check the weather.\n</think>\nSure.<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
      "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n"
      "</parameter>\n</function>\n</tool_call>";
  const auto ids = tok().encode(out);
  for (bool parallel : {true, false}) {
    PipelineOptions o;
    o.chat = true;
    o.parser.thinking_enabled = true;
    o.parser.tools = Json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":
        {"type":"object","properties":{"city":{"type":"string"}}}}}])");
    o.eos_ids = {eos()};
    o.keep_special_ids = {tok().token_to_id("<think>"), tok().token_to_id("</think>"), tok().token_to_id("<tool_call>"),
                          tok().token_to_id("</tool_call>")};
    o.max_tool_calls = parallel ? -1 : 1;
    OutputPipeline p(tok(), o);
    feed(p, ids, runtime::FinishReason::Stop);
    EXPECT_EQ(p.result().reasoning, "Let me check the weather.");
    EXPECT_EQ(p.result().content, "Sure.");
    ASSERT_EQ(p.result().tool_calls.size(), parallel ? 2u : 1u);
    EXPECT_EQ(p.result().tool_calls[0].name, "get_weather");
    EXPECT_EQ(Json::parse(p.result().tool_calls[0].arguments), Json::parse(R"({"city":"Paris"})"));
    EXPECT_EQ(p.finish_reason(), "tool_calls");
  }
}

TEST(OutputPipeline, SkippedSpecialTokensWouldBreakParsingSoMarkersAreKept) {
  // Without keep_special_ids the </think> marker (a special token) is skipped and
  // everything stays reasoning; with it the split happens.
  const auto ids = tok().encode("thoughts\n</think>\nanswer");
  PipelineOptions o;
  o.parser.thinking_enabled = true;
  o.eos_ids = {eos()};
  OutputPipeline skipped(tok(), o);
  feed(skipped, ids, runtime::FinishReason::Stop);
  EXPECT_EQ(skipped.result().content, "");
  o.keep_special_ids = {tok().token_to_id("</think>")};
  OutputPipeline kept(tok(), o);
  feed(kept, ids, runtime::FinishReason::Stop);
  EXPECT_EQ(kept.result().reasoning, "thoughts");
  EXPECT_EQ(kept.result().content, "answer");
}

TEST(OutputPipeline, ThinkingOffIsAllContentAndStopAppliesToIt) {
  const auto ids = tok().encode("plain answer here. Done");
  PipelineOptions o;
  o.parser.thinking_enabled = false;
  o.stop = {". D"};
  o.eos_ids = {eos()};
  OutputPipeline p(tok(), o);
  feed(p, ids, runtime::FinishReason::Stop);
  EXPECT_EQ(p.result().content, "plain answer here");
  EXPECT_EQ(p.result().reasoning, "");
  EXPECT_EQ(p.finish_reason(), "stop");
}

TEST(OutputPipeline, CancelledAndErrorReasons) {
  OutputPipeline a(tok(), completion_opts());
  runtime::TokenEvent cancel;
  cancel.finished = true;
  cancel.reason = runtime::FinishReason::Cancelled;
  a.push(token(1000 + 'a'));
  a.push(cancel);
  EXPECT_EQ(a.finish_reason(), "abort");
  EXPECT_EQ(a.result().content, "a");
  OutputPipeline b(tok(), completion_opts());
  runtime::TokenEvent err = cancel;
  err.reason = runtime::FinishReason::Error;
  err.error = "boom";
  b.push(err);
  EXPECT_EQ(b.finish_reason(), "error");
  EXPECT_EQ(b.error(), "boom");
  EXPECT_TRUE(b.push(token(5)).empty());  // ignored once done
}

TEST(OutputPipeline, SplitUtf8ByteTokensComeOutWhole) {
  // byte tokens are 1000 + byte; "é" = C3 A9 fed as two separate tokens
  PipelineOptions o = completion_opts();
  o.logprobs = true;
  OutputPipeline p(tok(), o);
  const PipelineOutput first = p.push(token(1000 + 0xC3));
  EXPECT_TRUE(first.events.empty());
  EXPECT_TRUE(first.logprobs.empty());
  const PipelineOutput second = p.push(token(1000 + 0xA9, runtime::FinishReason::Length));
  ASSERT_EQ(second.events.size(), 1u);
  EXPECT_EQ(second.events[0].text, "\xc3\xa9");
  EXPECT_EQ(second.logprobs.size(), 2u);  // the held token's logprob travels with the text
}

}  // namespace
}  // namespace nemotron::server
