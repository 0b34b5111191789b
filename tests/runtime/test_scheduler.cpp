#include <gtest/gtest.h>

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

TEST(Scheduler, DecodesFirstThenPrefillsOldestFirst) {
  Scheduler s({4, 10, 1000});
  s.add(1, 3, 5);
  s.commit(s.schedule());  // seq 1 prefilled
  s.add(2, 30, 5);
  s.add(3, 30, 5);
  auto st = s.schedule();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].decode());
  EXPECT_EQ(st[0].seq, 1u);
  EXPECT_EQ(st[1].seq, 2u);  // 9 tokens of budget left, all to the oldest prefill
  EXPECT_EQ(st[1].count, 9);
  EXPECT_EQ(tokens(st), 10);
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
