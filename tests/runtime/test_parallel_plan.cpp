// The CPU memory plan under tensor / expert parallelism: each rank's weights (views into the
// mapped checkpoint plus the row-parallel slices it copies), the copies counted in the total,
// and the CUDA backend refusing a sharded plan for now.
#include <gtest/gtest.h>

#include "fixture_util.h"
#include "runtime/memory_plan.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using nemotron::testing::fixture_dir;

namespace {

TEST(ParallelPlan, TheCpuPlanShowsEachRanksWeights) {
  const Model m = Model::load(fixture_dir("nano-nvfp4"));
  runtime::MemoryPlanRequest req;
  req.device = "cpu";
  req.memory_gib = 1.0;
  req.max_num_seqs = 2;
  const auto whole = runtime::plan_memory(m, req);
  req.parallel = {2, 1};
  const auto tp2 = runtime::plan_memory(m, req);
  ASSERT_EQ(tp2.rank_weight_bytes.size(), 2u);
  for (int64_t b : tp2.rank_weight_bytes) {
    EXPECT_GT(b, 0);
    EXPECT_LT(b, whole.weight_bytes * 3 / 4);  // each rank holds about half (norms, router replicated)
  }
  EXPECT_GT(tp2.copied_weight_bytes, 0);  // row-parallel slices
  EXPECT_EQ(tp2.weight_bytes, whole.weight_bytes + tp2.copied_weight_bytes);
  EXPECT_NE(tp2.describe().find("weights per rank"), std::string::npos) << tp2.describe();
  EXPECT_EQ(tp2.backend_options().parallel.tensor_parallel, 2);
  req.parallel = {1, 4};
  const auto ep4 = runtime::plan_memory(m, req);
  EXPECT_EQ(ep4.rank_weight_bytes.size(), 4u);
  req.device = "cuda";
  req.parallel = {2, 1};
  try {
    runtime::plan_memory(m, req);
    FAIL() << "cuda TP 2 planned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not yet supported on the cuda backend"), std::string::npos) << e.what();
  }
}

}  // namespace
