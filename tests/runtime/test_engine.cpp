// The engine against the transformers fixtures: greedy generation through the scheduler
// (chunked prefill, concurrent sequences) reproduces the reference greedy ids; stop ids,
// max_tokens, cancellation, seeds and invalid requests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "engine_test_util.h"
#include "temp_dir.h"
#include "fixture_util.h"
#include "model/checkpoint/weights.h"
#include "runtime/engine.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::runtime;
using nemotron::testing::Collector;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = std::make_unique<model::Model>(model::Model::load(fixture_dir("nano-moe"))); }
  // prefill_tokens > step_tokens: the budget of steps that decode no sequence (SchedulerLimits).
  std::unique_ptr<Engine> make(int max_seqs, int64_t step_tokens, int64_t kv = 4096, int64_t max_len = 512,
                               int64_t prefill_tokens = 0, const std::string& step_log = "") {
    EngineOptions o;
    o.step_log = step_log;
    o.limits = {max_seqs, step_tokens, kv};
    o.limits.prefill_step_tokens = prefill_tokens;
    o.max_model_len = max_len;
    model::BackendOptions b;
    b.device = "cpu";
    b.max_seqs = max_seqs;
    b.max_step_tokens = std::max(step_tokens, prefill_tokens);
    return std::make_unique<Engine>(model::make_backend(*model_, b), o);
  }
  GenerationRequest greedy(const std::vector<int32_t>& prompt, int64_t n) {
    GenerationRequest r;
    r.prompt = prompt;
    r.max_tokens = n;
    r.sampling.temperature = 0;
    return r;
  }
  std::unique_ptr<model::Model> model_;
};

// The CPU backend computes a step in begin_step, so the engine delivers a step's tokens before
// it begins the next one: token i of a lone request reaches its sink while the slot holds the
// prompt + i tokens (one step later it would hold one more: TTFT and every token a step late).
TEST_F(EngineTest, ASynchronousBackendsTokensGoOutBeforeTheNextStep) {
  const Expected ex("nano-moe");
  const std::vector<int32_t> prompt = ex.ids("p0.input_ids");
  EngineOptions o;
  o.limits = {1, 64, 4096};
  o.max_model_len = 512;
  model::BackendOptions b;
  b.device = "cpu";
  b.max_seqs = 1;
  b.max_step_tokens = 64;
  auto backend = model::make_backend(*model_, b);
  ASSERT_TRUE(backend->steps_in_begin());
  const model::Backend* raw = backend.get();
  Engine engine(std::move(backend), o);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int64_t> held;  // the slot's position when each token was delivered
  bool done = false;
  engine.submit(greedy(prompt, 4), [&](const TokenEvent& ev) {  // on the engine thread
    std::lock_guard<std::mutex> lock(mu);
    if (ev.token >= 0 && !ev.finished) held.push_back(raw->position(0));  // (the last one's slot is freed)
    done = done || ev.finished;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; }));
  const int64_t P = static_cast<int64_t>(prompt.size());
  EXPECT_EQ(held, (std::vector<int64_t>{P, P + 1, P + 2}));
}

TEST_F(EngineTest, ConcurrentGreedyRequestsReproduceTheReference) {
  const Expected ex("nano-moe");
  auto engine = make(4, 16);  // small budget: prompts are prefilled in chunks, interleaved
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < ex.num_prompts(); ++i) {
    cs.push_back(std::make_unique<Collector>());
    engine->submit(greedy(ex.ids("p" + std::to_string(i) + ".input_ids"), 12), cs.back()->sink());
  }
  for (int i = 0; i < ex.num_prompts(); ++i) {
    ASSERT_TRUE(cs[i]->wait());
    EXPECT_EQ(cs[i]->tokens(), ex.ids("p" + std::to_string(i) + ".greedy_ids")) << "prompt " << i;
    EXPECT_EQ(cs[i]->reason(), FinishReason::Length);
  }
  const auto st = engine->stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.kv_reserved, 0);
  EXPECT_EQ(st.generation_tokens_total, 12u * ex.num_prompts());
}

TEST_F(EngineTest, MoreRequestsThanSlotsAllComplete) {
  const Expected ex("nano-moe");
  auto engine = make(1, 64);
  std::vector<std::unique_ptr<Collector>> cs;
  for (int k = 0; k < 5; ++k) {
    cs.push_back(std::make_unique<Collector>());
    engine->submit(greedy(ex.ids("p0.input_ids"), 4), cs.back()->sink());
  }
  const auto want = ex.ids("p0.greedy_ids");
  for (auto& c : cs) {
    ASSERT_TRUE(c->wait());
    EXPECT_EQ(c->tokens(), std::vector<int32_t>(want.begin(), want.begin() + 4));
  }
}

TEST_F(EngineTest, StopTokenEndsGeneration) {
  const Expected ex("nano-moe");
  const auto want = ex.ids("p1.greedy_ids");
  auto engine = make(2, 64);
  auto r = greedy(ex.ids("p1.input_ids"), 12);
  r.stop_token_ids = {want[3]};
  Collector c;
  engine->submit(r, c.sink());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens(), std::vector<int32_t>(want.begin(), want.begin() + 4));
  EXPECT_EQ(c.reason(), FinishReason::Stop);
}

TEST_F(EngineTest, CancelStopsAndFreesEverything) {
  auto engine = make(2, 64);
  Collector c;
  const uint64_t id = engine->submit(greedy({5, 6, 7}, 400), c.sink());
  while (c.events() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  engine->cancel(id);
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.reason(), FinishReason::Cancelled);
  EXPECT_LT(c.tokens().size(), 400u);
  // The engine is idle afterwards and still serves requests.
  for (int i = 0; i < 100 && engine->stats().running > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(engine->stats().running, 0);
  EXPECT_EQ(engine->stats().kv_reserved, 0);
  engine->cancel(id);    // twice: ignored
  engine->cancel(9999);  // unknown: ignored
  Collector c2;
  engine->submit(greedy({5, 6, 7}, 3), c2.sink());
  ASSERT_TRUE(c2.wait());
  EXPECT_EQ(c2.tokens().size(), 3u);
}

TEST_F(EngineTest, SeededSamplingIsReproducibleInABatch) {
  auto engine = make(4, 64);
  auto sampled = [&](uint64_t seed, bool with_neighbour) {
    GenerationRequest r;
    r.prompt = {11, 12, 13, 14};
    r.max_tokens = 16;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    Collector neighbour, c;
    if (with_neighbour) engine->submit(greedy({100, 200, 300}, 16), neighbour.sink());
    engine->submit(r, c.sink());
    c.wait();
    if (with_neighbour) neighbour.wait();
    return c.tokens();
  };
  const auto a = sampled(42, false);
  EXPECT_EQ(a, sampled(42, true));
  EXPECT_NE(a, sampled(43, false));
}

// Issue 18: a 3-token request waited behind a long prompt's whole prefill (the oldest prompt
// took the whole step budget). Now a short prompt submitted while a long one is prefilling
// gets its first token within a few engine steps, before the long prompt's first token, and
// the long prompt's output is what it is alone (chunked prefill stays exact).
TEST_F(EngineTest, ShortPromptIsNotBlockedByALongPrefill) {
  std::vector<int32_t> long_prompt(640);  // 40 steps of prefill at 16 tokens per step
  for (std::size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<int32_t>(3 + (i * 37) % 500);
  auto engine = make(4, 16, 8192, 2048);
  // Sinks run on the engine thread, in the order the tokens are emitted; stats() only takes the
  // engine's lock, which is not held while sinks run.
  std::atomic<int> order{0}, long_first{-1}, short_first{-1};
  std::atomic<uint64_t> short_step{0};
  Collector long_c, short_c;
  engine->submit(greedy(long_prompt, 4), [&, inner = long_c.sink()](const TokenEvent& ev) {
    if (ev.token >= 0 && long_first < 0) long_first = order++;
    inner(ev);
  });
  while (engine->stats().steps_total < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const uint64_t submitted_at = engine->stats().steps_total;  // the long prompt is prefilling
  engine->submit(greedy({7, 8, 9}, 1), [&, inner = short_c.sink()](const TokenEvent& ev) {
    if (ev.token >= 0 && short_first < 0) {
      short_first = order++;
      short_step = engine->stats().steps_total;
    }
    inner(ev);
  });
  ASSERT_TRUE(short_c.wait());
  ASSERT_TRUE(long_c.wait());
  EXPECT_EQ(short_c.tokens().size(), 1u);
  EXPECT_LT(short_first.load(), long_first.load()) << "the short prompt waited for the long prompt's prefill";
  EXPECT_LE(short_step.load() - submitted_at, 4u) << "steps from submit to the short prompt's first token";
  // The long prompt's tokens are those it gets alone, prefilled in one chunk.
  auto alone = make(1, 1024, 8192, 2048);
  Collector c;
  alone->submit(greedy(long_prompt, 4), c.sink());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(long_c.tokens(), c.tokens());
  EXPECT_EQ(long_c.tokens().size(), 4u);
}

// --prefill-step-tokens: concurrent prompts with nothing decoding are prefilled in steps of the
// larger budget (fewer steps), and every request's tokens are still the reference's.
TEST_F(EngineTest, PromptsOnlyStepsTakeThePrefillBudget) {
  const Expected ex("nano-moe");
  auto run = [&](int64_t prefill_tokens) {
    auto engine = make(4, 8, 4096, 512, prefill_tokens);
    std::vector<std::unique_ptr<Collector>> cs;
    int64_t prompt_tokens = 0;
    for (int i = 0; i < ex.num_prompts(); ++i) {
      cs.push_back(std::make_unique<Collector>());
      const auto ids = ex.ids("p" + std::to_string(i) + ".input_ids");
      prompt_tokens += static_cast<int64_t>(ids.size());
      engine->submit(greedy(ids, 6), cs.back()->sink());
    }
    for (int i = 0; i < ex.num_prompts(); ++i) {
      EXPECT_TRUE(cs[i]->wait());
      const auto want = ex.ids("p" + std::to_string(i) + ".greedy_ids");
      EXPECT_EQ(cs[i]->tokens(), std::vector<int32_t>(want.begin(), want.begin() + 6)) << "prompt " << i;
    }
    EXPECT_GT(prompt_tokens, 8);  // more than one ordinary step
    return engine->stats().steps_total;
  };
  const uint64_t ordinary = run(0), large = run(1024);
  EXPECT_LT(large, ordinary) << "steps";
  std::printf("steps: %llu with 8-token steps, %llu with a 1024-token prefill budget\n",
              static_cast<unsigned long long>(ordinary), static_cast<unsigned long long>(large));
}

// The step log (EngineOptions::step_log) holds one line per step, whose rows add up to what the
// requests fed: every prompt token once, a decode row per generated token but each request's
// first (drawn at its prompt's last row).
TEST_F(EngineTest, StepLogAccountsForEveryRow) {
  const Expected ex("nano-moe");
  const nemotron::testing::TempDir dir;  // of its own (other test processes run beside it)
  const std::string path = dir.sub("engine-steps.csv");
  int64_t prompt_tokens = 0;
  const int64_t out = 5;
  uint64_t steps = 0;
  {
    auto engine = make(2, 16, 4096, 512, 0, path);  // fewer slots than prompts: some wait
    std::vector<std::unique_ptr<Collector>> cs;
    for (int i = 0; i < ex.num_prompts(); ++i) {
      cs.push_back(std::make_unique<Collector>());
      const auto ids = ex.ids("p" + std::to_string(i) + ".input_ids");
      prompt_tokens += static_cast<int64_t>(ids.size());
      engine->submit(greedy(ids, out), cs.back()->sink());
    }
    for (auto& c : cs) ASSERT_TRUE(c->wait());
    steps = engine->stats().steps_total;
  }
  const nemotron::testing::StepLog log = nemotron::testing::read_step_log(path);
  ASSERT_TRUE(log.opened);
  EXPECT_EQ(log.header, "step,start_s,gap_s,prep_s,run_s,sequences,decode_rows,prompt_rows,drafts,running,waiting\n");
  ASSERT_TRUE(log.bad.empty()) << log.bad.front();
  uint64_t n = 0;
  long long decode_rows = 0, prompt_rows = 0;
  double last_start = -1;
  int max_waiting = 0;
  for (const auto& r : log.rows) {
    EXPECT_EQ(r.step, n++);
    EXPECT_GE(r.start, last_start);
    EXPECT_GE(r.gap, 0);
    EXPECT_GE(r.prep, 0);
    EXPECT_GT(r.run, 0);
    EXPECT_GE(r.sequences, 1);
    EXPECT_LE(r.decode_rows + r.prompt_rows, 16) << "the step budget";
    EXPECT_EQ(r.drafts, 0);
    EXPECT_GE(r.running, r.sequences);
    EXPECT_LE(r.running, 2) << "slots";
    max_waiting = std::max(max_waiting, r.waiting);
    last_start = r.start;
    decode_rows += r.decode_rows;
    prompt_rows += r.prompt_rows;
  }
  EXPECT_EQ(n, steps);
  EXPECT_EQ(prompt_rows, prompt_tokens);
  EXPECT_EQ(decode_rows, (out - 1) * ex.num_prompts());
  ASSERT_GT(ex.num_prompts(), 2);
  EXPECT_EQ(max_waiting, ex.num_prompts() - 2) << "the requests beyond the two slots wait for the first step";
}

// The first token's event carries the request's queue and prefill times; later events do not.
TEST_F(EngineTest, FirstTokenCarriesQueueAndPrefillTimes) {
  const Expected ex("nano-moe");
  auto engine = make(1, 16);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<TokenEvent> events;
  bool done = false;
  const auto t0 = std::chrono::steady_clock::now();
  engine->submit(greedy(ex.ids("p0.input_ids"), 4), [&](const TokenEvent& ev) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(ev);
    done = done || ev.finished;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; }));
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_GE(events[0].queue_seconds, 0.0);
  EXPECT_GT(events[0].prefill_seconds, 0.0);
  EXPECT_LE(events[0].queue_seconds + events[0].prefill_seconds, total);
  for (std::size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].queue_seconds, -1.0) << i;
    EXPECT_EQ(events[i].prefill_seconds, -1.0) << i;
  }
}

TEST_F(EngineTest, AnUnwritableStepLogIsNamed) {
  try {
    make(1, 16, 4096, 512, 0, "/nonexistent-dir/steps.csv");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("/nonexistent-dir/steps.csv"));
  }
}

TEST_F(EngineTest, InvalidRequestsAreClientErrors) {
  auto engine = make(2, 64, 1000, 100);
  Collector c;
  auto msg = [&](GenerationRequest r) {
    try {
      engine->submit(r, c.sink());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_THAT(msg(greedy({}, 4)), ::testing::HasSubstr("prompt is empty"));
  EXPECT_THAT(msg(greedy({1, 99999}, 4)), ::testing::HasSubstr("outside the vocabulary"));
  EXPECT_THAT(msg(greedy({1, 2}, 0)), ::testing::HasSubstr("max_tokens"));
  EXPECT_THAT(msg(greedy(std::vector<int32_t>(90, 5), 20)), ::testing::HasSubstr("maximum context length is 100"));
  auto r = greedy({1, 2}, 4);
  r.sampling.top_p = 5;
  EXPECT_THAT(msg(r), ::testing::HasSubstr("top_p"));
  auto small = make(2, 64, 50, 100);
  try {
    small->submit(greedy(std::vector<int32_t>(40, 5), 20), c.sink());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("tokens of KV cache"));
  }
}

}  // namespace
