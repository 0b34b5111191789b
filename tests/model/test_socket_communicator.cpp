// The TCP mesh of a run over several nodes and its communicator (model/parallel/socket_mesh.h,
// socket_communicator.h), with the ranks as threads over localhost: the rendezvous, rank-order
// sums bit for bit equal to the in-process group's, gathers of uneven counts, groups inside the
// world, size mismatches, a failed rank and rendezvous errors; and the sharded CPU forward over
// it, bit for bit the in-process ranks' forward.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fixture_util.h"
#include "free_port.h"
#include "model/cpu/cpu_forward.h"
#include "model/cpu/cpu_ranks.h"
#include "model/parallel/inproc_communicator.h"
#include "model/parallel/shard.h"
#include "model/parallel/socket_communicator.h"
#include "model/parallel/socket_mesh.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::free_port;

namespace {

// fn(rank, mesh) on `world` threads joined through a fresh rendezvous; returns each rank's error.
std::vector<std::string> on_mesh(int world, const std::function<void(int, Mesh&)>& fn, double timeout = 20) {
  const int port = free_port();
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> t;
  for (int r = 0; r < world; ++r)
    t.emplace_back([&, r] {
      try {
        Mesh m = connect_mesh(r, world, "127.0.0.1", port, timeout);
        fn(r, m);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& th : t) th.join();
  return errors;
}

float value(int r, int64_t i) { return 1.0f / static_cast<float>(3 + r * 7 + i % 13) + static_cast<float>(i % 5); }

TEST(SocketMesh, SumsInRankOrderLikeTheInProcessGroupAndGathers) {
  const int W = 4;
  const int64_t n = 100003;
  // The in-process group's result, the reference bits.
  std::vector<std::vector<float>> ref(W, std::vector<float>(static_cast<std::size_t>(n)));
  {
    InProcessGroup g(W);
    std::vector<std::thread> t;
    for (int r = 0; r < W; ++r)
      t.emplace_back([&, r] {
        for (int64_t i = 0; i < n; ++i) ref[r][static_cast<std::size_t>(i)] = value(r, i);
        g.member(r).all_reduce_sum(ref[r].data(), n);
      });
    for (auto& th : t) th.join();
  }
  std::vector<std::vector<float>> got(W), gathered(W), tp(W);
  const auto errors = on_mesh(W, [&](int r, Mesh& m) {
    SocketCommunicator world(m, {0, 1, 2, 3});
    SocketCommunicator pair(m, r < 2 ? std::vector<int>{0, 1} : std::vector<int>{2, 3});
    EXPECT_EQ(world.rank(), r);
    EXPECT_EQ(pair.size(), 2);
    got[r].resize(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) got[r][static_cast<std::size_t>(i)] = value(r, i);
    world.all_reduce_sum(got[r].data(), n);
    // A group inside the world, then the world again: the links keep each pair's order.
    tp[r] = {static_cast<float>(r), 0.5f};
    pair.all_reduce_sum(tp[r].data(), 2);
    const std::vector<int64_t> counts{1, 3, 0, 2};
    std::vector<float> mine(static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]), static_cast<float>(10 * r));
    gathered[r].resize(6);
    world.all_gather(mine.data(), counts, gathered[r].data());
    world.barrier();
  });
  for (const auto& e : errors) EXPECT_EQ(e, "");
  for (int r = 0; r < W; ++r) {
    EXPECT_EQ(0, std::memcmp(got[r].data(), ref[r].data(), static_cast<std::size_t>(n) * 4)) << "rank " << r;
    EXPECT_EQ(gathered[r], (std::vector<float>{0, 10, 10, 10, 30, 30})) << "rank " << r;
    EXPECT_EQ(tp[r], (std::vector<float>{r < 2 ? 1.0f : 5.0f, 1.0f})) << "rank " << r;
  }
}

TEST(SocketMesh, DifferentSizesAndAFailedRankAreErrorsOnEveryRank) {
  auto errors = on_mesh(3, [](int r, Mesh& m) {
    SocketCommunicator world(m, {0, 1, 2});
    std::vector<float> v(8, 1.0f);
    world.all_reduce_sum(v.data(), r == 2 ? 4 : 8);
  });
  for (const auto& e : errors) EXPECT_NE(e.find("different sizes"), std::string::npos) << e;
  // Rank 2 fails after joining: the others' next collective names it.
  errors = on_mesh(3, [](int r, Mesh& m) {
    if (r == 2) {
      m.close_all();
      throw nemotron::Error("rank 2 failed on purpose");
    }
    SocketCommunicator world(m, {0, 1, 2});
    float v = 1.0f;
    world.all_reduce_sum(&v, 1);
  });
  EXPECT_NE(errors[0].find("rank 2"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("closed"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("closed"), std::string::npos) << errors[1];  // rank 0 went down with it
  EXPECT_EQ(errors[2], "rank 2 failed on purpose");
}

TEST(SocketMesh, RendezvousErrors) {
  // A rank that never comes: the others give up at the deadline, naming what they waited for.
  const int port = free_port();
  std::string e0, e1;
  std::thread t0([&] {
    try {
      connect_mesh(0, 3, "127.0.0.1", port, 1.0);
    } catch (const std::exception& e) {
      e0 = e.what();
    }
  });
  std::thread t1([&] {
    try {
      connect_mesh(1, 3, "127.0.0.1", port, 1.0);
    } catch (const std::exception& e) {
      e1 = e.what();
    }
  });
  t0.join();
  t1.join();
  EXPECT_NE(e0.find("timed out"), std::string::npos) << e0;
  EXPECT_FALSE(e1.empty());
  // A rank that thinks the world is another size.
  const int port2 = free_port();
  std::string m0;
  std::thread a([&] {
    try {
      connect_mesh(0, 2, "127.0.0.1", port2, 5.0);
    } catch (const std::exception& e) {
      m0 = e.what();
    }
  });
  std::thread b([&] {
    try {
      connect_mesh(1, 3, "127.0.0.1", port2, 5.0);
    } catch (const std::exception&) {
    }
  });
  a.join();
  b.join();
  EXPECT_NE(m0.find("says it is rank 1 of 3; this run has 2 ranks"), std::string::npos) << m0;
  EXPECT_THROW(connect_mesh(2, 2, "127.0.0.1", port2), nemotron::Error);
  EXPECT_THROW(connect_mesh(0, 2, "127.0.0.1", 70000), nemotron::Error);
  EXPECT_THROW(connect_mesh(1, 2, "no-such-host.invalid", free_port(), 0.5), nemotron::Error);
  // One rank alone needs no network.
  const Mesh one = connect_mesh(0, 1, "127.0.0.1", free_port());
  EXPECT_EQ(one.world, 1);
}

// Each rank's CpuModel over its shard with socket communicators (the world and its TP group)
// runs a fixture prompt: every rank's logits equal, bit for bit, those of the same ranks as
// threads with in-process communicators (both add in rank order).
TEST(SocketMesh, TheShardedForwardOverSocketsEqualsTheInProcessRanks) {
  for (const char* fixture : {"nano-moe", "super-latent-mtp"}) {
    const Model m = Model::load(nemotron::testing::fixture_dir(fixture));
    const nemotron::testing::Expected ex(fixture);
    const auto ids = ex.ids("p0.input_ids");
    const auto T = static_cast<int64_t>(ids.size());
    for (const ParallelConfig& p : {ParallelConfig{2, 1}, ParallelConfig{2, 4}}) {
      // In-process ranks (threads, rank-order sums): rank 0's logits.
      CpuRanks ranks(m, p);
      std::vector<std::vector<float>> ref(static_cast<std::size_t>(p.world()));
      ranks.run([&](int r) {
        auto st = ranks[r].new_state();
        ref[static_cast<std::size_t>(r)] = ranks[r].forward(st, ids.data(), T, true).logits;
      });
      // The same ranks over the socket mesh.
      std::vector<std::vector<float>> got(static_cast<std::size_t>(p.world()));
      const int W = p.world(), TPs = p.tensor_parallel;
      const auto errors = on_mesh(W, [&](int r, Mesh& mesh) {
        std::vector<int> all, tp;
        for (int q = 0; q < W; ++q) all.push_back(q);
        for (int q = r / TPs * TPs; q < (r / TPs + 1) * TPs; ++q) tp.push_back(q);
        SocketCommunicator world(mesh, all), group(mesh, tp);
        const RankShard shard = shard_model(m, p, r);
        RankContext ctx;
        ctx.shard = &shard;
        ctx.world = &world;
        ctx.tp = TPs < W ? &group : &world;
        const CpuModel cpu(m, ctx);
        auto st = cpu.new_state();
        got[static_cast<std::size_t>(r)] = cpu.forward(st, ids.data(), T, true).logits;
      });
      for (const auto& e : errors) EXPECT_EQ(e, "") << fixture << " " << p.describe();
      for (int r = 0; r < W; ++r) {
        ASSERT_EQ(got[static_cast<std::size_t>(r)].size(), ref[0].size()) << fixture << " " << p.describe();
        EXPECT_EQ(0, std::memcmp(got[static_cast<std::size_t>(r)].data(), ref[0].data(), ref[0].size() * 4))
            << fixture << " " << p.describe() << " rank " << r;
      }
    }
  }
}

}  // namespace
