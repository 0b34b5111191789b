// FrontServer's arrival stamp (RequestContext::arrived): set when the loop had the whole request,
// before any worker took it, so a request that waits for a worker carries that wait (the
// server's TTFT and end-to-end latencies count from it).
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "server/http_front.h"

using namespace nemotron::server;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(FrontServer, ARequestWaitingForAWorkerKeepsItsArrival) {
  FrontServer srv;
  FrontOptions o;
  o.workers = 1;  // the second request waits for the first's worker
  o.light_workers = 1;
  srv.set_front_options(o);
  struct Seen {
    Clock::time_point arrived, started;
  };
  std::mutex mu;
  std::vector<Seen> seen;
  srv.Post("/slow", [&](const httplib::Request&, httplib::Response& res) {
    const RequestContext* ctx = current_request();
    ASSERT_NE(ctx, nullptr);
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back({ctx->arrived, Clock::now()});
    }
    std::this_thread::sleep_for(300ms);
    res.set_content("ok", "text/plain");
  });
  const int port = srv.bind_front("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  std::thread loop([&] { srv.serve(); });
  const Clock::time_point sent = Clock::now();
  auto post = [&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    const auto r = c.Post("/slow", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  };
  std::thread a(post), b(post);
  a.join();
  b.join();
  srv.shutdown();
  loop.join();
  ASSERT_EQ(seen.size(), 2u);
  for (const Seen& s : seen) {
    EXPECT_NE(s.arrived, Clock::time_point{});
    EXPECT_GE(s.arrived, sent);
    EXPECT_LE(s.arrived, s.started);
  }
  // Both arrived at once; the second handler started after the first one's 300 ms.
  EXPECT_LT(seen[1].arrived - seen[0].arrived, 200ms);
  EXPECT_GE(seen[1].started - seen[1].arrived, 250ms);
}
