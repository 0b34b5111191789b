// The CPU memory plan under tensor / expert parallelism: each rank's weights (views into the
// mapped checkpoint plus the row-parallel slices it copies), the copies counted in the total,
// and the CUDA plan counting every rank's model.
#include <gtest/gtest.h>

#include "fixture_util.h"
#include "model/cuda/cuda_memory.h"
#include "model/cuda/cuda_ranks.h"
#include "model/parallel/shard.h"
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
  for (const ParallelConfig& p : {ParallelConfig{2, 1}, ParallelConfig{1, 2}, ParallelConfig{2, 2}}) {
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

// The plan counts a rank from a counting shard (nothing copied: its row-parallel slices stand
// in for their bytes); the rank itself uploads the real shard. Both walks must take the same
// bytes, on every fixture and split (CPU only: the counting walk needs no device).
TEST(ParallelPlan, ACountingShardCountsWhatTheRealShardUploads) {
  for (const char* fixture : {"nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"}) {
    const Model m = Model::load(fixture_dir(fixture));
    CudaModelOptions o;
    o.max_seqs = 3;
    o.max_step_tokens = 64;
    o.kv_tokens = 512;
    o.spec_seqs = 2;
    o.spec_rows = 4;
    o.sampled_logits_only = true;
    for (const ParallelConfig& p : {ParallelConfig{2, 1}, ParallelConfig{1, 2}, ParallelConfig{2, 2},
                                   ParallelConfig{1, 3}, ParallelConfig{2, 4}}) {
      try {
        validate_parallel(m.config, p);
      } catch (const Error&) {
        continue;
      }
      int64_t copied = 0;
      for (int r = 0; r < p.world(); ++r) {
        const RankShard real = shard_model(m, p, r), counted = shard_model(m, p, r, /*count_only=*/true);
        copied += real.copied_bytes;
        const CudaMemory a = cuda_memory(cuda_rank_model(m, real), cuda_rank_options(m, real, o, 0), 132);
        const CudaMemory b = cuda_memory(cuda_rank_model(m, counted, /*counting=*/true),
                                         cuda_rank_options(m, counted, o, 0), 132);
        const std::string what = std::string(fixture) + " " + p.describe() + " rank " + std::to_string(r);
        EXPECT_EQ(a.allocated(), b.allocated()) << what;
        EXPECT_EQ(a.weights, b.weights) << what;
        EXPECT_EQ(a.table.takes, b.table.takes) << what;
        // A rank holds less than the whole model's weights (EP alone on a model without routed
        // experts replicates it all).
        const bool splits = p.tensor_parallel > 1 || m.config.n_routed_experts > 0;
        if (splits) {
          EXPECT_LT(a.weights, cuda_memory(m, o, 132).weights) << what;
        } else {
          EXPECT_EQ(a.weights, cuda_memory(m, o, 132).weights) << what;
        }
      }
      if (p.tensor_parallel > 1) {
        EXPECT_GT(copied, 0) << fixture << " " << p.describe();  // row-parallel slices
      }
    }
  }
}

}  // namespace
