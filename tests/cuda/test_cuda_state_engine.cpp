// The engine on the CUDA backend with speculative decoding and the prefix cache (the GPU side
// of tests/runtime/test_speculative.cpp and test_prefix_cache.cpp):
//   - greedy ids with K = 1..3 MTP drafts (every decode step verified) equal plain decoding on
//     the MTP fixtures and the demo model, several sequences of mixed lengths in one batch, also
//     when more sequences decode than the backend may verify at once; the verify rows take the
//     prefill kernels and plain decoding the decode graph, so two streams may part only at a
//     near-tie of the logits (cuda_state_test_util.h: greedy_divergence);
//   - seeded sampling with penalties: speculation on and off give the same tokens (a request
//     may part at a rounding-level tie: at least two of three equal);
//   - the prefix cache: conversation turns resumed from GPU snapshots equal the uncached
//     outputs (greedy: up to near-ties; hits counted), under eviction (a pool of about four
//     snapshots), and with speculation on.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "cuda_state_test_util.h"
#include "engine_test_util.h"
#include "model/cuda/cuda_model.h"
#include "runtime/engine.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::runtime;
using nemotron::testing::cuda_backend;
using nemotron::testing::generate_together;
using nemotron::testing::greedy_divergence;
using nemotron::testing::state_model_path;
using nemotron::testing::state_prompt;

namespace {

struct EngineSetup {
  int K = 0;
  int spec_seqs = 8;
  int64_t cache_bytes = 0;
  int64_t interval = 16;
  std::string dir;  // --prefix-cache-dir
};

std::unique_ptr<Engine> cuda_engine(const model::Model& m, int slots, const EngineSetup& e) {
  EngineOptions o;
  o.limits = {slots, 64, 8192};  // the backend's kv_tokens
  o.max_model_len = 2048;
  o.speculative_tokens = e.K;
  o.speculate_always = e.K > 0;
  o.prefix_cache_bytes = e.cache_bytes;
  o.prefix_snapshot_interval = e.interval;
  o.prefix_snapshot_min_gap = 0;  // prompts of tens of tokens: every snapshot point is taken
  o.prefix_cache_dir = e.dir;
  return std::make_unique<Engine>(cuda_backend(m, slots, e.cache_bytes, e.spec_seqs, 64), o);
}

// One after another; `cached`: each request's cached_tokens.
std::vector<std::vector<int32_t>> serial(Engine& engine, const std::vector<GenerationRequest>& reqs,
                                         std::vector<int64_t>* cached = nullptr) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& r : reqs) {
    std::vector<int32_t> ids;
    int64_t c = 0;
    for (const auto& e : generate_blocking(engine, r)) {
      if (e.event.token >= 0) ids.push_back(e.event.token);
      c = std::max(c, e.event.cached_tokens);
    }
    out.push_back(ids);
    if (cached) cached->push_back(c);
  }
  return out;
}

class CudaSpeculationTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(model::cuda_backend_available()) << "no CUDA device";
    m_ = std::make_unique<model::Model>(model::Model::load(state_model_path(GetParam())));
    ASSERT_TRUE(m_->config.has_mtp()) << GetParam();
  }
  std::unique_ptr<model::Model> m_;
};

TEST_P(CudaSpeculationTest, GreedyIdsEqualPlainDecoding) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    r.prompt = state_prompt(GetParam(), i);
    r.sampling.temperature = 0.0f;
    r.max_tokens = 13 + 7 * i;  // ends inside a verify for most K
    reqs.push_back(r);
  }
  const auto plain = generate_together(*cuda_engine(*m_, 3, {}), reqs);
  // K = 1..3 with room for every sequence; K = 2 with room for two of the three (the third
  // decodes plainly in the same steps).
  for (const auto& [K, seqs] : std::vector<std::pair<int, int>>{{1, 8}, {2, 8}, {3, 8}, {2, 2}}) {
    auto engine = cuda_engine(*m_, 3, {.K = K, .spec_seqs = seqs});
    const auto got = generate_together(*engine, reqs);
    const EngineStats st = engine->stats();
    int exact = 0;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      exact += got[i] == plain[i];
      EXPECT_EQ(greedy_divergence(*m_, reqs[i].prompt, plain[i], got[i]), "")
          << "K = " << K << ", " << seqs << " verifying, request " << i;
    }
    EXPECT_GT(st.spec_drafts, 0u) << "K = " << K;
    EXPECT_EQ(st.spec_draft_tokens, st.spec_drafts * static_cast<uint64_t>(K));
    const double per = st.spec_drafts ? 1.0 + static_cast<double>(st.spec_accepted_tokens) /
                                                  static_cast<double>(st.spec_drafts)
                                      : 0.0;
    std::printf("[ %s ] K=%d (%d may verify): %d/3 streams equal, %llu verifies, %.2f tokens per verify\n",
                GetParam().c_str(), K, seqs, exact, static_cast<unsigned long long>(st.spec_drafts), per);
  }
}

TEST_P(CudaSpeculationTest, SeededSamplingWithPenaltiesEqualsPlain) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    r.prompt = state_prompt(GetParam(), i);
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.top_k = 50;
    r.sampling.seed = 77u + static_cast<uint64_t>(i);
    if (i != 2) {
      r.sampling.repetition_penalty = 1.2f;
      r.sampling.presence_penalty = 0.4f;
      r.sampling.frequency_penalty = 0.3f;
    }
    r.max_tokens = 24;
    reqs.push_back(r);
  }
  const auto plain = generate_together(*cuda_engine(*m_, 3, {}), reqs);
  for (int K : {1, 3}) {
    const auto got = generate_together(*cuda_engine(*m_, 3, {.K = K}), reqs);
    int equal = 0;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      equal += got[i] == plain[i];
      std::size_t j = 0;
      while (j < got[i].size() && j < plain[i].size() && got[i][j] == plain[i][j]) ++j;
      if (got[i] != plain[i]) std::printf("[ %s ] K=%d request %zu parts at token %zu\n", GetParam().c_str(), K, i, j);
    }
    // Verify chunks compute their rows on multi-row paths (rounding differs from one-row
    // decode); a seeded draw near a threshold can then flip. The trained demo keeps two of
    // three streams whole; the random-weight fixtures, whose logits amplify rounding (see
    // greedy_divergence), at least one.
    EXPECT_GE(equal, GetParam() == "demo" ? 2 : 1)
        << "K = " << K << ": seeded streams with speculation differ from plain decoding";
  }
}

// Not super-latent-mtp: its random-weight latent MoE turns the rounding difference between a
// verify chunk's multi-row kernels and one-row decode into route flips (measured on an H100,
// ninth session: one position's logits moved by 0.84 of their largest magnitude between a
// 4-row chunk and a plain prefill), and the states then drift apart over the following tokens
// (greedy streams part at token 19 at a 5.8% gap where the local difference is 0.7%; seeded
// streams part at tokens 4-20), so whole-stream equality is not a property it has. Its
// roll-back and snapshots are exact (CudaStateTest), and the engine speculates on it in
// CudaPrefixCacheTest.EvictionAndSpeculationStayExact; the equality of whole streams is checked
// on the two models where it holds.
INSTANTIATE_TEST_SUITE_P(Models, CudaSpeculationTest, ::testing::Values("super-mixed-mtp", "demo"),
                         nemotron::testing::FixtureParamName());

std::vector<int32_t> seq(int n, int seed) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<int32_t>(3 + (i * 37 + seed * 101) % 500));
  return v;
}

GenerationRequest req(std::vector<int32_t> prompt, bool sampled, int n = 12) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = n;
  if (sampled) {
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.9f;
    r.sampling.repetition_penalty = 1.3f;
    r.sampling.frequency_penalty = 0.2f;
    r.sampling.seed = 5;
  } else {
    r.sampling.temperature = 0.0f;
  }
  return r;
}

// Greedy requests must match up to near-ties; sampled ones at least `min_equal` of them exactly.
void expect_like(const model::Model& m, const std::vector<GenerationRequest>& rs,
                 const std::vector<std::vector<int32_t>>& want, const std::vector<std::vector<int32_t>>& got,
                 const std::string& what) {
  ASSERT_EQ(want.size(), got.size());
  int sampled = 0, sampled_equal = 0;
  for (std::size_t i = 0; i < rs.size(); ++i) {
    if (rs[i].sampling.greedy()) {
      EXPECT_EQ(greedy_divergence(m, rs[i].prompt, want[i], got[i]), "") << what << ", request " << i;
    } else {
      ++sampled;
      sampled_equal += want[i] == got[i];
    }
  }
  EXPECT_GE(sampled_equal + 1, sampled) << what << ": sampled requests differ from the uncached run";
}

class CudaPrefixCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(model::cuda_backend_available()) << "no CUDA device";
    m_ = std::make_unique<model::Model>(model::Model::load(nemotron::testing::fixture_dir("super-latent-mtp")));
  }
  std::unique_ptr<model::Model> m_;
};

TEST_F(CudaPrefixCacheTest, ConversationTurnsResumeAndEqualTheUncachedOutputs) {
  for (bool sampled : {false, true}) {
    const auto p1 = seq(40, 1);
    auto plain = cuda_engine(*m_, 4, {});
    const auto r1 = serial(*plain, {req(p1, sampled)})[0];
    std::vector<int32_t> p2 = p1;
    p2.insert(p2.end(), r1.begin(), r1.end());
    const auto extra = seq(9, 7);
    p2.insert(p2.end(), extra.begin(), extra.end());
    std::vector<int32_t> p3 = p1;
    p3[30] = 1;
    std::vector<GenerationRequest> turns{req(p1, sampled), req(p2, sampled), req(p3, sampled)};
    turns[0].snapshot_at = {35};
    const auto want = serial(*plain, turns);
    auto cached_engine = cuda_engine(*m_, 4, {.cache_bytes = int64_t{64} << 20});
    std::vector<int64_t> cached;
    const auto got = serial(*cached_engine, turns, &cached);
    expect_like(*m_, turns, want, got, sampled ? "sampled" : "greedy");
    EXPECT_EQ(cached[0], 0);
    EXPECT_GE(cached[1], 35);  // turn 1's generation end (its requested point if turn 1 parted at a tie)
    EXPECT_EQ(cached[2], 16);  // the interval point before the divergence at 30
    const auto st = cached_engine->stats().prefix_cache;
    EXPECT_GT(st.hit_tokens, 0u);
    EXPECT_GT(st.entries, 0);
    EXPECT_LE(st.bytes, st.budget);
    std::printf("[ prefix cache ] %s: cached %lld / %lld / %lld tokens, %lld snapshots, %lld bytes\n",
                sampled ? "sampled" : "greedy", static_cast<long long>(cached[0]), static_cast<long long>(cached[1]),
                static_cast<long long>(cached[2]), static_cast<long long>(st.entries),
                static_cast<long long>(st.bytes));
  }
}

// --prefix-cache-dir on the CUDA backend: the snapshots a server wrote at exit are imported
// by the next one (a restart), which resumes the conversation from them with the same tokens.
TEST_F(CudaPrefixCacheTest, PrefixesWrittenAtExitResumeAfterARestart) {
  const std::string dir = ::testing::TempDir() + "/cuda-prefix-dir";
  std::filesystem::remove_all(dir);
  const auto p1 = seq(40, 3);
  auto plain = cuda_engine(*m_, 2, {});
  const auto r1 = serial(*plain, {req(p1, false)})[0];
  std::vector<int32_t> p2 = p1;
  p2.insert(p2.end(), r1.begin(), r1.end());
  const auto extra = seq(7, 11);
  p2.insert(p2.end(), extra.begin(), extra.end());
  const auto want = serial(*plain, {req(p2, false)});
  {
    auto first = cuda_engine(*m_, 2, {.cache_bytes = int64_t{64} << 20, .dir = dir});
    EXPECT_EQ(greedy_divergence(*m_, p1, r1, serial(*first, {req(p1, false)})[0]), "");
  }  // written here
  ASSERT_TRUE(std::filesystem::exists(dir + "/prefix-0.bin"));
  auto second = cuda_engine(*m_, 2, {.cache_bytes = int64_t{64} << 20, .dir = dir});
  EXPECT_GT(second->stats().prefix_cache.entries, 0);
  std::vector<int64_t> cached;
  const auto got = serial(*second, {req(p2, false)}, &cached);
  EXPECT_EQ(greedy_divergence(*m_, p2, want[0], got[0]), "");
  EXPECT_GE(cached[0], static_cast<int64_t>(p1.size()));
  // A pool too small for them: the newest that fit are imported, nothing fails.
  const int64_t one = cuda_backend(*m_, 1, 0, 0)->snapshot_bytes(64);
  auto tiny = cuda_engine(*m_, 2, {.cache_bytes = one, .dir = dir});
  EXPECT_LE(tiny->stats().prefix_cache.bytes, one);
  const auto again = serial(*tiny, {req(p2, false)});
  EXPECT_EQ(greedy_divergence(*m_, p2, want[0], again[0]), "");
  std::filesystem::remove_all(dir);
}

TEST_F(CudaPrefixCacheTest, EvictionAndSpeculationStayExact) {
  const auto base = seq(48, 9);
  std::vector<GenerationRequest> rs;
  for (int i = 0; i < 6; ++i) {
    auto p = base;
    const auto tail = seq(5 + i, 20 + i);
    p.insert(p.end(), tail.begin(), tail.end());
    rs.push_back(req(p, i % 2 == 1));
  }
  const auto want = serial(*cuda_engine(*m_, 4, {}), rs);
  // A pool of about four snapshots while each request saves five (every 16 tokens, its
  // prompt's end, its output's end): entries are evicted all along, and the shared 48-token
  // prefix, touched by every hit, stays. (With two, as on the CPU, the request's own prompt and
  // output ends evict it before the next request: no hit, measured on an H100.)
  const int64_t pool = 4 * cuda_backend(*m_, 1, 0, 0)->snapshot_bytes(64);
  auto small = cuda_engine(*m_, 4, {.cache_bytes = pool});
  expect_like(*m_, rs, want, serial(*small, rs), "a pool of four snapshots");
  const auto sst = small->stats().prefix_cache;
  std::printf("[ prefix cache ] a pool of four snapshots (%lld bytes): budget %lld, %lld entries, %lld bytes, %llu hit "
              "tokens\n",
              static_cast<long long>(pool), static_cast<long long>(sst.budget), static_cast<long long>(sst.entries),
              static_cast<long long>(sst.bytes), static_cast<unsigned long long>(sst.hit_tokens));
  EXPECT_LE(sst.bytes, pool);
  EXPECT_GT(sst.hit_tokens, 0u);
  // With speculative decoding (K = 2, every step verified) and the cache.
  auto spec = cuda_engine(*m_, 4, {.K = 2, .cache_bytes = int64_t{64} << 20});
  expect_like(*m_, rs, want, serial(*spec, rs), "speculation and the cache");
  EXPECT_GT(spec->stats().prefix_cache.hit_tokens, 0u);
  EXPECT_GT(spec->stats().spec_drafts, 0u);
}

// The engine on a backend without snapshot room caches nothing; on one without roll-back room
// it refuses speculation; the default K follows the backend.
TEST(CudaEngineState, CapabilitiesFollowTheBackendsRoom) {
  ASSERT_TRUE(model::cuda_backend_available()) << "no CUDA device";
  const model::Model m = model::Model::load(nemotron::testing::fixture_dir("super-latent-mtp"));
  EXPECT_EQ(default_speculative_tokens(*cuda_backend(m, 1, 0, 1)), 3);
  EXPECT_EQ(default_speculative_tokens(*cuda_backend(m, 1, 0, 0)), 0);
  EngineOptions o;
  o.limits = {1, 64, 4096};
  o.speculative_tokens = 2;
  EXPECT_THROW(Engine(cuda_backend(m, 1, 0, 0), o), Error);
  o.speculative_tokens = 0;
  o.prefix_cache_bytes = int64_t{1} << 30;
  Engine e(cuda_backend(m, 1, 0, 0), o);  // no pool: no cache
  GenerationRequest r;
  r.prompt = seq(20, 3);
  r.max_tokens = 3;
  generate_blocking(e, r);
  EXPECT_EQ(e.stats().prefix_cache.budget, 0);
  // With a small pool the cache's budget is the pool's capacity, not the engine's option.
  auto b = cuda_backend(m, 1, int64_t{4} << 20, 0);
  const int64_t cap = b->snapshot_capacity();
  ASSERT_GT(cap, 0);
  Engine f(std::move(b), o);
  generate_blocking(f, r);
  EXPECT_EQ(f.stats().prefix_cache.budget, cap);
}

}  // namespace
