// The memory planner's CUDA terms (model/cuda_memory.h: the counted allocation walk) against
// what a CudaModel really allocates: the constructor's three arenas must equal
// cuda_memory().allocated() to the byte on every fixture and for several option sets, and the
// decode graphs captured for batch sizes 1..max_seqs must stay within the planned graph bound
// (measured as the drop in free device memory while each graph is instantiated). At real
// scale (NEMOTRON_REAL_MODEL), the device's own count of used memory must be the plan.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "fixture_util.h"
#include "model/cuda/cuda_memory.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::fixture_dir;

namespace {

int sm_count() {
  int dev = 0, sms = 0;
  EXPECT_EQ(cudaGetDevice(&dev), cudaSuccess);
  EXPECT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), cudaSuccess);
  return sms;
}

class CudaMemoryPlan : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaMemoryPlan, AllocationsEqualTheEstimateAndGraphsStayWithinTheBound) {
  const Model m = Model::load(fixture_dir(GetParam()));
  struct Case {
    int seqs;
    int64_t step_tokens, kv_tokens;
    bool fp8;
    int spec_seqs;         // roll-back room (cuda_model_state.cpp)
    int64_t prefix_bytes;  // snapshot pool
  };
  for (const Case& c : {Case{1, 16, 100, false, 0, 0}, Case{3, 64, 1000, true, 2, 1 << 20},
                        Case{5, 200, 4096, false, 8, 0}}) {
    CudaModelOptions o;
    o.max_seqs = c.seqs;
    o.max_step_tokens = c.step_tokens;
    o.kv_tokens = c.kv_tokens;
    o.kv_fp8 = c.fp8;
    o.verbose = false;
    o.spec_seqs = c.spec_seqs;
    o.prefix_cache_bytes = c.prefix_bytes;
    const CudaMemory est = cuda_memory(m, o, sm_count());
    CudaModel gpu(m, o);
    std::printf("[ %s seqs=%d rows=%lld kv=%lld ] allocated %lld, estimated %lld (weights %lld state %lld kv %lld "
                "tables %lld activations %lld workspace %lld speculation %lld snapshots %lld)\n",
                GetParam(), c.seqs, static_cast<long long>(c.step_tokens), static_cast<long long>(c.kv_tokens),
                static_cast<long long>(gpu.device_bytes()), static_cast<long long>(est.allocated()),
                static_cast<long long>(est.weights), static_cast<long long>(est.state), static_cast<long long>(est.kv),
                static_cast<long long>(est.tables), static_cast<long long>(est.activations),
                static_cast<long long>(est.attention_workspace), static_cast<long long>(est.speculation),
                static_cast<long long>(est.snapshots));
    EXPECT_EQ(gpu.device_bytes(), est.allocated()) << GetParam();

    // One decode graph per batch size 1..seqs (each sequence first gets a short prompt).
    std::vector<int> slots;
    const std::vector<int32_t> ids(16, 3);
    for (int b = 1; b <= c.seqs; ++b) {
      slots.push_back(gpu.acquire_slot());
      gpu.forward({{slots.back(), ids.data(), 2, false}});
      std::vector<CudaChunk> step;
      for (int s : slots) step.push_back({s, ids.data(), 1, false});
      gpu.forward_greedy(step);
    }
    const int64_t node_bound = c.seqs * (8 + kGraphNodesPerBlock * static_cast<int64_t>(m.weights.blocks.size()));
    std::printf("[ %s ] %d graphs: %lld nodes (bound %lld), %lld bytes at instantiation (bound %lld)\n", GetParam(),
                c.seqs, static_cast<long long>(gpu.graph_nodes()), static_cast<long long>(node_bound),
                static_cast<long long>(gpu.graph_device_bytes()), static_cast<long long>(est.graphs));
    EXPECT_GT(gpu.graph_nodes(), 0);
    EXPECT_LE(gpu.graph_nodes(), node_bound);
    EXPECT_LE(gpu.graph_device_bytes(), est.graphs);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaMemoryPlan,
                         ::testing::Values("nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"));

// A model that does not fit the device is refused before any arena is taken, with the sizes and
// the knobs in the message (bench and the tests build models without the planner's check);
// then a model that fits still builds, so nothing was left allocated.
TEST(CudaMemoryFit, ATooLargeCacheIsRefusedBeforeAllocating) {
  int dev = 0, integrated = 0;
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&integrated, cudaDevAttrIntegrated, dev), cudaSuccess);
  if (integrated) GTEST_SKIP() << "unified memory: the free-memory check is the planner's (MemAvailable), not the model's";
  const Model m = Model::load(fixture_dir("nano-moe"));
  std::size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 16;
  o.verbose = false;
  o.kv_tokens = 1 << 20;  // doubled until the plan asks for more than the whole device
  while (cuda_memory(m, o, sm_count()).allocated() <= static_cast<int64_t>(total_bytes) && o.kv_tokens < (1LL << 40))
    o.kv_tokens *= 2;
  const CudaMemory too_big = cuda_memory(m, o, sm_count());
  ASSERT_GT(too_big.allocated(), static_cast<int64_t>(total_bytes));
  try {
    CudaModel gpu(m, o);
    FAIL() << "a model of " << too_big.allocated() << " bytes was built on a device of " << total_bytes;
  } catch (const nemotron::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("of device memory (weights"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--max-num-seqs"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--batch"), std::string::npos) << msg;
  }
  std::size_t free_after = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_after, &total_bytes), cudaSuccess);
  EXPECT_GE(static_cast<int64_t>(free_after) + (64 << 20), static_cast<int64_t>(free_bytes));
  o.kv_tokens = 1000;
  CudaModel gpu(m, o);
  EXPECT_EQ(gpu.device_bytes(), cuda_memory(m, o, sm_count()).allocated());
}

// Real scale: NEMOTRON_REAL_MODEL names a checkpoint directory (the lead runs a synthetic Nano
// NVFP4 from `nemotron synth`). With 64 slots and the largest KV capacity whose plan fills 90%
// of the free memory, the memory the device reports used by the construction (cudaMemGetInfo
// before and after) is at least the plan and at most the plan + 1% + the CUDA context (what the
// device held right after cudaFree(0) created it: an upper bound, as it includes other
// processes); the old per-tensor allocations took ~35% more than planned on an H100 (2 MiB
// granules). Then a full-size prefill step, a step of 64 prompts and one decode step of 64
// rows (its graph captured) allocate nothing outside the plan but that graph and lazily loaded
// kernel images, both within the planned bound of 64 graphs.
TEST(CudaMemoryReal, DeviceUseIsThePlan) {
  const char* dir = std::getenv("NEMOTRON_REAL_MODEL");
  if (dir == nullptr || *dir == '\0')
    GTEST_SKIP() << "NEMOTRON_REAL_MODEL is not set: point it at a checkpoint directory (e.g. a synthetic Nano "
                    "NVFP4 from `nemotron synth`) to compare the device's used memory with the plan at real scale";
  ASSERT_EQ(cudaFree(nullptr), cudaSuccess);  // creates the context
  std::size_t free0 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  const int64_t context = static_cast<int64_t>(total - free0);
  const Model m = Model::load(dir);
  const int sms = sm_count();
  CudaModelOptions o;
  o.max_seqs = 64;
  o.max_step_tokens = 2048;
  o.verbose = true;
  // Largest kv_tokens (multiple of 16) whose arenas and graph bound fit 90% of the free memory.
  const auto target = static_cast<int64_t>(static_cast<double>(free0) * 0.9);
  auto plan_total = [&](int64_t kv) {
    o.kv_tokens = kv;
    return cuda_memory(m, o, sms).device_total();
  };
  ASSERT_LE(plan_total(16), target) << dir << " does not fit the device with 64 slots";
  int64_t lo = 1, hi = int64_t{1} << 26;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (plan_total(mid * 16) <= target) lo = mid;
    else hi = mid - 1;
  }
  o.kv_tokens = lo * 16;
  const CudaMemory plan = cuda_memory(m, o, sms);
  auto gib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); };
  std::printf("[ %s ] context %.3f GiB, free %.3f GiB; plan for 64 slots, kv_tokens %lld: %.3f GiB (weights %.3f, "
              "cache %.3f, step %.3f arenas), graphs bound %.3f GiB\n",
              dir, gib(context), gib(static_cast<int64_t>(free0)), static_cast<long long>(o.kv_tokens),
              gib(plan.allocated()), gib(plan.arena(cuda_detail::ArenaKind::Weights)),
              gib(plan.arena(cuda_detail::ArenaKind::Cache)), gib(plan.arena(cuda_detail::ArenaKind::Step)),
              gib(plan.graphs));

  std::size_t before = 0, after = 0, stepped = 0;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // stream-ordered pools of earlier tests trimmed
  ASSERT_EQ(cudaMemGetInfo(&before, &total), cudaSuccess);
  CudaModel gpu(m, o);
  ASSERT_EQ(cudaMemGetInfo(&after, &total), cudaSuccess);
  const int64_t used = static_cast<int64_t>(before) - static_cast<int64_t>(after);
  const auto bound = static_cast<int64_t>(static_cast<double>(plan.allocated()) * 1.01) + context;
  std::printf("[ %s ] construction used %.3f GiB: plan %.3f GiB (%+.3f%%), bound %.3f GiB; upload %.2f s\n", dir,
              gib(used), gib(plan.allocated()),
              100.0 * static_cast<double>(used - plan.allocated()) / static_cast<double>(plan.allocated()), gib(bound),
              gpu.upload_seconds());
  EXPECT_EQ(gpu.device_bytes(), plan.allocated());
  EXPECT_GE(used, plan.allocated());
  EXPECT_LE(used, bound);

  // Steps: a full prefill chunk, 64 short prompts in one step, one decode step of 64 rows.
  const int64_t V = m.config.vocab_size;
  std::vector<int32_t> ids(static_cast<std::size_t>(o.max_step_tokens));
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<int32_t>((i * 7919 + 13) % static_cast<std::size_t>(V));
  std::vector<int> slots;
  for (int i = 0; i < o.max_seqs; ++i) slots.push_back(gpu.acquire_slot());
  gpu.forward({{slots[0], ids.data(), o.max_step_tokens, false}});
  std::vector<CudaChunk> prompts, decode;
  for (int i = 1; i < o.max_seqs; ++i) prompts.push_back({slots[i], ids.data() + i, 8, false});
  gpu.forward(prompts);
  for (int s : slots) decode.push_back({s, ids.data() + s, 1, false});
  const std::vector<int32_t> next = gpu.forward_greedy(decode);
  ASSERT_EQ(next.size(), decode.size());
  for (int32_t t : next) EXPECT_TRUE(t >= 0 && t < V) << t;
  ASSERT_EQ(cudaMemGetInfo(&stepped, &total), cudaSuccess);
  const int64_t step_growth = static_cast<int64_t>(after) - static_cast<int64_t>(stepped);
  std::printf("[ %s ] steps took %.1f MiB more (one graph: %.1f MiB at instantiation; bound of 64 graphs %.1f MiB)\n",
              dir, static_cast<double>(step_growth) / 1048576.0,
              static_cast<double>(gpu.graph_device_bytes()) / 1048576.0,
              static_cast<double>(plan.graphs) / 1048576.0);
  EXPECT_LE(step_growth, plan.graphs);
}

}  // namespace
