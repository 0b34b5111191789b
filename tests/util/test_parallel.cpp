#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "util/parallel.h"

using nemotron::parallel_for;

TEST(ParallelFor, CoversEveryIndexOnce) {
  for (std::size_t n : {0u, 1u, 7u, 1000u, 12345u}) {
    std::vector<std::atomic<int>> hits(n);
    parallel_for(n, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) hits[i]++;
    });
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ParallelFor, NestedCallsRunSerially) {
  std::atomic<long> total{0};
  parallel_for(8, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i)
      parallel_for(10, [&](std::size_t b2, std::size_t e2) { total += static_cast<long>(e2 - b2); });
  });
  EXPECT_EQ(total.load(), 80);
}

TEST(ParallelFor, PropagatesExceptions) {
  EXPECT_THROW(parallel_for(100, [](std::size_t b, std::size_t) {
                 if (b == 0) throw std::runtime_error("boom");
               }),
               std::runtime_error);
  // The pool still works afterwards.
  std::atomic<int> count{0};
  parallel_for(50, [&](std::size_t b, std::size_t e) { count += static_cast<int>(e - b); });
  EXPECT_EQ(count.load(), 50);
}
