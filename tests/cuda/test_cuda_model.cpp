// The whole model on the GPU against the transformers fixtures, the CPU reference and itself:
// prefill logits, teacher-forced decode logits, chunked prefill = full prefill, decode =
// prefill, a mixed batch = each sequence alone. BF16 activations: compared with relative
// error bounds and top-1 agreement where the reference has a clear margin. MoE fixtures are
// compared routing-aware (cuda_model_test_util.h: Lockstep): against the CPU reference
// forced to the GPU's expert choices once those are checked to be near-ties; the direct
// error against the fixture is printed. Fixtures without MoE blocks must also match the
// fixture directly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cuda_model_test_util.h"
#include "fixture_util.h"
#include "model/cpu/cpu_forward.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

using nemotron::testing::Agreement;
using nemotron::testing::has_moe;
using nemotron::testing::kLogitRelTol;
using nemotron::testing::kSelfRelTol;
using nemotron::testing::Lockstep;
using nemotron::testing::rel_err;
using nemotron::testing::RouteStats;
using nemotron::testing::top1;

class CudaModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
    model_ = std::make_unique<Model>(Model::load(fixture_dir(GetParam())));
    CudaModelOptions o;
    o.max_seqs = 4;
    o.max_step_tokens = 256;
    o.kv_tokens = 4096;
    o.verbose = false;
    gpu_ = std::make_unique<CudaModel>(*model_, o);
    ex_ = std::make_unique<Expected>(GetParam());
  }
  int64_t V() const { return model_->config.vocab_size; }
  std::vector<int32_t> prompt(int i) const { return ex_->ids("p" + std::to_string(i) + ".input_ids"); }

  std::vector<float> prefill(const std::vector<int32_t>& ids, int64_t chunk) {
    const int slot = gpu_->acquire_slot();
    std::vector<float> all;
    const int64_t T = static_cast<int64_t>(ids.size());
    for (int64_t s = 0; s < T; s += chunk) {
      const int64_t n = std::min(chunk, T - s);
      auto r = gpu_->forward({{slot, ids.data() + s, n, true}});
      all.insert(all.end(), r[0].begin(), r[0].end());
    }
    gpu_->release_slot(slot);
    return all;
  }

  // A sequence's logits (every row of `ids`) from a batched run and alone: equal within
  // kSelfRelTol where both took the same experts, else each close to the CPU reference forced
  // to its own routes (a batch changes the step's row count, so the linears' path, so a
  // router near-tie may break the other way).
  void expect_batch_equals_alone(nemotron::testing::Lockstep& ls, int i, const std::vector<int32_t>& ids,
                                 const std::vector<float>& batch, const std::vector<float>& alone,
                                 const std::vector<std::vector<int32_t>>& batch_routes,
                                 const std::vector<std::vector<int32_t>>& alone_routes);

  std::unique_ptr<Model> model_;
  std::unique_ptr<CudaModel> gpu_;
  std::unique_ptr<Expected> ex_;
};

// GPU logits against the CPU reference forced to the GPU's routing (always), and against
// the fixture (asserted without MoE blocks, printed with them).
void expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& ref, int64_t V) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  const double e = rel_err(got.data(), ref.data(), ref.size());
  const auto a = top1(got, ref, V, 0.1f);
  std::printf("[ %s ] rel_err=%.4g top1 %d/%d\n", what, e, a.agree, a.compared);
  EXPECT_LE(e, kLogitRelTol) << what;
  EXPECT_GE(a.agree, a.compared * 95 / 100) << what;
}

void report_fixture(const char* what, bool assert_close, const std::vector<float>& got, const std::vector<float>& ref,
                    int64_t V) {
  if (assert_close) return expect_close(what, got, ref, V);
  ASSERT_EQ(got.size(), ref.size()) << what;
  const auto a = top1(got, ref, V, 0.1f);
  std::printf("[ %s ] (unforced, MoE) rel_err=%.4g top1 %d/%d\n", what, rel_err(got.data(), ref.data(), ref.size()),
              a.agree, a.compared);
}

void CudaModelTest::expect_batch_equals_alone(Lockstep& ls, int i, const std::vector<int32_t>& ids,
                                              const std::vector<float>& batch, const std::vector<float>& alone,
                                              const std::vector<std::vector<int32_t>>& batch_routes,
                                              const std::vector<std::vector<int32_t>>& alone_routes) {
  ASSERT_EQ(batch.size(), alone.size()) << "sequence " << i;
  const double e = rel_err(batch.data(), alone.data(), alone.size());
  const bool same_routes = alone_routes == batch_routes;
  std::printf("[ %s ] batch seq %d vs alone rel=%.4g, routes %s\n", GetParam().c_str(), i, e,
              same_routes ? "alike" : "differ");
  if (same_routes) {
    EXPECT_LE(e, kSelfRelTol) << "sequence " << i;
    return;
  }
  const std::string tag = GetParam() + " seq " + std::to_string(i);
  const auto T = static_cast<int64_t>(ids.size());
  auto st = ls.cpu().new_state();
  expect_close((tag + " batch vs CPU on its routes").c_str(), batch, ls.cpu_on(batch_routes, st, ids.data(), T, true).logits,
               V());
  auto st2 = ls.cpu().new_state();
  expect_close((tag + " alone vs CPU on its routes").c_str(), alone, ls.cpu_on(alone_routes, st2, ids.data(), T, true).logits,
               V());
}

TEST_P(CudaModelTest, PrefillLogitsMatchReference) {
  const bool direct = !has_moe(model_->config);
  Lockstep ls(*model_, *gpu_);
  for (int i = 0; i < ex_->num_prompts(); ++i) {
    const auto ids = prompt(i);
    const std::string tag = GetParam() + " p" + std::to_string(i) + " prefill";
    const int slot = gpu_->acquire_slot();
    auto st = ls.cpu().new_state();
    const auto o = ls.forward(slot, st, ids.data(), static_cast<int64_t>(ids.size()), true);
    gpu_->release_slot(slot);
    report_fixture((tag + " vs fixture").c_str(), direct, o.gpu, ex_->f32("p" + std::to_string(i) + ".logits"), V());
    expect_close((tag + " vs CPU on GPU routes").c_str(), o.gpu, o.cpu, V());
  }
  ls.stats.print((GetParam() + " prefill").c_str());
  ls.stats.expect_legitimate("prefill");
}

TEST_P(CudaModelTest, TeacherForcedDecodeMatchesReference) {
  const bool direct = !has_moe(model_->config);
  Lockstep ls(*model_, *gpu_);
  for (int i = 0; i < ex_->num_prompts(); ++i) {
    const std::string p = "p" + std::to_string(i) + ".";
    const std::string tag = GetParam() + " p" + std::to_string(i) + " decode";
    const auto ids = prompt(i);
    const auto greedy = ex_->ids(p + "greedy_ids");
    const int slot = gpu_->acquire_slot();
    auto st = ls.cpu().new_state();
    ls.forward(slot, st, ids.data(), static_cast<int64_t>(ids.size()), false);
    std::vector<float> got, cpu;
    for (std::size_t k = 0; k + 1 < greedy.size(); ++k) {
      auto o = ls.forward(slot, st, &greedy[k], 1, false);
      got.insert(got.end(), o.gpu.begin(), o.gpu.end());
      cpu.insert(cpu.end(), o.cpu.begin(), o.cpu.end());
    }
    gpu_->release_slot(slot);
    report_fixture((tag + " vs fixture").c_str(), direct, got, ex_->f32(p + "decode_logits"), V());
    expect_close((tag + " vs CPU on GPU routes").c_str(), got, cpu, V());
  }
  ls.stats.print((GetParam() + " prefill+decode").c_str());
  ls.stats.expect_legitimate("decode");
}

// Chunks of 1 and 3 rows take the GEMV path, the full prompt the GEMM path: when both route
// every row alike they must agree to kSelfRelTol; where the paths broke a near-tie
// differently, each must match the CPU forced to its own routes instead.
TEST_P(CudaModelTest, ChunkedPrefillEqualsFullPrefill) {
  const auto ids = prompt(0);
  const int64_t T = static_cast<int64_t>(ids.size());
  Lockstep ls(*model_, *gpu_);
  auto run = [&](int64_t chunk, std::vector<float>& cpu, std::vector<std::vector<int32_t>>& routes) {
    const int slot = gpu_->acquire_slot();
    auto st = ls.cpu().new_state();
    std::vector<float> got;
    for (int64_t s = 0; s < T; s += chunk) {
      auto o = ls.forward(slot, st, ids.data() + s, std::min(chunk, T - s), true);
      got.insert(got.end(), o.gpu.begin(), o.gpu.end());
      cpu.insert(cpu.end(), o.cpu.begin(), o.cpu.end());
      routes.resize(o.routes.size());
      for (std::size_t b = 0; b < o.routes.size(); ++b)
        routes[b].insert(routes[b].end(), o.routes[b].begin(), o.routes[b].end());
    }
    gpu_->release_slot(slot);
    return got;
  };
  std::vector<float> full_cpu;
  std::vector<std::vector<int32_t>> full_routes;
  const auto full = run(T, full_cpu, full_routes);
  for (int64_t chunk : {1, 3, 16}) {
    std::vector<float> cpu;
    std::vector<std::vector<int32_t>> routes;
    const auto got = run(chunk, cpu, routes);
    int64_t differ = 0;
    const int64_t k = std::max<int64_t>(1, model_->config.num_experts_per_tok);
    for (std::size_t b = 0; b < routes.size(); ++b)
      for (std::size_t i = 0; i < routes[b].size(); i += static_cast<std::size_t>(k)) {
        std::vector<int32_t> x(routes[b].begin() + i, routes[b].begin() + i + k);
        std::vector<int32_t> y(full_routes[b].begin() + i, full_routes[b].begin() + i + k);
        std::sort(x.begin(), x.end());
        std::sort(y.begin(), y.end());
        differ += x != y;
      }
    const double e = rel_err(got.data(), full.data(), full.size());
    std::printf("[ %s ] chunk %lld vs full rel=%.4g, routes differing %lld\n", GetParam().c_str(),
                static_cast<long long>(chunk), e, static_cast<long long>(differ));
    if (differ == 0) {
      EXPECT_LE(e, kSelfRelTol) << "chunk " << chunk;
    } else {
      const std::string tag = GetParam() + " chunk " + std::to_string(chunk);
      expect_close((tag + " vs CPU on its routes").c_str(), got, cpu, V());
      expect_close((tag + " full vs CPU on its routes").c_str(), full, full_cpu, V());
    }
  }
  ls.stats.print((GetParam() + " chunked prefill").c_str());
  ls.stats.expect_legitimate("chunked prefill");
}

// Appends rows [row0, row0 + rows) of each block's recorded routing (CudaModel::routing) to
// `into` (per block, [rows, k]); blocks that did not run add nothing.
void gather_routes(const CudaModel& gpu, int64_t row0, int64_t rows, int64_t k,
                   std::vector<std::vector<int32_t>>& into) {
  const auto got = gpu.routing();
  if (into.size() < got.size()) into.resize(got.size());
  for (std::size_t b = 0; b < got.size(); ++b) {
    if (got[b].empty()) continue;
    into[b].insert(into[b].end(), got[b].begin() + row0 * k, got[b].begin() + (row0 + rows) * k);
  }
}

// Each sequence of a mixed step equals itself alone in the same chunks: sequence 0 is
// prefilled first (all but its last token), then decodes its last token while the others
// prefill whole in the same step. (Chunking itself may change results at rounding level:
// chunks of 32 rows or more take the tensor-core attention, shorter ones the CUDA-core
// kernel. Batch-mates change the row count of the step and so the GEMV/GEMM path of the
// linears: where that broke a router near-tie differently, batch and alone must each match
// the CPU forced to their own routes instead, as in ChunkedPrefillEqualsFullPrefill.)
TEST_P(CudaModelTest, MixedBatchEqualsEachAlone) {
  const int n = std::min(ex_->num_prompts(), 3);
  const int64_t k = std::max<int64_t>(1, model_->config.num_experts_per_tok);
  Lockstep ls(*model_, *gpu_);
  std::vector<std::vector<int32_t>> ps;
  std::vector<std::vector<float>> alone;
  std::vector<std::vector<std::vector<int32_t>>> alone_routes(n), batch_routes(n);
  for (int i = 0; i < n; ++i) {
    ps.push_back(prompt(i));
    const auto& ids = ps.back();
    const auto T = static_cast<int64_t>(ids.size());
    const int slot = gpu_->acquire_slot();
    std::vector<float> all;
    for (int64_t s = 0; s < T;) {
      const int64_t len = (i == 0 && s == 0) ? T - 1 : T - s;
      auto r = gpu_->forward({{slot, ids.data() + s, len, true}});
      all.insert(all.end(), r[0].begin(), r[0].end());
      gather_routes(*gpu_, 0, len, k, alone_routes[i]);
      s += len;
    }
    gpu_->release_slot(slot);
    alone.push_back(std::move(all));
  }
  std::vector<int> slots;
  for (int i = 0; i < n; ++i) slots.push_back(gpu_->acquire_slot());
  const int64_t T0 = static_cast<int64_t>(ps[0].size());
  auto first = gpu_->forward({{slots[0], ps[0].data(), T0 - 1, true}});
  gather_routes(*gpu_, 0, T0 - 1, k, batch_routes[0]);
  std::vector<CudaChunk> step{{slots[0], &ps[0][T0 - 1], 1, true}};
  for (int i = 1; i < n; ++i) step.push_back({slots[i], ps[i].data(), static_cast<int64_t>(ps[i].size()), true});
  auto mixed = gpu_->forward(step);
  int64_t row0 = 0;
  for (int i = 0; i < n; ++i) {
    gather_routes(*gpu_, row0, step[static_cast<std::size_t>(i)].T, k, batch_routes[i]);
    row0 += step[static_cast<std::size_t>(i)].T;
  }
  first[0].insert(first[0].end(), mixed[0].begin(), mixed[0].end());
  mixed[0] = first[0];
  for (int i = 0; i < n; ++i)
    expect_batch_equals_alone(ls, i, ps[i], mixed[i], alone[i], batch_routes[i], alone_routes[i]);
  for (int s : slots) gpu_->release_slot(s);
  ls.stats.print((GetParam() + " mixed batch").c_str());
  ls.stats.expect_legitimate("mixed batch");
}

// A server's mixed step: sequences 0 and 1 decode (their last prompt token, single-row chunks
// at the front of the step: the fused Mamba decode kernel), sequence 2 prefills its whole
// prompt beside them, and sequence 3, a one-token prompt after it, is a single-row chunk that
// is not at the front (the varlen conv and scan). Each equals the same sequence alone.
TEST_P(CudaModelTest, DecodeRowsBesideAPromptEqualEachAlone) {
  const int np = ex_->num_prompts();
  const int64_t k = std::max<int64_t>(1, model_->config.num_experts_per_tok);
  Lockstep ls(*model_, *gpu_);
  // The decoding pair: the first two prompts of at least two tokens (one twice where only one is).
  std::vector<int> longer;
  for (int i = 0; i < np; ++i)
    if (prompt(i).size() >= 2) longer.push_back(i);
  ASSERT_FALSE(longer.empty()) << "no fixture prompt of two tokens or more";
  const int d0 = longer[0], d1 = longer.size() > 1 ? longer[1] : longer[0];
  std::vector<std::vector<int32_t>> ps = {prompt(d0), prompt(d1), prompt(2 % np), {prompt(0)[0]}};
  const std::vector<int64_t> prefix = {static_cast<int64_t>(ps[0].size()) - 1,
                                       static_cast<int64_t>(ps[1].size()) - 1, 0, 0};
  const int n = static_cast<int>(ps.size());
  std::vector<std::vector<float>> alone(n), batch(n);
  std::vector<std::vector<std::vector<int32_t>>> alone_routes(n), batch_routes(n);
  // Each alone: its prefix (if any) in one call, then the rest in another.
  for (int i = 0; i < n; ++i) {
    const int slot = gpu_->acquire_slot();
    const auto T = static_cast<int64_t>(ps[i].size());
    for (const auto& [s, len] : {std::pair{int64_t{0}, prefix[i]}, std::pair{prefix[i], T - prefix[i]}}) {
      if (len == 0) continue;
      auto r = gpu_->forward({{slot, ps[i].data() + s, len, true}});
      alone[i].insert(alone[i].end(), r[0].begin(), r[0].end());
      gather_routes(*gpu_, 0, len, k, alone_routes[i]);
    }
    gpu_->release_slot(slot);
  }
  // Batched: the same prefixes, then one step of every sequence's rest.
  std::vector<int> slots;
  std::vector<CudaChunk> step;
  for (int i = 0; i < n; ++i) {
    slots.push_back(gpu_->acquire_slot());
    if (prefix[i] > 0) {
      auto r = gpu_->forward({{slots[i], ps[i].data(), prefix[i], true}});
      batch[i] = r[0];
      gather_routes(*gpu_, 0, prefix[i], k, batch_routes[i]);
    }
    step.push_back({slots[i], ps[i].data() + prefix[i], static_cast<int64_t>(ps[i].size()) - prefix[i], true});
  }
  auto mixed = gpu_->forward(step);
  int64_t row0 = 0;
  for (int i = 0; i < n; ++i) {
    gather_routes(*gpu_, row0, step[static_cast<std::size_t>(i)].T, k, batch_routes[i]);
    row0 += step[static_cast<std::size_t>(i)].T;
    batch[i].insert(batch[i].end(), mixed[i].begin(), mixed[i].end());
  }
  for (int i = 0; i < n; ++i)
    expect_batch_equals_alone(ls, i, ps[i], batch[i], alone[i], batch_routes[i], alone_routes[i]);
  for (int s : slots) gpu_->release_slot(s);
  ls.stats.print((GetParam() + " decode rows beside a prompt").c_str());
  ls.stats.expect_legitimate("decode rows beside a prompt");
}

TEST_P(CudaModelTest, MatchesCpuReferenceOnAFreshPrompt) {
  const std::vector<int32_t> ids{3, 17, 99, 250, 4, 4, 71, 300, 123, 5, 6, 7, 8, 200, 201};
  Lockstep ls(*model_, *gpu_);
  const int slot = gpu_->acquire_slot();
  auto st = ls.cpu().new_state();
  std::vector<float> got, cpu;
  for (std::size_t s = 0; s < ids.size(); s += 4) {
    const int64_t n = std::min<int64_t>(4, static_cast<int64_t>(ids.size() - s));
    auto o = ls.forward(slot, st, ids.data() + s, n, true);
    got.insert(got.end(), o.gpu.begin(), o.gpu.end());
    cpu.insert(cpu.end(), o.cpu.begin(), o.cpu.end());
  }
  gpu_->release_slot(slot);
  expect_close((GetParam() + " fresh prompt, chunks of 4, vs CPU on GPU routes").c_str(), got, cpu, V());
  ls.stats.print((GetParam() + " fresh prompt").c_str());
  ls.stats.expect_legitimate("fresh prompt");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaModelTest,
                         ::testing::Values("nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4",
                                           "super-mixed-mtp"),
                         nemotron::testing::FixtureParamName());

// Flips against the CPU's own routing with the router reading the BF16 normed rows (the
// default) and the fp32 ones (router_fp32); both must be near-ties only, and both runs must
// match the CPU forced to their routes.
TEST(CudaModelRouting, RouterInputPrecisionFlips) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  for (const std::string name : {"nano-moe", "super-latent-mtp", "nano-nvfp4", "super-mixed-mtp"}) {
    const Model model = Model::load(fixture_dir(name));
    const Expected ex(name);
    ASSERT_TRUE(has_moe(model.config)) << name;
    for (bool f32 : {false, true}) {
      CudaModelOptions o;
      o.max_seqs = 1;
      o.max_step_tokens = 256;
      o.kv_tokens = 1024;
      o.verbose = false;
      o.router_fp32 = f32;
      CudaModel gpu(model, o);
      Lockstep ls(model, gpu);
      for (int i = 0; i < ex.num_prompts(); ++i) {
        const auto ids = ex.ids("p" + std::to_string(i) + ".input_ids");
        const int slot = gpu.acquire_slot();
        auto st = ls.cpu().new_state();
        const auto r = ls.forward(slot, st, ids.data(), static_cast<int64_t>(ids.size()), true);
        gpu.release_slot(slot);
        expect_close((name + (f32 ? " router fp32" : " router bf16") + " p" + std::to_string(i)).c_str(), r.gpu, r.cpu,
                     model.config.vocab_size);
      }
      ls.stats.print((name + (f32 ? " router input fp32" : " router input bf16")).c_str());
      ls.stats.expect_legitimate(f32 ? "router fp32" : "router bf16");
    }
  }
}

TEST(CudaModel, InvalidInputsAreErrors) {
  const Model m = Model::load(fixture_dir("nano-moe"));
  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 8;
  o.kv_tokens = 32;
  o.verbose = false;
  CudaModel gpu(m, o);
  const int a = gpu.acquire_slot();
  gpu.acquire_slot();
  EXPECT_THROW(gpu.acquire_slot(), nemotron::Error);
  const std::vector<int32_t> bad{1, 99999};
  EXPECT_THROW(gpu.forward({{a, bad.data(), 2, false}}), nemotron::Error);
  const std::vector<int32_t> many(9, 5);
  EXPECT_THROW(gpu.forward({{a, many.data(), 9, false}}), nemotron::Error);
  EXPECT_THROW(gpu.forward({{3, many.data(), 1, false}}), nemotron::Error);
  // KV exhaustion: 32 tokens (+ one page of slack per slot) then a clear error.
  const std::vector<int32_t> eight(8, 5);
  int64_t fed = 0;
  bool threw = false;
  for (int i = 0; i < 20 && !threw; ++i) {
    try {
      gpu.forward({{a, eight.data(), 8, false}});
      fed += 8;
    } catch (const nemotron::Error&) {
      threw = true;
    }
  }
  EXPECT_TRUE(threw);
  EXPECT_GE(fed, 32);
}

}  // namespace
