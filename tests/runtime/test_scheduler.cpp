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
  ASSERT_EQ(st.size(), 3u);
  EXPECT_TRUE(st[0].decode());
  EXPECT_EQ(st[0].seq, 1u);
  // 9 tokens of budget left: an equal share of 4 each, the odd one to the oldest.
  EXPECT_EQ(st[1].seq, 2u);
  EXPECT_EQ(st[1].count, 5);
  EXPECT_EQ(st[2].seq, 3u);
  EXPECT_EQ(st[2].count, 4);
  EXPECT_EQ(tokens(st), 10);
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

TEST(Scheduler, EveryPromptGetsAShareAndEveryDecodeRuns) {
  // Budget 64: 3 sequences decoding (1 token each) leave 61 for 4 prompts: a share of 15,
  // then the prompts shorter than that give theirs back to the oldest.
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
  ASSERT_EQ(by_seq.size(), 7u);
  for (uint64_t i = 1; i <= 3; ++i) EXPECT_TRUE(by_seq[i].decode()) << i;
  EXPECT_EQ(by_seq[6].count, 5);        // short: whole
  EXPECT_EQ(by_seq[5].count, 15);       // long ones: their share
  EXPECT_EQ(by_seq[7].count, 15);
  EXPECT_EQ(by_seq[4].count, 15 + 11);  // the oldest also takes what is left (61 - 45 - 5)
  EXPECT_EQ(tokens(st), 64);
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

TEST(Scheduler, MorePromptsThanBudgetTokens) {
  // A budget smaller than the number of prompts: one token each, oldest first.
  Scheduler s({8, 3, 1 << 20});
  for (uint64_t i = 1; i <= 5; ++i) s.add(i, 10, 1);
  const auto st = s.schedule();
  ASSERT_EQ(st.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(st[i].seq, i + 1);
    EXPECT_EQ(st[i].count, 1);
  }
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
