// The memory planner's CUDA terms (model/cuda_memory.h) against what a CudaModel really
// allocates: the constructor's device allocations must equal cuda_memory().allocated() to the
// byte (weights as uploaded, state slots, KV pages, block tables, step buffers, attention
// workspace) on every fixture and for several option sets, and the decode graphs captured for
// batch sizes 1..max_seqs must stay within the planned graph bound (measured as the drop in
// free device memory while each graph is instantiated).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdio>

#include "fixture_util.h"
#include "model/cuda/cuda_memory.h"
#include "model/cuda/cuda_model.h"

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
  };
  for (const Case& c : {Case{1, 16, 100, false}, Case{3, 64, 1000, true}, Case{5, 200, 4096, false}}) {
    CudaModelOptions o;
    o.max_seqs = c.seqs;
    o.max_step_tokens = c.step_tokens;
    o.kv_tokens = c.kv_tokens;
    o.kv_fp8 = c.fp8;
    o.verbose = false;
    const CudaMemory est = cuda_memory(m, o, sm_count());
    CudaModel gpu(m, o);
    std::printf("[ %s seqs=%d rows=%lld kv=%lld ] allocated %lld, estimated %lld (weights %lld state %lld kv %lld "
                "tables %lld activations %lld workspace %lld)\n",
                GetParam(), c.seqs, static_cast<long long>(c.step_tokens), static_cast<long long>(c.kv_tokens),
                static_cast<long long>(gpu.device_bytes()), static_cast<long long>(est.allocated()),
                static_cast<long long>(est.weights), static_cast<long long>(est.state), static_cast<long long>(est.kv),
                static_cast<long long>(est.tables), static_cast<long long>(est.activations),
                static_cast<long long>(est.attention_workspace));
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

}  // namespace
