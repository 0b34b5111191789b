#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixture_util.h"
#include "model/cuda/cuda_memory.h"
#include "runtime/memory_plan.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::runtime;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const model::Model& model() {
  static const model::Model m = model::Model::load(nemotron::testing::fixture_dir("super-latent-mtp"));
  return m;
}

TEST(MemoryPlan, ExactComponentSizes) {
  MemoryPlanRequest r;
  r.max_num_seqs = 4;
  r.max_model_len = 1000;
  r.memory_gib = 1.0;
  const auto p = plan_memory(model(), r);
  const auto& c = model().config;
  // 5 Mamba layers, fp32 state [8,16,16] + conv window [3, 192].
  EXPECT_EQ(p.state_slot_bytes, 5 * 4 * (8 * 16 * 16 + 3 * 192));
  EXPECT_EQ(p.state_bytes, 4 * p.state_slot_bytes);
  // 1 trunk + 1 MTP attention layer, K and V of 2 heads x 32, fp32.
  EXPECT_EQ(p.kv_bytes_per_token, 2 * 2 * c.kv_dim() * 4);
  EXPECT_EQ(p.weight_bytes, static_cast<int64_t>(model().checkpoint.total_bytes()));
  EXPECT_EQ(p.kv_token_capacity, 4000);  // enough for every slot at full length
  EXPECT_EQ(p.total_bytes, p.weight_bytes + p.state_bytes + p.kv_bytes + p.activation_bytes + p.prefix_cache_bytes);
  EXPECT_LE(p.total_bytes, p.budget_bytes);
  // The prefix cache: a tenth of what the budget leaves after weights, state and activations.
  EXPECT_EQ(p.prefix_cache_bytes,
            (p.budget_bytes - p.weight_bytes - p.state_bytes - p.activation_bytes) / 10);
  const auto e = p.engine_options();
  EXPECT_EQ(e.prefix_cache_bytes, p.prefix_cache_bytes);
  EXPECT_EQ(e.max_model_len, 1000);
  EXPECT_EQ(e.limits.kv_token_capacity, 4000);
  EXPECT_THAT(p.describe(), HasSubstr("KV cache"));
}

TEST(MemoryPlan, PrefixCacheMemoryIsAFlagAndCanBeOff) {
  MemoryPlanRequest r;
  r.max_num_seqs = 4;
  r.max_model_len = 1000;
  r.memory_gib = 1.0;
  r.prefix_cache_gib = 0.25;
  auto p = plan_memory(model(), r);
  EXPECT_EQ(p.prefix_cache_bytes, int64_t{1} << 28);
  EXPECT_THAT(p.describe(), HasSubstr("prefix cache      0.250 GiB"));
  r.prefix_cache = false;
  p = plan_memory(model(), r);
  EXPECT_EQ(p.prefix_cache_bytes, 0);
  EXPECT_THAT(p.describe(), HasSubstr("prefix cache      off"));
  r.prefix_cache = true;
  r.prefix_cache_gib = 0.99;  // leaves too little for one sequence's KV
  r.max_model_len = 100000;
  try {
    plan_memory(model(), r);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--prefix-cache-memory"));
  }
}

TEST(MemoryPlan, CapacityLimitedByBudgetNeverExceedsIt) {
  MemoryPlanRequest r;
  r.max_num_seqs = 64;
  r.max_model_len = 100000;
  r.memory_gib = 0.5;
  const auto p = plan_memory(model(), r);
  EXPECT_LT(p.kv_token_capacity, 64 * 100000);
  EXPECT_GE(p.kv_token_capacity, 100000);
  EXPECT_LE(p.total_bytes, p.budget_bytes);
}

TEST(MemoryPlan, RefusesWhatDoesNotFit) {
  MemoryPlanRequest r;
  r.memory_gib = 0.001;  // 1 MiB: less than the weights
  try {
    plan_memory(model(), r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("does not fit"));
    EXPECT_THAT(e.what(), HasSubstr("weights"));
  }
  r.memory_gib = 0.05;
  r.max_model_len = 10'000'000;  // one sequence's KV alone is too big
  EXPECT_THROW(plan_memory(model(), r), Error);
}

TEST(MemoryPlan, InvalidFlags) {
  MemoryPlanRequest r;
  r.memory_gib = 1.0;
  r.max_num_seqs = 0;
  EXPECT_THAT([&] { try { plan_memory(model(), r); } catch (const Error& e) { return std::string(e.what()); } return std::string(); }(),
              HasSubstr("--max-num-seqs"));
  r.max_num_seqs = 1;
  r.kv_cache_dtype = "bf16";  // the CPU backend keeps fp32 rows (fp8 is emulated in them)
  EXPECT_THROW(plan_memory(model(), r), Error);
  r.kv_cache_dtype = "int8";
  EXPECT_THAT([&] { try { plan_memory(model(), r); } catch (const Error& e) { return std::string(e.what()); } return std::string(); }(),
              HasSubstr("--kv-cache-dtype: unsupported \"int8\""));
  r.kv_cache_dtype = "auto";
  r.memory_gib = -1;
  EXPECT_THROW(plan_memory(model(), r), Error);
}

TEST(MemoryPlan, CudaPlanUsesDeviceDtypes) {
  MemoryPlanRequest r;
  r.device = "cuda";
  r.max_num_seqs = 2;
  r.max_model_len = 1000;
  r.memory_gib = 1.0;  // explicit budget: no device needed to plan
  const auto p = plan_memory(model(), r);
  EXPECT_EQ(p.kv_cache_dtype, "bf16");
  EXPECT_EQ(p.kv_bytes_per_token, 2 * 2 * model().config.kv_dim() * 2);
  r.kv_cache_dtype = "fp8";
  EXPECT_EQ(plan_memory(model(), r).kv_bytes_per_token, 2 * 2 * model().config.kv_dim() * 1);
  r.kv_cache_dtype = "fp32";
  EXPECT_THROW(plan_memory(model(), r), Error);
  r.kv_cache_dtype = "auto";
  r.device = "tpu";
  EXPECT_THROW(plan_memory(model(), r), Error);
}

// --kv-cache-dtype auto follows the checkpoint's kv_cache_quant_algo on the GPU (FP8 -> fp8, 1
// byte per element), stays fp32 on the CPU; explicit bf16 / fp8 override it. The CPU backend's
// fp8 is emulated in fp32 rows, so its bytes per token stay 4 per element.
TEST(MemoryPlan, KvCacheDtypeFollowsTheCheckpoint) {
  model::Model m = model::Model::load(nemotron::testing::fixture_dir("super-latent-mtp"));
  const int64_t kv = m.config.kv_dim(), layers = 2;  // 1 trunk + 1 MTP attention layer
  MemoryPlanRequest r;
  r.max_num_seqs = 2;
  r.max_model_len = 1000;
  r.memory_gib = 1.0;
  r.device = "cuda";
  auto plan = [&] { return plan_memory(m, r); };
  EXPECT_EQ(plan().kv_cache_dtype, "bf16");  // no kv_cache_quant_algo
  m.quant.kv_cache_quant_algo = "FP8";
  EXPECT_EQ(plan().kv_cache_dtype, "fp8");
  EXPECT_EQ(plan().kv_bytes_per_token, layers * 2 * kv * 1);
  EXPECT_TRUE(plan().backend_options().kv_fp8);
  r.kv_cache_dtype = "bf16";  // explicit: overrides the checkpoint (scales ignored)
  EXPECT_EQ(plan().kv_cache_dtype, "bf16");
  EXPECT_EQ(plan().kv_bytes_per_token, layers * 2 * kv * 2);
  EXPECT_FALSE(plan().backend_options().kv_fp8);
  r.device = "cpu";
  r.kv_cache_dtype = "auto";
  EXPECT_EQ(plan().kv_cache_dtype, "fp32");
  EXPECT_FALSE(plan().backend_options().kv_fp8);
  r.kv_cache_dtype = "fp8";
  const MemoryPlan p = plan();
  EXPECT_EQ(p.kv_cache_dtype, "fp8");
  EXPECT_EQ(p.kv_bytes_per_token, layers * 2 * kv * 4);
  EXPECT_EQ(p.kv_bytes, p.kv_token_capacity * p.kv_bytes_per_token);
  EXPECT_TRUE(p.backend_options().kv_fp8);
  EXPECT_THAT(p.describe(), HasSubstr("fp8 emulated in fp32"));
}

// The CUDA plan is CudaModel's own allocation (model/cuda_memory.h, checked against the real
// allocations by tests/cuda/test_cuda_memory.cpp) plus the graph bound, for the largest KV
// capacity that fits.
// A CUDA plan of 3 sequences of 1000 tokens in 1 GiB for `step_tokens`-token steps, on 132 SMs
// (no device needed), without a prefix cache (its default share moves with the budget).
MemoryPlanRequest small_cuda_request(int64_t step_tokens) {
  MemoryPlanRequest r;
  r.device = "cuda";
  r.cuda_sms = 132;
  r.max_num_seqs = 3;
  r.max_step_tokens = step_tokens;
  r.prefill_step_tokens = 0;  // the step buffers hold step_tokens rows
  r.max_model_len = 1000;
  r.memory_gib = 1.0;
  r.prefix_cache = false;
  return r;
}

// The counting walk of CudaModel's allocations for plan p's capacities and `rows`-row steps.
model::CudaMemory counted(const MemoryPlan& p, int64_t rows) {
  model::CudaModelOptions o;
  o.max_seqs = p.max_num_seqs;
  o.max_step_tokens = rows;
  o.kv_tokens = p.kv_token_capacity;
  o.spec_seqs = p.max_spec_seqs;
  o.spec_rows = p.max_spec_rows;
  o.sampled_logits_only = true;  // as the plan: the engine's steps
  return model::cuda_memory(model(), o, 132);
}

TEST(MemoryPlan, CudaPlanCountsTheModelsAllocationsAndGraphs) {
  MemoryPlanRequest r = small_cuda_request(256);
  const auto p = plan_memory(model(), r);
  const auto t = counted(p, 256);
  EXPECT_EQ(p.kv_token_capacity, 3000);  // every slot at full length fits in 1 GiB
  EXPECT_EQ(p.weight_bytes, t.weights);
  EXPECT_EQ(p.kv_bytes, t.kv);
  EXPECT_EQ(p.state_bytes, t.state);
  EXPECT_EQ(p.activation_bytes, t.activations + t.attention_workspace + t.tables);
  EXPECT_EQ(p.spec_bytes, t.speculation);
  EXPECT_GT(t.attention_workspace, 0);
  EXPECT_GT(p.graph_bytes, 3 * model::kGraphBytesPerGraph);
  EXPECT_EQ(p.total_bytes, p.weight_bytes + p.state_bytes + p.kv_bytes + p.activation_bytes + p.graph_bytes +
                               p.pinned_host_bytes + p.spec_bytes + p.prefix_cache_bytes);
  EXPECT_LE(p.total_bytes, p.budget_bytes);
  // KV pages: capacity rounded up to pages of 16, plus one partial page per slot, in the trunk's
  // and the MTP head's attention blocks.
  EXPECT_EQ(t.kv, ((3000 + 15) / 16 + 3) * 16 * p.kv_bytes_per_token);
  EXPECT_THAT(p.describe(), HasSubstr("CUDA graphs"));

  // A budget just below the plan's total for 3000 tokens gives fewer tokens, never more memory.
  r.memory_gib = static_cast<double>(p.total_bytes - 1) / (1024.0 * 1024.0 * 1024.0);
  const auto q = plan_memory(model(), r);
  EXPECT_LT(q.kv_token_capacity, 3000);
  EXPECT_GE(q.kv_token_capacity, 1000);
  EXPECT_LE(q.total_bytes, q.budget_bytes);
  EXPECT_EQ(q.kv_token_capacity % 16, 0);
  // A budget below weights + graphs + one sequence is refused, naming the graphs.
  r.memory_gib = static_cast<double>(p.weight_bytes + p.graph_bytes) / (1024.0 * 1024.0 * 1024.0);
  try {
    plan_memory(model(), r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("CUDA graphs"));
  }
}

// --prefill-step-tokens: the step buffers (CPU activations, the CUDA step arena) are sized for
// the larger budget, the engine's scheduler gets both, and a value below --max-step-tokens (other
// than 0) is refused naming both flags.
TEST(MemoryPlan, PrefillStepTokensSizeTheStepBuffers) {
  MemoryPlanRequest r = small_cuda_request(64);
  const MemoryPlan base = plan_memory(model(), r);
  EXPECT_EQ(base.prefill_step_tokens, 64);
  EXPECT_EQ(base.backend_options().max_step_tokens, 64);
  EXPECT_EQ(base.engine_options().limits.prefill_step_tokens, 64);
  r.prefill_step_tokens = 256;
  const MemoryPlan big = plan_memory(model(), r);
  EXPECT_EQ(big.max_step_tokens, 64);
  EXPECT_EQ(big.prefill_step_tokens, 256);
  EXPECT_EQ(big.backend_options().max_step_tokens, 256);
  EXPECT_EQ(big.engine_options().limits.max_step_tokens, 64);
  EXPECT_EQ(big.engine_options().limits.prefill_step_tokens, 256);
  const auto t = counted(big, 256);
  EXPECT_EQ(big.activation_bytes, t.activations + t.attention_workspace + t.tables);
  EXPECT_GT(big.activation_bytes, base.activation_bytes);
  EXPECT_THAT(big.describe(), HasSubstr("64 tokens per step, 256 in steps that decode no sequence"));
  r.device = "cpu";
  r.kv_cache_dtype = "auto";
  EXPECT_EQ(plan_memory(model(), r).backend_options().max_step_tokens, 256);
  r.prefill_step_tokens = 32;
  try {
    plan_memory(model(), r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--prefill-step-tokens 32"));
    EXPECT_THAT(e.what(), HasSubstr("--max-step-tokens 64"));
  }
  // Not given (-1): kCudaPrefillStepTokens on the GPU (or --max-step-tokens when larger), the
  // same as --max-step-tokens on the CPU.
  MemoryPlanRequest d = small_cuda_request(64);
  d.prefill_step_tokens = MemoryPlanRequest{}.prefill_step_tokens;
  EXPECT_EQ(plan_memory(model(), d).prefill_step_tokens, kCudaPrefillStepTokens);
  EXPECT_EQ(plan_memory(model(), d).engine_options().limits.max_step_tokens, 64);
  d.max_step_tokens = 4096;
  d.max_model_len = 5000;
  EXPECT_EQ(plan_memory(model(), d).prefill_step_tokens, 4096);
  d.max_step_tokens = 64;
  d.max_model_len = 1000;
  d.device = "cpu";
  d.kv_cache_dtype = "auto";
  EXPECT_EQ(plan_memory(model(), d).prefill_step_tokens, 64);
}

// The CUDA terms come from one counting walk of CudaModel's allocation code (no device here):
// three arenas whose sizes are the sums of their uses, every sub-allocation a multiple of 256
// bytes; the KV capacity moves only the cache arena, the step rows only the step arena, and
// the weights arena depends on neither.
TEST(MemoryPlan, CudaTableIsOneWalkOverThreeArenas) {
  using model::cuda_detail::ArenaKind;
  using model::cuda_detail::Use;
  for (const char* name : {"nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"}) {
    const model::Model m = model::Model::load(nemotron::testing::fixture_dir(name));
    model::CudaModelOptions o;
    o.max_seqs = 3;
    o.max_step_tokens = 300;
    o.kv_tokens = 1000;
    const model::CudaMemory t = model::cuda_memory(m, o, 132);
    const auto& tab = t.table;
    EXPECT_EQ(tab.of(ArenaKind::Weights), t.weights) << name;
    EXPECT_EQ(tab.of(ArenaKind::Cache), t.state + t.kv + t.tables + t.speculation + t.snapshots) << name;
    EXPECT_EQ(t.speculation, 0) << name;  // spec_seqs 0 and prefix_cache_bytes 0 by default
    EXPECT_EQ(t.snapshots, 0) << name;
    EXPECT_EQ(tab.of(ArenaKind::Step), t.activations + t.attention_workspace) << name;
    EXPECT_EQ(tab.device(), t.allocated()) << name;
    for (int u = 0; u < model::cuda_detail::kUses; ++u) EXPECT_EQ(tab.by_use[u] % 256, 0) << name << " use " << u;
    EXPECT_GT(t.weights, static_cast<int64_t>(m.checkpoint.total_bytes()) / 2) << name;
    EXPECT_GT(t.pinned_host, 0) << name;
    EXPECT_GT(tab.takes, 10) << name;
    EXPECT_EQ(model::cuda_memory(m, o, 132).allocated(), t.allocated()) << name;  // deterministic

    model::CudaModelOptions more_kv = o;
    more_kv.kv_tokens = 50000;
    const auto k = model::cuda_memory(m, more_kv, 132);
    EXPECT_EQ(k.weights, t.weights) << name;
    EXPECT_EQ(k.state, t.state) << name;
    EXPECT_GE(k.kv, t.kv) << name;
    EXPECT_GT(k.tables, t.tables) << name;
    EXPECT_GE(k.arena(ArenaKind::Step), t.arena(ArenaKind::Step)) << name;  // attention splits see more pages

    model::CudaModelOptions more_rows = o;
    more_rows.max_step_tokens = 600;
    const auto r = model::cuda_memory(m, more_rows, 132);
    EXPECT_EQ(r.arena(ArenaKind::Weights), t.arena(ArenaKind::Weights)) << name;
    EXPECT_EQ(r.arena(ArenaKind::Cache), t.arena(ArenaKind::Cache)) << name;
    EXPECT_GT(r.arena(ArenaKind::Step), t.arena(ArenaKind::Step)) << name;

    model::CudaModelOptions more_seqs = o;
    more_seqs.max_seqs = 6;
    const auto sq = model::cuda_memory(m, more_seqs, 132);
    EXPECT_EQ(sq.weights, t.weights) << name;
    EXPECT_GE(sq.state, t.state) << name;
    if (t.state > 0) {
      EXPECT_GT(sq.state, t.state) << name;
    }
  }
  // The plan reports the same arenas.
  MemoryPlanRequest r;
  r.device = "cuda";
  r.cuda_sms = 132;
  r.max_num_seqs = 3;
  r.max_step_tokens = 300;
  r.prefill_step_tokens = 0;  // step buffers of 300 rows
  r.max_model_len = 1000;
  r.memory_gib = 1.0;
  const auto p = plan_memory(model(), r);
  model::CudaModelOptions o;
  o.max_seqs = 3;
  o.max_step_tokens = 300;
  o.kv_tokens = p.kv_token_capacity;
  o.spec_seqs = p.max_spec_seqs;
  o.spec_rows = p.max_spec_rows;
  o.prefix_cache_bytes = p.prefix_cache_bytes;
  o.sampled_logits_only = true;
  const auto t = model::cuda_memory(model(), o, 132);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(p.arena_bytes[k], t.table.arena[k]);
  EXPECT_TRUE(p.backend_options().sampled_logits_only);
  // The engine's steps keep logits for the sampler's rows only (3 + 3 x 3 of 300): the step
  // arena is smaller by the other rows' fp32 logits (each buffer rounded to 256 bytes).
  o.sampled_logits_only = false;
  const auto all_rows = model::cuda_memory(model(), o, 132);
  const int64_t V = model().config.vocab_size, Sc = 3 + p.max_spec_seqs * (p.max_spec_rows - 1);
  auto up = [](int64_t b) { return (b + 255) / 256 * 256; };
  EXPECT_EQ(all_rows.activations - t.activations, up(300 * V * 4) - up(Sc * V * 4));
  EXPECT_THAT(p.describe(), HasSubstr("device arenas"));
}

// The CUDA plan holds the prefix cache as the model's snapshot pool (whole units, a tenth of
// what is left by default, or the flag) and roll-back room for speculative decoding (with an
// MTP head: every sequence while that room is a small share of the budget, else as many as
// fit in the share, at least min(8, seqs), of K + 1 rows); the backend options carry both.
TEST(MemoryPlan, CudaPlanHoldsTheSnapshotPoolAndSpeculation) {
  MemoryPlanRequest r;
  r.device = "cuda";
  r.cuda_sms = 132;
  r.max_num_seqs = 3;
  r.max_step_tokens = 256;
  r.prefill_step_tokens = 0;  // step buffers of 256 rows
  r.max_model_len = 1000;
  r.memory_gib = 1.0;
  const auto p = plan_memory(model(), r);
  const auto unit = model::cuda_detail::snapshot_layout(model().config, false).unit;
  EXPECT_GT(p.prefix_cache_bytes, 0);
  EXPECT_EQ(p.prefix_cache_bytes % unit, 0);
  EXPECT_EQ(p.max_spec_seqs, 3);  // min(8, max_num_seqs): the fixture has an MTP head
  EXPECT_EQ(p.max_spec_rows, 4);  // K = 3 by default
  EXPECT_GT(p.spec_bytes, 0);
  EXPECT_LE(p.total_bytes, p.budget_bytes);
  EXPECT_THAT(p.describe(), HasSubstr("3 sequences x 4 rows kept for roll-back"));
  EXPECT_THAT(p.describe(), Not(HasSubstr("not on the GPU")));
  const auto b = p.backend_options();
  EXPECT_EQ(b.prefix_cache_bytes, p.prefix_cache_bytes);
  EXPECT_EQ(b.max_spec_seqs, 3);
  EXPECT_EQ(b.max_spec_rows, 4);
  EXPECT_EQ(p.engine_options().prefix_cache_bytes, p.prefix_cache_bytes);
  // A tenth of what is left besides the KV cache, in whole units.
  model::CudaModelOptions o;
  o.max_seqs = 3;
  o.max_step_tokens = 256;
  o.kv_tokens = 0;
  o.spec_seqs = 3;
  o.spec_rows = 4;
  o.sampled_logits_only = true;
  const auto none = model::cuda_memory(model(), o, 132);
  const int64_t share = (p.budget_bytes - none.device_total() - none.pinned_host) / 10;
  EXPECT_EQ(p.prefix_cache_bytes, share / unit * unit);
  // The flag, K and the switch.
  r.prefix_cache_gib = 0.01;
  r.speculative_tokens = 5;
  auto q = plan_memory(model(), r);
  EXPECT_EQ(q.prefix_cache_bytes, static_cast<int64_t>(0.01 * (1 << 30)) / unit * unit);
  EXPECT_EQ(q.max_spec_rows, 6);
  EXPECT_GT(q.spec_bytes, p.spec_bytes);
  r.speculative_tokens = 0;
  r.prefix_cache = false;
  q = plan_memory(model(), r);
  EXPECT_EQ(q.prefix_cache_bytes, 0);
  EXPECT_EQ(q.spec_bytes, 0);
  EXPECT_EQ(q.max_spec_seqs, 0);
  EXPECT_THAT(q.describe(), HasSubstr("speculation       off"));
  // More sequences: every one may verify while their room takes at most kCudaSpecShare of what
  // the budget leaves beside the rest of the plan; a tighter budget keeps as many as fit there,
  // at least kCudaSpecSeqs.
  r.speculative_tokens = -1;
  r.prefix_cache = false;
  r.prefix_cache_gib.reset();
  r.max_model_len = 16;
  r.max_num_seqs = 40;
  EXPECT_EQ(plan_memory(model(), r).max_spec_seqs, 40);
  model::CudaModelOptions c;
  c.max_seqs = 40;
  c.max_step_tokens = 256;
  c.kv_tokens = 0;
  c.spec_rows = 4;
  c.sampled_logits_only = true;
  const auto rest = model::cuda_memory(model(), c, 132);
  c.spec_seqs = 1;
  const auto one = model::cuda_memory(model(), c, 132);
  c.spec_seqs = 2;
  const auto two = model::cuda_memory(model(), c, 132);
  const int64_t none_total = rest.device_total() + rest.pinned_host;
  // The first sequence's room includes the part all share (the drafts' FP8 lm_head).
  const int64_t first = one.device_total() + one.pinned_host - none_total;
  const int64_t per_seq = two.device_total() + two.pinned_host - none_total - first;
  ASSERT_GT(per_seq, 0);
  EXPECT_GT(first, per_seq);
  auto budget_for = [&](double seqs) {
    return static_cast<double>(none_total + static_cast<int64_t>((first + (seqs - 1) * per_seq) / kCudaSpecShare)) /
           (1 << 30);
  };
  r.memory_gib = budget_for(20.5);
  const auto tight = plan_memory(model(), r);
  EXPECT_EQ(tight.max_spec_seqs, 20);
  EXPECT_LE(tight.total_bytes, tight.budget_bytes);
  EXPECT_THAT(tight.describe(), HasSubstr("20 sequences x 4 rows kept for roll-back, FP8 draft lm_head"));
  const auto& lm = model().weights.lm_head.w;
  EXPECT_EQ(tight.draft_head_bytes, (lm.out * lm.in + 255) / 256 * 256);
  r.memory_gib = budget_for(2.5);
  EXPECT_EQ(plan_memory(model(), r).max_spec_seqs, kCudaSpecSeqs);
  r.max_model_len = 1000;
  r.memory_gib = 1.0;
  r.max_num_seqs = 3;
  // Without an MTP head nothing is kept for roll-back.
  const model::Model plain = model::Model::load(nemotron::testing::fixture_dir("nano-moe"));
  r.speculative_tokens = -1;
  EXPECT_EQ(plan_memory(plain, r).spec_bytes, 0);
}

TEST(MemoryPlan, DefaultBudgetIsAvailableMemoryMinusMargin) {
  MemoryPlanRequest r;
  r.max_model_len = 2048;
  const auto p = plan_memory(model(), r);
  EXPECT_GT(available_system_memory(), 0);
  EXPECT_LT(p.budget_bytes, available_system_memory());
}

}  // namespace
