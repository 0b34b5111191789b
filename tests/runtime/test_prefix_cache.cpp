// The prefix cache: its index (runtime/prefix_cache.h) and the engine resuming requests from
// backend snapshots (CPU backend). Exactness: every output with the cache equals the output of
// an engine without it, greedy and seeded sampling (penalties included), for hits at the
// snapshot interval, at requested points (a chat history), at a previous generation's end,
// for requests diverging inside a cached prefix, for several requests with one prompt sent
// together (they wait for the first one's snapshot), under eviction, and with speculative
// decoding on.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "temp_dir.h"

#include "engine_test_util.h"
#include "fixture_util.h"
#include "model/backend.h"
#include "runtime/engine.h"
#include "runtime/prefix_cache.h"
#include "runtime/prefix_store.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::runtime;
using nemotron::testing::fixture_dir;

namespace {

std::vector<int32_t> seq(int n, int seed) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<int32_t>(3 + (i * 37 + seed * 101) % 500));
  return v;
}

TEST(PrefixCacheIndex, LongestProperPrefixLruAndBudget) {
  PrefixCache c(1000);
  std::vector<uint64_t> ev;
  const auto a = seq(40, 1);
  EXPECT_TRUE(c.insert(a.data(), 10, 1, 100, ev));
  EXPECT_TRUE(c.insert(a.data(), 25, 2, 100, ev));
  EXPECT_TRUE(c.insert(a.data(), 40, 3, 100, ev));
  EXPECT_FALSE(c.insert(a.data(), 25, 9, 100, ev));  // cached already
  EXPECT_TRUE(ev.empty());
  // The longest proper prefix: a itself (40) is not proper for a query of 40 tokens.
  auto h = c.lookup(a.data(), 40);
  EXPECT_EQ(h.tokens, 25);
  EXPECT_EQ(h.id, 2u);
  std::vector<int32_t> longer = a;
  longer.push_back(7);
  EXPECT_EQ(c.lookup(longer.data(), 41).tokens, 40);
  // A query diverging at token 12 finds the 10-token entry only.
  std::vector<int32_t> b = a;
  b[12] = 499;
  EXPECT_EQ(c.lookup(b.data(), 40).tokens, 10);
  EXPECT_EQ(c.lookup(a.data(), 5).tokens, 0);
  // cached_tokens: lookup's answer, neither counted nor marked as used; the generation moves
  // only when entries come or go.
  const auto queries = c.stats().queries;
  const uint64_t generation = c.generation();
  EXPECT_EQ(c.cached_tokens(a.data(), 40), 25);
  EXPECT_EQ(c.cached_tokens(b.data(), 40), 10);
  EXPECT_EQ(c.cached_tokens(a.data(), 5), 0);
  EXPECT_EQ(c.stats().queries, queries);
  EXPECT_EQ(c.generation(), generation);
  EXPECT_FALSE(c.insert(a.data(), 25, 9, 100, ev));  // cached already: nothing changes
  EXPECT_EQ(c.generation(), generation);
  EXPECT_TRUE(c.contains(a.data(), 25));
  EXPECT_FALSE(c.contains(b.data(), 25));
  // Budget: 1000 bytes, 300 used. An 800-byte entry evicts the least recently used until it
  // fits: the 25-token entry (used by the first query; the 40 and 10 ones were used since).
  EXPECT_TRUE(c.insert(seq(5, 2).data(), 5, 4, 800, ev));
  EXPECT_EQ(ev, (std::vector<uint64_t>{2u}));
  EXPECT_GT(c.generation(), generation);
  EXPECT_EQ(c.stats().bytes, 1000);
  EXPECT_FALSE(c.insert(seq(5, 3).data(), 5, 5, 1001, ev));  // never fits
  // remove: the entry goes (its bytes with it); unknown ids are left alone.
  EXPECT_TRUE(c.remove(4));
  EXPECT_FALSE(c.remove(4));
  EXPECT_EQ(c.stats().bytes, 200);
  EXPECT_FALSE(c.contains(seq(5, 2).data(), 5));
  EXPECT_TRUE(c.insert(seq(5, 2).data(), 5, 4, 800, ev));
  ev.clear();
  c.clear(ev);
  EXPECT_EQ(ev.size(), 3u);
  EXPECT_EQ(c.stats().entries, 0);
  EXPECT_EQ(c.stats().bytes, 0);
}

class PrefixCacheEngine : public ::testing::Test {
 protected:
  void SetUp() override { m_ = std::make_unique<model::Model>(model::Model::load(fixture_dir("super-latent-mtp"))); }

  // gap: prefix_snapshot_min_gap; 0 here (these prompts are tens of tokens: every snapshot
  // point is taken), the default in SnapshotsCloserThanTheGapAreSkipped.
  std::unique_ptr<Engine> engine(int64_t cache_bytes, int slots = 4, int K = 0, int64_t interval = 16,
                                 const std::string& dir = "", int64_t gap = 0) {
    model::BackendOptions b;
    b.device = "cpu";
    b.max_seqs = slots;
    b.max_step_tokens = 64;
    EngineOptions o;
    o.limits = {slots, 64, 1 << 16};
    o.max_model_len = 4096;
    o.speculative_tokens = K;
    o.speculate_always = K > 0;
    o.prefix_cache_bytes = cache_bytes;
    o.prefix_snapshot_interval = interval;
    o.prefix_snapshot_min_gap = gap;
    o.prefix_cache_dir = dir;
    return std::make_unique<Engine>(model::make_backend(*m_, b), o);
  }

  static GenerationRequest req(std::vector<int32_t> prompt, bool sampled, int n = 12) {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = n;
    if (sampled) {
      r.sampling.temperature = 0.9f;
      r.sampling.top_p = 0.9f;
      r.sampling.repetition_penalty = 1.3f;
      r.sampling.frequency_penalty = 0.2f;
      r.sampling.seed = 5;
    } else {
      r.sampling.temperature = 0.0f;
    }
    return r;
  }

  // The tokens of each request, run one after another (each waits for the previous).
  static std::vector<std::vector<int32_t>> serial(Engine& e, const std::vector<GenerationRequest>& rs,
                                                  std::vector<int64_t>* cached = nullptr) {
    std::vector<std::vector<int32_t>> out;
    for (const auto& r : rs) {
      std::vector<int32_t> ids;
      int64_t c = 0;
      for (const auto& ev : generate_blocking(e, r)) {
        if (ev.event.token >= 0) ids.push_back(ev.event.token);
        c = std::max(c, ev.event.cached_tokens);
      }
      out.push_back(ids);
      if (cached) cached->push_back(c);
    }
    return out;
  }

  std::unique_ptr<model::Model> m_;
};

TEST_F(PrefixCacheEngine, ConversationTurnsResumeAndEqualTheUncachedOutputs) {
  for (bool sampled : {false, true}) {
    // Turn 1: a 40-token prompt; turn 2: turn 1 + its reply + 9 new tokens; turn 3 diverges
    // from turn 1 at token 30 (a hit at the snapshot interval, 16 or 32, not at 40).
    const auto p1 = seq(40, 1);
    auto plain = engine(0);
    const auto r1 = serial(*plain, {req(p1, sampled)})[0];
    std::vector<int32_t> p2 = p1;
    p2.insert(p2.end(), r1.begin(), r1.end());
    const auto extra = seq(9, 7);
    p2.insert(p2.end(), extra.begin(), extra.end());
    std::vector<int32_t> p3 = p1;
    p3[30] = 1;
    std::vector<GenerationRequest> turns{req(p1, sampled), req(p2, sampled), req(p3, sampled)};
    turns[0].snapshot_at = {35};  // a requested point: a hit for p2 (and not for p3)
    const auto want = serial(*plain, turns);
    auto cached_engine = engine(1 << 26);
    std::vector<int64_t> cached;
    EXPECT_EQ(serial(*cached_engine, turns, &cached), want) << (sampled ? "sampled" : "greedy");
    EXPECT_EQ(cached[0], 0);
    // Turn 2 resumes from turn 1's generation end: prompt + reply but its last token.
    EXPECT_EQ(cached[1], static_cast<int64_t>(p1.size() + r1.size()) - 1);
    EXPECT_EQ(cached[2], 16);  // the interval point before the divergence at 30 (32 > 30)
    const auto st = cached_engine->stats().prefix_cache;
    EXPECT_GT(st.hit_tokens, 0u);
    EXPECT_GT(st.entries, 0);
    EXPECT_LE(st.bytes, st.budget);
  }
}

// A chat turn's snapshot points: the history's end (requested), the prompt's end a few tokens
// later and the reply's end: with a gap of 16 tokens the two later points are skipped (one
// snapshot per turn), the next turn resumes from the history's end, outputs unchanged; a turn
// takes its own history end however close to the point it resumed from; a leader's point
// before its last token is taken whatever the gap.
TEST_F(PrefixCacheEngine, SnapshotsCloserThanTheGapAreSkipped) {
  const auto p1 = seq(40, 5);
  auto plain = engine(0);
  const auto r1 = serial(*plain, {req(p1, false, 4)})[0];
  std::vector<int32_t> p2 = p1;
  p2.insert(p2.end(), r1.begin(), r1.end());
  const auto extra = seq(6, 9);
  p2.insert(p2.end(), extra.begin(), extra.end());
  std::vector<GenerationRequest> turns{req(p1, false, 4), req(p2, false, 4)};
  turns[0].snapshot_at = {37};  // the history's end; the prompt ends at 40, the reply at 43
  turns[1].snapshot_at = {static_cast<int64_t>(p2.size()) - 3};
  const auto want = serial(*plain, turns);
  for (int64_t gap : {0, 16}) {
    auto e = engine(1 << 26, 4, 0, 1 << 20, "", gap);  // no interval points
    std::vector<int64_t> cached;
    EXPECT_EQ(serial(*e, turns, &cached), want) << "gap " << gap;
    EXPECT_EQ(cached[0], 0);
    if (gap == 0) {
      // Every point: turn 2 resumes from turn 1's reply end (prompt + reply but its last token).
      EXPECT_EQ(cached[1], static_cast<int64_t>(p1.size() + r1.size()) - 1);
      // 37 and 40 and 43 of turn 1, then turn 2's history end, prompt end and reply end.
      EXPECT_EQ(e->stats().prefix_cache.entries, 6);
    } else {
      EXPECT_EQ(cached[1], 37);
      // 37 of turn 1; turn 2 resumed there and takes its history end (p2.size() - 3 = 47, 10
      // after 37, the first point of its own), not its prompt end (3 later) nor its reply end.
      EXPECT_EQ(e->stats().prefix_cache.entries, 2);
    }
  }
  // A leader's point: four requests with one prompt; the followers resume before its last token.
  const auto p = seq(30, 6);
  std::vector<GenerationRequest> same(3, req(p, false, 3));
  same[0].snapshot_at = {27};
  auto e = engine(1 << 26, 4, 0, 1 << 20, "", 16);
  std::vector<std::vector<int32_t>> out(same.size());
  std::vector<int64_t> cached(same.size(), 0);
  std::vector<std::thread> ts;
  for (std::size_t i = 0; i < same.size(); ++i)
    ts.emplace_back([&, i] {
      for (const auto& ev : generate_blocking(*e, same[i])) {
        if (ev.event.token >= 0) out[i].push_back(ev.event.token);
        cached[i] = std::max(cached[i], ev.event.cached_tokens);
      }
    });
  for (auto& t : ts) t.join();
  const auto want3 = serial(*plain, {same[0]})[0];
  for (const auto& o : out) EXPECT_EQ(o, want3);
  for (int64_t c : cached) EXPECT_TRUE(c == 0 || c == 27 || c == 29) << c;
}

TEST_F(PrefixCacheEngine, SamePromptTogetherWaitsForTheFirstAndEqualsUncached) {
  // Four requests with one prompt (as n = 4 choices), different seeds, sent at once.
  const auto p = seq(50, 3);
  std::vector<GenerationRequest> rs;
  for (int i = 0; i < 4; ++i) {
    rs.push_back(req(p, true));
    rs.back().sampling.seed = 10u + static_cast<uint64_t>(i);
  }
  auto concurrent = [&](Engine& e, std::vector<int64_t>* cached) {
    std::vector<std::vector<int32_t>> out(rs.size());
    std::vector<int64_t> c(rs.size(), 0);
    std::vector<std::thread> ts;
    for (std::size_t i = 0; i < rs.size(); ++i)
      ts.emplace_back([&, i] {
        for (const auto& ev : generate_blocking(e, rs[i])) {
          if (ev.event.token >= 0) out[i].push_back(ev.event.token);
          c[i] = std::max(c[i], ev.event.cached_tokens);
        }
      });
    for (auto& t : ts) t.join();
    if (cached) *cached = c;
    return out;
  };
  auto plain = engine(0);
  const auto want = concurrent(*plain, nullptr);
  auto e = engine(1 << 26);
  std::vector<int64_t> cached;
  EXPECT_EQ(concurrent(*e, &cached), want);
  // One prefilled the prompt; the others resumed before its last token (when they arrived
  // together; a late one may have found a longer prefix).
  EXPECT_GE(std::count(cached.begin(), cached.end(), static_cast<int64_t>(p.size()) - 1), 1);
}

// Requests with a prompt that is cached up to its last tokens start together: none waits for
// another to lead (the first of them leads once, to its point before the last token), and the
// step budget is charged only for what each feeds. Before, they joined one per step, each
// leading the next (64 same-prompt requests ran at 46 sequences through serve).
TEST_F(PrefixCacheEngine, FollowersOfACachedPromptStartTogether) {
  const auto p = seq(50, 11);
  const nemotron::testing::TempDir dir;
  const std::string path = dir.sub("prefix-followers.csv");
  std::vector<int32_t> want;
  uint64_t first_phase = 0;
  std::vector<std::unique_ptr<nemotron::testing::Collector>> cs;
  {
    model::BackendOptions b;
    b.device = "cpu";
    b.max_seqs = 8;
    b.max_step_tokens = 64;
    EngineOptions o;
    o.limits = {8, 64, 1 << 16};
    o.max_model_len = 4096;
    o.prefix_cache_bytes = 1 << 26;
    o.prefix_snapshot_interval = 16;
    o.prefix_snapshot_min_gap = 0;
    o.step_log = path;
    Engine e(model::make_backend(*m_, b), o);
    want = serial(e, {req(p, false, 4)})[0];  // snapshots at 16, 32, 48 and 50
    first_phase = e.stats().steps_total;
    for (int i = 0; i < 7; ++i) {
      cs.push_back(std::make_unique<nemotron::testing::Collector>());
      e.submit(req(p, false, 4), cs.back()->sink());
    }
    for (auto& c : cs) ASSERT_TRUE(c->wait());
  }
  for (auto& c : cs) {
    EXPECT_EQ(c->tokens(), want);
    EXPECT_GE(c->cached_tokens(), 48);
  }
  const auto log = nemotron::testing::read_step_log(path);
  ASSERT_TRUE(log.bad.empty());
  ASSERT_GT(log.rows.size(), first_phase);
  // The first follower feeds 48..49 (its point for the others) and 49..50; the other six
  // resume at 49 in one step (with it, or after it when they reach the engine later).
  int prompt_steps = 0;
  for (std::size_t i = first_phase; i < log.rows.size(); ++i) prompt_steps += log.rows[i].prompt_rows > 0;
  EXPECT_LE(prompt_steps, 3);
}

TEST_F(PrefixCacheEngine, EvictionAndSpeculationStayExact) {
  const auto base = seq(48, 9);
  std::vector<GenerationRequest> rs;
  for (int i = 0; i < 6; ++i) {
    auto p = base;
    const auto tail = seq(5 + i, 20 + i);
    p.insert(p.end(), tail.begin(), tail.end());
    rs.push_back(req(p, i % 2 == 1));
  }
  auto plain = engine(0);
  const auto want = serial(*plain, rs);
  // A budget of about two snapshots: entries are evicted all along.
  const auto probe = model::make_backend(*m_, {.device = "cpu"});
  const int64_t two = 2 * probe->snapshot_bytes(64);
  auto small = engine(two);
  EXPECT_EQ(serial(*small, rs), want);
  EXPECT_LE(small->stats().prefix_cache.bytes, two);
  // With speculative decoding (K = 2, every step verified) and the cache.
  auto spec = engine(1 << 26, 4, 2);
  EXPECT_EQ(serial(*spec, rs), want);
  EXPECT_GT(spec->stats().prefix_cache.hit_tokens, 0u);
  EXPECT_GT(spec->stats().spec_drafts, 0u);
}

TEST_F(PrefixCacheEngine, PrefixesSurviveARestartThroughTheDirectory) {
  nemotron::testing::TempDir tmp;
  const std::string dir = tmp.sub("prefixes");
  const auto p1 = seq(40, 4);
  std::vector<int32_t> p2 = p1;
  const auto extra = seq(7, 8);
  p2.insert(p2.end(), extra.begin(), extra.end());
  auto plain = engine(0);
  const auto want = serial(*plain, {req(p2, true)});
  {
    auto first = engine(1 << 26, 4, 0, 16, dir);
    serial(*first, {req(p1, false)});
  }  // stops: writes the prefixes
  ASSERT_TRUE(std::filesystem::exists(dir + "/prefix-0.bin"));
  // A file of another model and a damaged one are skipped with a message.
  std::filesystem::copy_file(dir + "/prefix-0.bin", dir + "/prefix-90.bin");
  {
    std::fstream f(dir + "/prefix-90.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f.put('x');  // the fingerprint
  }
  std::ofstream(dir + "/prefix-91.bin") << "NMTPFX01 short";
  std::vector<int64_t> cached;
  auto second = engine(1 << 26, 4, 0, 16, dir);
  EXPECT_EQ(serial(*second, {req(p2, true)}, &cached), want);
  EXPECT_EQ(cached[0], static_cast<int64_t>(p1.size()));  // p1's prompt-end snapshot
  // The loader on its own: what it reads and what it skips.
  PrefixCache index(1 << 26);
  auto backend = model::make_backend(*m_, {.device = "cpu"});
  uint64_t next = 1;
  std::ostringstream log;
  const int n = load_prefixes(dir, model_fingerprint(*m_), index, *backend, next, log);
  EXPECT_GE(n, 1);
  EXPECT_THAT(log.str(), ::testing::HasSubstr("prefix-90.bin: skipped (written for another model"));
  EXPECT_THAT(log.str(), ::testing::HasSubstr("prefix-91.bin: skipped"));
}

}  // namespace
