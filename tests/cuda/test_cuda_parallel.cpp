// Tensor and expert parallel on the GPU (model/cuda/cuda_ranks.h): the communicators, and the
// sharded forward on every fixture against the CPU reference forced to the GPU's routing
// (cuda_model_test_util.h: Lockstep) and against the unsharded GPU model. On one GPU the ranks
// share the device (the same-device group, eager); with as many GPUs as ranks the same checks
// also run over NCCL.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "cuda_model_test_util.h"
#include "fixture_util.h"
#include "kernels/numeric.h"
#include "model/cuda/cuda_communicator.h"
#include "model/cuda/cuda_memory.h"
#include "model/parallel/shard.h"
#include "model/cuda/cuda_ranks.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

using nemotron::testing::has_moe;
using nemotron::testing::kLogitRelTol;
using nemotron::testing::Lockstep;
using nemotron::testing::rel_err;

int device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

// Every rank of `comms` on its own thread with device `devices[r]`: fn(r).
template <class F>
void on_ranks(const std::vector<int>& devices, F&& fn) {
  std::vector<std::thread> threads;
  std::vector<std::string> errors(devices.size());
  for (std::size_t r = 0; r < devices.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        cudaSetDevice(devices[r]);
        fn(static_cast<int>(r));
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (std::size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

// all_reduce_sum (fp32 and BF16) and all_gather of `comms` on their devices.
void check_collectives(const std::vector<int>& devices, const std::vector<CudaCommunicator*>& comms, bool rank_order) {
  const int W = static_cast<int>(comms.size());
  const int64_t n = 1000003;  // odd: no multiple of any vector width
  auto value = [](int r, int64_t i) { return static_cast<float>(((i * 7919 + r * 104729) % 2001) - 1000) / 64.0f; };
  std::vector<std::vector<float>> got(static_cast<std::size_t>(W)), gathered(static_cast<std::size_t>(W));
  std::vector<std::vector<uint16_t>> got16(static_cast<std::size_t>(W));
  on_ranks(devices, [&](int r) {
    cudaStream_t s = nullptr;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    std::vector<float> h(static_cast<std::size_t>(n));
    std::vector<uint16_t> h16(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      h[i] = value(r, i);
      h16[i] = nemotron::kernels::float_to_bf16(value(r, i));
    }
    float *d = nullptr, *g = nullptr;
    uint16_t* d16 = nullptr;
    cudaMalloc(&d, n * 4);
    cudaMalloc(&g, n * 4 * W);
    cudaMalloc(&d16, n * 2);
    cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d16, h16.data(), n * 2, cudaMemcpyHostToDevice);
    comms[r]->all_reduce_sum(d, n, CommType::F32, s);
    comms[r]->all_reduce_sum(d16, n, CommType::BF16, s);
    comms[r]->all_gather(d, n, CommType::F32, g, s);  // the reduced buffer, W times
    cudaStreamSynchronize(s);
    got[r].resize(static_cast<std::size_t>(n));
    got16[r].resize(static_cast<std::size_t>(n));
    gathered[r].resize(static_cast<std::size_t>(n * W));
    cudaMemcpy(got[r].data(), d, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(got16[r].data(), d16, n * 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(gathered[r].data(), g, n * 4 * W, cudaMemcpyDeviceToHost);
    cudaFree(d);
    cudaFree(g);
    cudaFree(d16);
    cudaStreamDestroy(s);
    if (cudaGetLastError() != cudaSuccess) throw nemotron::Error("CUDA error on rank " + std::to_string(r));
  });
  std::size_t bad = 0, bad16 = 0;
  for (int64_t i = 0; i < n; ++i) {
    float sum = 0.0f, sum16 = 0.0f;
    for (int q = 0; q < W; ++q) {
      sum = q == 0 ? value(q, i) : sum + value(q, i);
      const float v16 = nemotron::kernels::bf16_to_float(nemotron::kernels::float_to_bf16(value(q, i)));
      sum16 = q == 0 ? v16 : sum16 + v16;
    }
    for (int r = 0; r < W; ++r) {
      const float g = got[r][i];
      // The values are multiples of 1/64 below 2^11: every partial sum is exact in fp32, so
      // any order gives these bits; BF16: one rounding of the fp32 sum (rank order), or within
      // a BF16 ulp per addition for NCCL's own order.
      bad += g != sum;
      const float g16 = nemotron::kernels::bf16_to_float(got16[r][i]);
      const float want16 = nemotron::kernels::bf16_to_float(nemotron::kernels::float_to_bf16(sum16));
      bad16 += rank_order ? g16 != want16 : std::fabs(g16 - want16) > W * std::ldexp(std::fabs(want16), -7) + 1e-6f;
      for (int q = 0; q < W; ++q) bad += gathered[r][q * n + i] != got[q][i];
      if (got16[r][i] != got16[0][i]) ++bad16;  // every rank the same bits
    }
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(bad16, 0u);
}

TEST(CudaCommunicator, SameDeviceGroupSumsInRankOrderAndGathers) {
  ASSERT_GE(device_count(), 1) << "no CUDA device";
  for (int W : {1, 2, 3, 4}) {
    SameDeviceGroup g(W, 0);
    std::vector<CudaCommunicator*> comms;
    for (int r = 0; r < W; ++r) comms.push_back(&g.member(r));
    check_collectives(std::vector<int>(static_cast<std::size_t>(W), 0), comms, true);
    EXPECT_FALSE(comms[0]->capturable());
  }
}

TEST(CudaCommunicator, SameDeviceGroupMismatchAndAbortAreErrors) {
  ASSERT_GE(device_count(), 1) << "no CUDA device";
  SameDeviceGroup g(2, 0);
  std::vector<std::string> errors(2);
  std::vector<std::thread> t;
  float* d = nullptr;
  cudaMalloc(&d, 64 * 4);
  for (int r = 0; r < 2; ++r)
    t.emplace_back([&, r] {
      try {
        cudaSetDevice(0);
        g.member(r).all_reduce_sum(d, r == 0 ? 16 : 32, CommType::F32, nullptr);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& th : t) th.join();
  for (const auto& e : errors) EXPECT_NE(e.find("different sizes"), std::string::npos) << e;
  g.member(0).reset();
  // A rank that never arrives: the other is woken by abort().
  std::string woken;
  std::thread waiter([&] {
    try {
      cudaSetDevice(0);
      g.member(1).all_reduce_sum(d, 16, CommType::F32, nullptr);
    } catch (const std::exception& e) {
      woken = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  g.member(0).abort();
  waiter.join();
  EXPECT_NE(woken.find("aborted"), std::string::npos) << woken;
  cudaFree(d);
}

TEST(CudaCommunicator, NcclGroupsOverSeveralGpus) {
  if (!nccl_available()) GTEST_SKIP() << "this build has no NCCL";
  const int n = std::min(device_count(), 4);
  if (n < 2) GTEST_SKIP() << "NCCL needs a GPU per rank: this machine has " << device_count();
  std::vector<int> devices;
  for (int r = 0; r < n; ++r) devices.push_back(r);
  NcclGroups g = make_nccl_groups(devices, n);
  std::vector<CudaCommunicator*> comms;
  for (auto& c : g.world) comms.push_back(c.get());
  check_collectives(devices, comms, false);
  EXPECT_TRUE(comms[0]->capturable());
  EXPECT_THROW(make_nccl_groups(std::vector<int>{0, 0}, 2), nemotron::Error);
}

// The sharded GPU forward of one fixture under `p`, on `devices`: prompt prefill (all logits),
// then teacher-forced decode of the fixture's greedy ids, two sequences in one batch; against
// the CPU forced to rank 0's routing and against the unsharded GPU model (printed).
void check_sharded(const std::string& fixture, const ParallelConfig& p, const std::vector<int>& devices) {
  const Model m = Model::load(fixture_dir(fixture));
  const Expected ex(fixture);
  CudaModelOptions o;
  o.max_seqs = 4;
  o.max_step_tokens = 256;
  o.kv_tokens = 4096;
  o.verbose = false;
  o.spec_seqs = 0;
  try {
    validate_parallel(m.config, p);
  } catch (const nemotron::Error& e) {
    std::printf("[ skip ] %s %s: %s\n", fixture.c_str(), p.describe().c_str(), e.what());
    return;
  }
  if (m.config.count(LayerKind::Mamba) > 0 && p.tensor_parallel > m.config.n_groups) {
    // A gated-norm group split over ranks: refused on CUDA (the CPU backend does it).
    EXPECT_THROW((CudaRanks(m, p, o, devices)), nemotron::Error);
    std::printf("[ refused ] %s %s: n_groups %lld < TP\n", fixture.c_str(), p.describe().c_str(),
                static_cast<long long>(m.config.n_groups));
    return;
  }
  CudaRanks gpu(m, p, o, devices);
  Lockstep ls(m, gpu);
  const int64_t V = m.config.vocab_size;
  const std::string tag = fixture + " " + p.describe();
  for (int i = 0; i < ex.num_prompts(); ++i) {
    const auto ids = ex.ids("p" + std::to_string(i) + ".input_ids");
    const auto greedy = ex.ids("p" + std::to_string(i) + ".greedy_ids");
    const int slot = gpu.acquire_slot();
    auto st = ls.cpu().new_state();
    const auto pre = ls.forward(slot, st, ids.data(), static_cast<int64_t>(ids.size()), true);
    const double e = rel_err(pre.gpu.data(), pre.cpu.data(), pre.cpu.size());
    std::printf("[ %s p%d prefill ] rel_err vs CPU on GPU routes %.4g\n", tag.c_str(), i, e);
    EXPECT_LT(e, kLogitRelTol) << tag << " p" << i << " prefill";
    std::vector<float> got, cpu;
    for (std::size_t k = 0; k + 1 < greedy.size() && k < 6; ++k) {
      auto d = ls.forward(slot, st, &greedy[k], 1, false);
      got.insert(got.end(), d.gpu.begin(), d.gpu.end());
      cpu.insert(cpu.end(), d.cpu.begin(), d.cpu.end());
    }
    const double ed = rel_err(got.data(), cpu.data(), cpu.size());
    std::printf("[ %s p%d decode ] rel_err vs CPU on GPU routes %.4g\n", tag.c_str(), i, ed);
    EXPECT_LT(ed, kLogitRelTol) << tag << " p" << i << " decode";
    gpu.release_slot(slot);
  }
  if (has_moe(m.config)) ls.stats.expect_legitimate(tag.c_str());
  // Greedy sampling on every rank agrees (the ranks' slots stay in step): a batched greedy
  // decode of two prompts, against the unsharded GPU model's ids where no near-tie flipped.
  if (ex.num_prompts() >= 2) {
    std::vector<int> slots;
    std::vector<std::vector<int32_t>> seqs;
    for (int i = 0; i < 2; ++i) {
      slots.push_back(gpu.acquire_slot());
      seqs.push_back(ex.ids("p" + std::to_string(i) + ".input_ids"));
    }
    std::vector<StepChunk> chunks;
    for (int i = 0; i < 2; ++i)
      chunks.push_back({.slot = slots[i], .ids = seqs[i].data(), .T = static_cast<int64_t>(seqs[i].size()),
                        .sample = true});
    auto out = gpu.step(chunks);
    for (int k = 0; k < 4; ++k) {
      std::vector<int32_t> next{out[0].sample.token, out[1].sample.token};
      for (int i = 0; i < 2; ++i) {
        ASSERT_GE(next[i], 0);
        ASSERT_LT(next[i], V);
      }
      chunks = {{.slot = slots[0], .ids = &next[0], .T = 1, .sample = true},
                {.slot = slots[1], .ids = &next[1], .T = 1, .sample = true}};
      out = gpu.step(chunks);
    }
    for (int r = 0; r < gpu.ranks(); ++r) EXPECT_EQ(gpu.rank(r).position(slots[0]), gpu.position(slots[0]));
    for (int s : slots) gpu.release_slot(s);
  }
}

class CudaParallelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaParallelTest, ShardedForwardOnOneDeviceMatchesTheReference) {
  ASSERT_GE(device_count(), 1) << "no CUDA device";
  for (const ParallelConfig& p : {ParallelConfig{2, 1}, ParallelConfig{1, 2}, ParallelConfig{2, 2},
                                 ParallelConfig{4, 1}, ParallelConfig{2, 4}, ParallelConfig{1, 3}}) {
    const auto devices = std::vector<int>(static_cast<std::size_t>(p.world()), 0);
    check_sharded(GetParam(), p, devices);
  }
}

TEST_P(CudaParallelTest, ShardedForwardOverNcclMatchesTheReference) {
  if (!nccl_available()) GTEST_SKIP() << "this build has no NCCL";
  if (device_count() < 2) GTEST_SKIP() << "NCCL needs a GPU per rank: this machine has " << device_count();
  for (const ParallelConfig& p : {ParallelConfig{2, 1}, ParallelConfig{1, 2}}) {
    std::vector<int> devices{0, 1};
    check_sharded(GetParam(), p, devices);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaParallelTest,
                         ::testing::Values("nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4",
                                           "super-mixed-mtp"),
                         nemotron::testing::FixtureParamName());

// The memory plan counts each rank from a counting shard (copied slices stand in for their
// bytes): that count must be what the rank's CudaModel allocates from its real shard.
TEST(CudaParallel, EachRankAllocatesWhatThePlanCounted) {
  ASSERT_GE(device_count(), 1) << "no CUDA device";
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  for (const char* fixture : {"nano-nvfp4", "super-mixed-mtp"}) {
    const Model m = Model::load(fixture_dir(fixture));
    CudaModelOptions o;
    o.max_seqs = 3;
    o.max_step_tokens = 64;
    o.kv_tokens = 512;
    o.verbose = false;
    o.spec_seqs = 2;
    o.spec_rows = 4;
    o.sampled_logits_only = true;
    for (const ParallelConfig& p : {ParallelConfig{2, 1}, ParallelConfig{1, 2}, ParallelConfig{2, 2}}) {
      try {
        validate_parallel(m.config, p);
      } catch (const nemotron::Error&) {
        continue;
      }
      CudaRanks gpu(m, p, o, std::vector<int>(static_cast<std::size_t>(p.world()), 0));
      for (int r = 0; r < p.world(); ++r) {
        const RankShard counted = shard_model(m, p, r, /*count_only=*/true);
        const Model rm = cuda_rank_model(m, counted, /*counting=*/true);
        const int64_t planned = cuda_memory(rm, cuda_rank_options(m, counted, o, 0), sms).allocated();
        EXPECT_EQ(gpu.rank(r).device_bytes(), planned) << fixture << " " << p.describe() << " rank " << r;
      }
    }
  }
}

TEST(CudaParallel, ClearErrors) {
  ASSERT_GE(device_count(), 1) << "no CUDA device";
  const Model m = Model::load(fixture_dir("nano-moe"));
  CudaModelOptions o;
  o.verbose = false;
  EXPECT_THROW((CudaRanks(m, ParallelConfig{2, 1}, o, std::vector<int>{0})), nemotron::Error);  // devices != ranks
  try {
    CudaRanks(m, {3, 1}, o, {0, 0, 0});
    ADD_FAILURE() << "TP 3 over 4 heads";
  } catch (const nemotron::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not divisible by --tensor-parallel-size 3"), std::string::npos) << e.what();
  }
  if (device_count() < 8) {
    try {
      cuda_rank_devices(8, false);
      ADD_FAILURE() << "8 ranks on fewer GPUs";
    } catch (const nemotron::Error& e) {
      EXPECT_NE(std::string(e.what()).find("needs 8 GPUs"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(cuda_rank_devices(3, true), (std::vector<int>{0, 0, 0}));
}

}  // namespace
