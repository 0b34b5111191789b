// The CPU memory plan under tensor / expert parallelism: each rank's weights (views into the
// mapped checkpoint plus the row-parallel slices it copies), the copies counted in the total,
// and the CUDA plan counting every rank's model.
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
}

// The CUDA plan of a sharded model: every rank's CudaModel over its shard counted (the copied
// slices of a counting shard stand in for their bytes), per rank against a per-rank budget.
TEST(ParallelPlan, TheCudaPlanCountsEveryRanksModel) {
  const Model m = Model::load(fixture_dir("nano-nvfp4"));
  runtime::MemoryPlanRequest req;
  req.device = "cuda";
  req.memory_gib = 1.0;
  req.cuda_sms = 132;  // no device needed
  req.max_num_seqs = 2;
  req.max_model_len = 512;
  const auto whole = runtime::plan_memory(m, req);
  for (const ParallelConfig p : {ParallelConfig{2, 1}, ParallelConfig{1, 2}, ParallelConfig{2, 2}}) {
    req.parallel = p;
    const auto sharded = runtime::plan_memory(m, req);
    const std::string what = p.describe() + "\n" + sharded.describe();
    ASSERT_EQ(sharded.rank_weight_bytes.size(), static_cast<std::size_t>(p.world())) << what;
    // Each rank's weights arena: less than the whole model's, more than an even share.
    EXPECT_LT(sharded.arena_bytes[0], whole.arena_bytes[0]) << what;
    EXPECT_GT(sharded.arena_bytes[0] * p.world(), whole.arena_bytes[0]) << what;
    EXPECT_LE(sharded.total_bytes, sharded.budget_bytes) << what;
    EXPECT_GE(sharded.kv_token_capacity, whole.kv_token_capacity) << what;  // a rank holds fewer KV heads, or as many
    EXPECT_NE(sharded.describe().find("one GPU per rank"), std::string::npos) << what;
    EXPECT_EQ(sharded.backend_options().parallel.world(), p.world());
  }
}

}  // namespace
