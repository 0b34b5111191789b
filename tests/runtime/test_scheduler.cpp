#include <gtest/gtest.h>

#include <map>

#include "runtime/scheduler.h"

using namespace nemotron::runtime;

namespace {

int64_t tokens(const std::vector<ScheduledChunk>& s) {
  int64_t n = 0;
  for (const auto& c : s) n += c.count;
  return n;
}

TEST(Scheduler, ChunkedPrefillThenDecodeWithinBudget) {
  Scheduler s({4, 8, 1000});
  ASSERT_TRUE(s.add(1, 20, 5));
  auto st = s.schedule();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].start, 0);
  EXPECT_EQ(st[0].count, 8);
  s.commit(st);
  st = s.schedule();
  EXPECT_EQ(st[0].start, 8);
  s.commit(st);
  st = s.schedule();
  EXPECT_EQ(st[0].start, 16);
  EXPECT_EQ(st[0].count, 4);
  s.commit(st);
  st = s.schedule();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_TRUE(st[0].decode());
}

TEST(Scheduler, DecodesFirstThenPrefillsShareTheRest) {
  Scheduler s({4, 10, 1000});
  s.add(1, 3, 5);
  s.commit(s.schedule());  // seq 1 prefilled
  s.add(2, 30, 5);
  s.add(3, 30, 5);
  auto st = s.schedule();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].decode());
  EXPECT_EQ(st[0].seq, 1u);
  // 9 tokens of budget left: the oldest's share of 4, after which it has the fewest tokens
  // left (26 < 30), so it takes the other 5 too.
  EXPECT_EQ(st[1].seq, 2u);
  EXPECT_EQ(st[1].count, 9);
  EXPECT_EQ(tokens(st), 10);
}

// Equal prompts finish one after another (each then decodes while the next prefills), not all
// together after the last step: 8 prompts of 32 tokens in 64-token steps.
TEST(Scheduler, EqualPromptsFinishOneAfterAnother) {
  Scheduler s({8, 64, 1 << 20});
  for (uint64_t i = 1; i <= 8; ++i) ASSERT_TRUE(s.add(i, 32, 100));
  std::map<uint64_t, int> first_decode;
  for (int step = 0; step < 8; ++step) {
    const auto st = s.schedule();
    EXPECT_LE(tokens(st), 64);
    for (const auto& c : st)
      if (c.decode() && !first_decode.count(c.seq)) first_decode[c.seq] = step;
    s.commit(st);
  }
  // Step 0 prefills 1 and 2; step k >= 1 decodes those done and prefills about two more with
  // what the decodes leave. Equal shares (8 tokens each) had all 8 first decode at step 4.
  ASSERT_EQ(first_decode.size(), 8u);
  EXPECT_EQ(first_decode[1], 1);
  EXPECT_EQ(first_decode[2], 1);
  for (uint64_t i = 2; i <= 8; ++i) EXPECT_LE(first_decode[i - 1], first_decode[i]) << i;
  EXPECT_GE(first_decode[8], 4);
}

// The earlier policy (NEMOTRON_PREFILL_SHARES=equal, for A/B runs): equal shares, then the
// oldest first; equal prompts all finish in the same step.
TEST(Scheduler, EqualSharesWhenAsked) {
  SchedulerLimits limits{8, 64, 1 << 20};
  limits.equal_prefill_shares = true;
  Scheduler s(limits);
  for (uint64_t i = 1; i <= 4; ++i) s.add(i, 1000, 10);
  s.add(5, 5, 10);
  const auto st = s.schedule();
  std::map<uint64_t, int64_t> take;
  for (const auto& c : st) take[c.seq] = c.count;
  EXPECT_EQ(take[5], 5);        // shares of 12, the short one whole
  EXPECT_EQ(take[1], 12 + 11);  // the oldest: its share and what is left (64 - 48 - 5)
  for (uint64_t i = 2; i <= 4; ++i) EXPECT_EQ(take[i], 12) << i;
  Scheduler eq(limits);
  for (uint64_t i = 1; i <= 8; ++i) eq.add(i, 32, 100);
  for (int step = 0; step < 4; ++step) {
    const auto chunks = eq.schedule();
    for (const auto& c : chunks) EXPECT_FALSE(c.decode()) << "step " << step;
    eq.commit(chunks);
  }
  EXPECT_EQ(eq.decoding(), 8);  // all together after the fourth step
}

// A step that decodes no sequence takes the larger prefill budget; once a sequence decodes,
// steps keep to max_step_tokens (their inter-token latency), decodes first as always.
TEST(Scheduler, PromptsOnlyStepsTakeThePrefillBudget) {
  SchedulerLimits limits{64, 512, 1 << 20};
  limits.prefill_step_tokens = 2048;
  Scheduler s(limits);
  for (uint64_t i = 1; i <= 64; ++i) ASSERT_TRUE(s.add(i, 128, 16));
  auto st = s.schedule();
  EXPECT_EQ(tokens(st), 2048);  // nothing decodes: 16 whole prompts (the oldest's share, then fewest left)
  for (const auto& c : st) EXPECT_FALSE(c.decode());
  s.commit(st);
  EXPECT_EQ(s.decoding(), 16);
  st = s.schedule();
  EXPECT_EQ(tokens(st), 512);  // 16 decodes and 496 prompt tokens
  int64_t decodes = 0;
  for (const auto& c : st) decodes += c.decode();
  EXPECT_EQ(decodes, 16);
  s.commit(st);
  // Smaller than max_step_tokens (or 0): the step budget everywhere.
  SchedulerLimits same{4, 64, 1 << 20};
  same.prefill_step_tokens = 16;
  Scheduler t(same);
  t.add(1, 1000, 4);
  EXPECT_EQ(tokens(t.schedule()), 64);
  // A long prompt alone: prefilled in steps of the prefill budget, then decodes.
  SchedulerLimits one{4, 64, 1 << 20};
  one.prefill_step_tokens = 256;
  Scheduler u(one);
  u.add(1, 600, 4);
  for (int64_t expect : {256, 256, 88}) {
    st = u.schedule();
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0].count, expect);
    u.commit(st);
  }
  st = u.schedule();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_TRUE(st[0].decode());
  // A prompt admitted while another decodes shares the ordinary budget.
  u.add(2, 600, 4);
  st = u.schedule();
  EXPECT_EQ(tokens(st), 64);
}

// However many shorter prompts keep arriving, the oldest prompt still prefilling gets its
// share of every step, so a long prompt is never starved: here 100 tokens of 5-token prompts
// arrive per step of 64 tokens (more than the budget), and the long one still gets its share.
TEST(Scheduler, ALongPromptProgressesBehindAStreamOfShortOnes) {
  Scheduler s({64, 64, 1 << 20});
  ASSERT_TRUE(s.add(1, 300, 1));
  uint64_t next = 2;
  int64_t fed = 0;
  int steps = 0;
  while (fed < 300) {
    ASSERT_LT(steps, 300) << "the long prompt got " << fed << " of 300 tokens";
    for (int j = 0; j < 20 && s.running() + s.waiting() < 64; ++j) ASSERT_TRUE(s.add(next++, 5, 0));
    const auto st = s.schedule();
    const int64_t prefilling = s.running() - s.decoding();
    int64_t mine = 0;
    for (const auto& c : st)
      if (c.seq == 1 && !c.decode()) mine = c.count;
    EXPECT_GE(mine, std::min<int64_t>(300 - fed, std::max<int64_t>(1, 64 / prefilling))) << "step " << steps;
    fed += mine;
    s.commit(st);
    for (const auto& c : st)  // short prompts are done once prefilled (max_tokens 0)
      if (c.seq != 1 && !c.decode() && c.start + c.count == 5) s.remove(c.seq);
    ++steps;
  }
  EXPECT_EQ(s.decoding(), 1);
}

// Issue 18: a 3-token prompt waited behind a 16K-token one for its whole prefill. Now a
// prompt no longer than its share of the step budget is prefilled in the first step after
// its admission, and the long prompt keeps the rest of the budget.
TEST(Scheduler, ShortPromptIsNotBlockedByALongOne) {
  Scheduler s({4, 512, 1 << 20});
  ASSERT_TRUE(s.add(1, 16000, 16));
  auto st = s.schedule();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].count, 512);  // alone: the whole budget
  s.commit(st);
  ASSERT_TRUE(s.add(2, 3, 16));
  st = s.schedule();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].seq, 1u);
  EXPECT_EQ(st[0].start, 512);
  EXPECT_EQ(st[0].count, 509);  // what the short prompt leaves of its share goes back to the long one
  EXPECT_EQ(st[1].seq, 2u);
  EXPECT_EQ(st[1].start, 0);
  EXPECT_EQ(st[1].count, 3);    // the whole short prompt: its first token comes with this step
  s.commit(st);
  st = s.schedule();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].decode());  // decodes come first
  EXPECT_EQ(st[0].seq, 2u);
  EXPECT_EQ(st[1].seq, 1u);
  EXPECT_EQ(st[1].count, 511);
}

TEST(Scheduler, TheOldestsShareThenFewestLeftFirstAndEveryDecodeRuns) {
  // Budget 64: 3 sequences decoding (1 token each) leave 61 for 4 prompts: the oldest's share
  // of 15, then the short prompt whole, then the oldest (now the fewest left of the long ones).
  Scheduler s({8, 64, 1 << 20});
  for (uint64_t i = 1; i <= 3; ++i) s.add(i, 2, 100);
  s.commit(s.schedule());
  s.add(4, 1000, 10);
  s.add(5, 1000, 10);
  s.add(6, 5, 10);
  s.add(7, 1000, 10);
  const auto st = s.schedule();
  std::map<uint64_t, ScheduledChunk> by_seq;
  for (const auto& c : st) by_seq[c.seq] = c;
  ASSERT_EQ(by_seq.size(), 5u);
  for (uint64_t i = 1; i <= 3; ++i) EXPECT_TRUE(by_seq[i].decode()) << i;
  EXPECT_EQ(by_seq[6].count, 5);        // short: whole
  EXPECT_EQ(by_seq[4].count, 15 + 41);  // the oldest: its share, then what is left (61 - 15 - 5)
  EXPECT_EQ(by_seq.count(5), 0u);       // the younger long ones wait their turn
  EXPECT_EQ(by_seq.count(7), 0u);
  EXPECT_EQ(tokens(st), 64);
  // With the shortest in the middle of the long ones, it still comes before them.
  Scheduler mid({8, 64, 1 << 20});
  mid.add(1, 1000, 10);
  mid.add(2, 50, 10);
  mid.add(3, 30, 10);
  std::map<uint64_t, int64_t> take;
  for (const auto& c : mid.schedule()) take[c.seq] = c.count;
  EXPECT_EQ(take[1], 21);  // share 64 / 3, then the budget is gone: 3 takes 30, 2 the last 13
  EXPECT_EQ(take[3], 30);
  EXPECT_EQ(take[2], 13);
  // A long prompt alone takes the whole budget again once the others are done.
  Scheduler one({8, 64, 1 << 20});
  one.add(1, 1000, 10);
  EXPECT_EQ(tokens(one.schedule()), 64);
}

TEST(Scheduler, DecodesNeverExceedTheBudgetAndTakeTurns) {
  // 5 sequences decoding with 2 drafts each (3 tokens) in a budget of 10: 3 decodes fit per
  // step; the ones left out go first next step, so every sequence decodes within two steps.
  Scheduler s({8, 10, 1 << 20});
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(s.add(i, 1, 100, 2));
  s.commit(s.schedule());  // 5 prompts of 1 token: a share of 2 each, all prefilled
  std::map<uint64_t, int> decodes;
  for (int step = 0; step < 10; ++step) {
    const auto st = s.schedule();
    int64_t rows = 0;
    for (const auto& c : st) {
      ASSERT_TRUE(c.decode());
      rows += 3;
      decodes[c.seq]++;
    }
    EXPECT_EQ(st.size(), 3u);
    EXPECT_LE(rows, 10);
    s.commit(st);
  }
  for (uint64_t i = 1; i <= 5; ++i) EXPECT_EQ(decodes[i], 6) << "sequence " << i;
}

// The step's own lookahead (speculation chose fewer drafts, or none): decodes cost 1 + that,
// at most each sequence's own, so all 5 fit where 3 did with 2 drafts each.
TEST(Scheduler, AStepsLookaheadSetsTheDecodeCost) {
  Scheduler s({8, 10, 1 << 20});
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(s.add(i, 1, 100, 2));
  EXPECT_EQ(s.decoding(), 0);
  s.commit(s.schedule());
  EXPECT_EQ(s.decoding(), 5);
  EXPECT_EQ(s.schedule(0).size(), 5u);  // plain decoding: 5 of 10 tokens
  EXPECT_EQ(s.schedule(1).size(), 5u);  // 1 draft each: 10 of 10
  EXPECT_EQ(s.schedule(7).size(), 3u);  // capped at the sequences' own 2
  EXPECT_EQ(s.schedule().size(), 3u);
  ASSERT_TRUE(s.add(6, 4, 100, 2));
  const auto st = s.schedule(0);  // 5 decodes, then the new prompt's 4 tokens
  ASSERT_EQ(st.size(), 6u);
  EXPECT_EQ(tokens(st), 9);
  EXPECT_EQ(s.decoding(), 5);  // the new one still prefills
  EXPECT_EQ(s.prefill_pending(), 4);
  ASSERT_TRUE(s.add(7, 30, 100, 2));
  ASSERT_TRUE(s.add(8, 9, 100, 2));
  ASSERT_TRUE(s.add(9, 5, 100, 2));
  EXPECT_EQ(s.prefill_pending(), 4 + 30 + 9);  // two free slots (6 of 8 run): the first two waiting
}

// A prompt the engine resumes from the prefix cache (set_resume_hint) starts at the cached
// point and is charged for the tokens after it: seven followers of a cached 40-token prompt
// (39 cached) join in one 16-token step beside a decode, instead of one per step.
TEST(Scheduler, APromptResumedFromTheCacheIsChargedForWhatItFeeds) {
  Scheduler s({8, 16, 1 << 20});
  std::map<uint64_t, int64_t> cached;
  s.set_resume_hint([&](uint64_t seq) { return cached.count(seq) ? cached[seq] : 0; });
  ASSERT_TRUE(s.add(1, 40, 100));
  auto st = s.schedule();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].start, 0);  // nothing cached
  EXPECT_EQ(st[0].count, 16);
  s.commit(st);
  cached[1] = 30;  // asked only before a sequence's first chunk: seq 1 goes on from 16
  st = s.schedule();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].start, 16);
  s.commit(st);
  s.commit(s.schedule());  // 32..40: seq 1 decodes from here
  for (uint64_t i = 2; i <= 8; ++i) {
    cached[i] = 39;
    ASSERT_TRUE(s.add(i, 40, 100));
  }
  cached[8] = 400;  // clamped: at least the prompt's last token is fed
  st = s.schedule();
  ASSERT_EQ(st.size(), 8u);
  EXPECT_TRUE(st[0].decode());
  for (std::size_t i = 1; i < st.size(); ++i) {
    EXPECT_EQ(st[i].start, 39) << i;
    EXPECT_EQ(st[i].count, 1) << i;
  }
  s.commit(st);
  EXPECT_EQ(s.decoding(), 8);
}

TEST(Scheduler, MorePromptsThanBudgetTokens) {
  // A budget smaller than the number of prompts: the oldest's share is one token, after
  // which it has the fewest left and takes the rest.
  Scheduler s({8, 3, 1 << 20});
  for (uint64_t i = 1; i <= 5; ++i) s.add(i, 10, 1);
  auto st = s.schedule();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].seq, 1u);
  EXPECT_EQ(st[0].count, 3);
  s.commit(st);
  s.add(6, 2, 1);  // fewer tokens left than the oldest's 7: after the oldest's one token, whole
  st = s.schedule();
  std::map<uint64_t, int64_t> take;
  for (const auto& c : st) take[c.seq] = c.count;
  EXPECT_EQ(take[1], 1);
  EXPECT_EQ(take[6], 2);
  EXPECT_EQ(tokens(st), 3);
}

TEST(Scheduler, SlotLimitAndFifoAdmission) {
  Scheduler s({2, 100, 1000});
  for (uint64_t i = 1; i <= 4; ++i) s.add(i, 5, 5);
  auto st = s.schedule();
  EXPECT_EQ(s.running(), 2);
  EXPECT_EQ(s.waiting(), 2);
  EXPECT_EQ(st[0].seq, 1u);
  EXPECT_EQ(st[1].seq, 2u);
  s.remove(1);
  st = s.schedule();
  EXPECT_EQ(s.running(), 2);
  bool has3 = false;
  for (const auto& c : st) has3 |= c.seq == 3;
  EXPECT_TRUE(has3);
}

TEST(Scheduler, KvReservationNeverOvercommits) {
  Scheduler s({8, 100, 100});
  EXPECT_FALSE(s.add(9, 90, 20)) << "needs 110 > capacity 100: can never fit";
  EXPECT_TRUE(s.add(1, 40, 20));
  EXPECT_TRUE(s.add(2, 30, 20));  // 60 + 50 > 100: must wait
  EXPECT_TRUE(s.add(3, 10, 10));  // would fit, but FIFO: does not overtake 2
  s.schedule();
  EXPECT_EQ(s.running(), 1);
  EXPECT_EQ(s.kv_reserved(), 60);
  s.remove(1);
  s.schedule();
  EXPECT_EQ(s.running(), 2);
  EXPECT_EQ(s.kv_reserved(), 70);
  EXPECT_LE(s.kv_reserved(), s.limits().kv_token_capacity);
}

TEST(Scheduler, RemoveWaitingAndUnknown) {
  Scheduler s({1, 10, 100});
  s.add(1, 5, 1);
  s.add(2, 5, 1);
  s.schedule();
  s.remove(2);  // waiting
  EXPECT_EQ(s.waiting(), 0);
  s.remove(42);  // unknown: no effect
  s.remove(1);
  EXPECT_EQ(s.running(), 0);
  EXPECT_EQ(s.kv_reserved(), 0);
  EXPECT_TRUE(s.schedule().empty());
}

}  // namespace
