// The start-up warm-up of decode steps (runtime/warm_up.h) on the CPU backend: it runs one step
// per batch size, leaves every slot free and fresh, keeps slots inside max_model_len, and an
// engine on the warmed backend still reproduces the reference greedy ids.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "model/backend.h"
#include "model/checkpoint/weights.h"
#include "runtime/engine.h"
#include "runtime/warm_up.h"

namespace nemotron::runtime {
namespace {

using testing::Expected;
using testing::fixture_dir;

std::unique_ptr<model::Backend> cpu_backend(const model::Model& m, int slots) {
  model::BackendOptions b;
  b.device = "cpu";
  b.max_seqs = slots;
  b.max_step_tokens = 64;
  return model::make_backend(m, b);
}

TEST(WarmUp, OneStepPerBatchSizeThenEveryGreedyIdAsBefore) {
  const model::Model m = model::Model::load(fixture_dir("nano-moe"));
  auto backend = cpu_backend(m, 4);
  const WarmUpResult w = warm_up_decode_steps(*backend, 8, 64, 512);  // bounded by the 4 slots
  EXPECT_EQ(w.batch_sizes, 4);
  EXPECT_EQ(w.max_position, 3);  // 10 slot-steps over 4 slots from a rotating start: 3, 3, 2, 2
  EXPECT_GE(w.seconds, 0.0);
  std::vector<int> slots;
  for (int i = 0; i < 4; ++i) {
    slots.push_back(backend->acquire_slot());
    EXPECT_EQ(backend->position(slots.back()), 0);
  }
  for (int s : slots) backend->release_slot(s);

  const Expected ex("nano-moe");
  EngineOptions o;
  o.limits = {4, 64, 4096};
  o.max_model_len = 512;
  Engine engine(std::move(backend), o);
  for (int i = 0; i < ex.num_prompts(); ++i) {
    GenerationRequest r;
    r.prompt = ex.ids("p" + std::to_string(i) + ".input_ids");
    r.max_tokens = 6;
    r.sampling.temperature = 0;
    std::vector<int32_t> got;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    engine.submit(r, [&](const TokenEvent& ev) {
      std::lock_guard<std::mutex> lock(mu);
      if (ev.token >= 0) got.push_back(ev.token);
      if (ev.finished) {
        done = true;
        cv.notify_all();
      }
    });
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; }));
    const auto want = ex.ids("p" + std::to_string(i) + ".greedy_ids");
    EXPECT_EQ(got, std::vector<int32_t>(want.begin(), want.begin() + 6)) << "prompt " << i;
  }
}

// A max_model_len below the steps a slot takes: the slot is exchanged for a fresh one in time;
// a step budget below the slots bounds the sizes.
TEST(WarmUp, SlotsStayInsideMaxModelLen) {
  const model::Model m = model::Model::load(fixture_dir("nano-moe"));
  auto backend = cpu_backend(m, 6);
  const WarmUpResult w = warm_up_decode_steps(*backend, 6, 64, 3);
  EXPECT_EQ(w.batch_sizes, 6);
  EXPECT_EQ(w.max_position, 2);  // 21 slot-steps over 6 slots: every slot renewed at 2 positions
  EXPECT_EQ(warm_up_decode_steps(*backend, 6, 64, 1).batch_sizes, 0);  // no room for a step
  EXPECT_EQ(warm_up_decode_steps(*backend, 0, 64, 512).batch_sizes, 0);
  EXPECT_EQ(warm_up_decode_steps(*backend, 6, 4, 512).batch_sizes, 4);  // no step past the step budget
}

}  // namespace
}  // namespace nemotron::runtime
