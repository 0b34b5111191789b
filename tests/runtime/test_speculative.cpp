// Speculative decoding with the MTP head (engine.h, speculation.h) on the CPU backend:
//   - roll_back: after a verify chunk (keep_states), cutting back to any position inside it
//     leaves exactly the state of a sequence fed only the tokens before it (the next logits are
//     bit-identical, penalty state included);
//   - lossless: greedy ids with K = 1..4 drafts equal those without, on every MTP fixture and
//     the demo model, several sequences of mixed lengths in one batch, stop ids and max_tokens
//     landing inside a verify; seeded sampling (temperature, top-k/p, penalties) gives the same
//     tokens token for token (each verified row draws with the noise of its position), and
//     the drawn tokens follow the target distribution (chi-square);
//   - the engine with the controller (its rules alone: test_spec_controller.cpp): steps with
//     prompt rows do not explore; the backend's room is kept; drafts and feeds are batched and
//     spread over steps; the MTP head stands with its trunk across prefix-cache resumes and
//     restarts (checked at every draft and feed);
//   - a model without an MTP head, or a backend that cannot roll back, refuses K > 0.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "engine_test_util.h"
#include "temp_dir.h"
#include "fixture_util.h"
#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "runtime/engine.h"
#include "runtime/speculation.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::runtime;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;

namespace {

std::string model_path(const std::string& name) {
  return name == "demo" ? std::string(NEMOTRON_SOURCE_DIR) + "/models/demo" : fixture_dir(name);
}

std::unique_ptr<model::Backend> cpu(const model::Model& m, int slots, int64_t rows = 256) {
  model::BackendOptions o;
  o.device = "cpu";
  o.max_seqs = slots;
  o.max_step_tokens = rows;
  return model::make_backend(m, o);
}

// Generates every request to its end on an engine with K drafts (always verified, or as many
// as the engine's measured rule chooses per step when `always` is false).
std::vector<std::vector<int32_t>> run(const model::Model& m, const std::vector<GenerationRequest>& reqs, int K,
                                      EngineStats* stats = nullptr, const std::vector<double>& accept_rates = {},
                                      bool always = true) {
  EngineOptions o;
  o.spec_accept_rates = accept_rates;
  o.limits = {static_cast<int>(reqs.size()), 64, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = K;
  o.speculate_always = always;
  Engine engine(cpu(m, static_cast<int>(reqs.size()), 64), o);
  auto out = nemotron::testing::generate_together(engine, reqs);
  if (stats) *stats = engine.stats();
  return out;
}

std::vector<int32_t> prompt_of(const std::string& name, int i) {
  if (name == "demo") {
    // The demo's chat template around 'What does "ephemeral" mean?' (generate --chat's prompt).
    std::vector<int32_t> p{10,   4988, 1010, 11,   1010, 10,   3148, 1010, 7735, 2348, 1333, 1979, 1271, 2676,
                           1274, 1034, 3717, 1063, 11,   1010, 10,   1314, 1509, 1582, 1010, 12,   1010};
    for (int j = 0; j < i; ++j) p.push_back(1300 + 17 * j);
    return p;
  }
  const Expected ex(name);
  auto p = ex.ids("p" + std::to_string(i % ex.num_prompts()) + ".input_ids");
  for (int j = 0; j < i; ++j) p.push_back(static_cast<int32_t>(3 + 5 * j));
  return p;
}

// n greedy requests of max_tokens each on prompt_of(name, 0..n-1).
std::vector<GenerationRequest> greedy_requests(const std::string& name, int n, int max_tokens) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < n; ++i) {
    GenerationRequest r;
    r.prompt = prompt_of(name, i);
    r.sampling.temperature = 0.0f;
    r.max_tokens = max_tokens;
    reqs.push_back(r);
  }
  return reqs;
}

class SpeculativeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SpeculativeTest, RollBackLeavesExactlyTheShorterSequencesState) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  const int64_t V = m.config.vocab_size;
  const auto prompt = prompt_of(GetParam(), 0);
  const std::vector<int32_t> tail{7, 11, 13, 17, 19};  // a "verify chunk" of 5 rows
  kernels::SamplingParams p;
  p.temperature = 0.8f;
  p.repetition_penalty = 1.3f;
  p.frequency_penalty = 0.5f;
  const auto T = static_cast<int64_t>(prompt.size());
  for (int64_t keep = 0; keep <= 5; ++keep) {
    // Rolled back: prompt, then the 5-row chunk with every row drawing, cut back to `keep`.
    auto a = cpu(m, 1);
    const int sa = a->acquire_slot();
    a->step({{.slot = sa, .ids = prompt.data(), .T = T, .sampling = &p, .sample = true, .seed = 9}});
    const auto drawn = a->step({{.slot = sa, .ids = tail.data(), .T = 5, .sampling = &p, .sample = true,
                                 .sample_rows = 5, .seed = 9, .draw = 1, .keep_states = true}})[0].samples;
    a->roll_back(sa, T + keep);
    // Reference: the prompt, then only the first `keep` rows, one at a time (what decoding
    // would have fed: the draws' penalty updates follow the kept rows).
    auto b = cpu(m, 1);
    const int sb = b->acquire_slot();
    b->step({{.slot = sb, .ids = prompt.data(), .T = T, .sampling = &p, .sample = true, .seed = 9}});
    for (int64_t j = 0; j < keep; ++j) {
      const auto o = b->step({{.slot = sb, .ids = &tail[static_cast<std::size_t>(j)], .T = 1, .sampling = &p,
                               .sample = true, .seed = 9, .draw = 1 + static_cast<uint64_t>(j)}});
      // The same draws as the verify rows (same logits, same noise, same penalty state
      // whenever the previous draw equals the next fed token; here they are compared as is).
      if (j == 0) {
        EXPECT_EQ(o[0].sample.token, drawn[0].token);
      }
    }
    ASSERT_EQ(a->position(sa), b->position(sb));
    // The next token's logits and draw from both: identical bits.
    const int32_t next = 23;
    const auto oa = a->step({{.slot = sa, .ids = &next, .T = 1, .sampling = &p, .sample = true, .seed = 9,
                              .draw = 50, .logits = model::LogitsOut::Last}});
    const auto ob = b->step({{.slot = sb, .ids = &next, .T = 1, .sampling = &p, .sample = true, .seed = 9,
                              .draw = 50, .logits = model::LogitsOut::Last}});
    ASSERT_EQ(static_cast<int64_t>(oa[0].logits.size()), V);
    EXPECT_EQ(oa[0].logits, ob[0].logits) << "kept " << keep;
    EXPECT_EQ(oa[0].sample.token, ob[0].sample.token) << "kept " << keep;
  }
}

TEST_P(SpeculativeTest, GreedyIdsEqualPlainDecodingForEveryK) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    r.prompt = prompt_of(GetParam(), i);
    r.sampling.temperature = 0.0f;
    r.max_tokens = 13 + 7 * i;  // ends inside a verify for most K
    reqs.push_back(r);
  }
  const auto plain = run(m, reqs, 0);
  for (int K = 1; K <= 4; ++K) {
    EngineStats st;
    EXPECT_EQ(run(m, reqs, K, &st), plain) << "K = " << K;
    EXPECT_GT(st.spec_drafts, 0u);
    EXPECT_EQ(st.spec_draft_tokens, st.spec_drafts * static_cast<uint64_t>(K));
    EXPECT_EQ(st.spec_accepted_per_pos.size(), static_cast<std::size_t>(K));
    if (K >= 2) {
      EXPECT_GE(st.spec_accepted_per_pos[0], st.spec_accepted_per_pos[1]);
    }
    std::printf("[ %s ] K=%d: %llu verify steps, %.2f tokens per verify\n", GetParam().c_str(), K,
                static_cast<unsigned long long>(st.spec_drafts),
                1.0 + static_cast<double>(st.spec_accepted_tokens) / static_cast<double>(st.spec_drafts));
  }
}

// The measured rule (serve's default) switches between k = 0..K drafts from step to step (it
// measures every k first): the ids still equal plain decoding's.
TEST_P(SpeculativeTest, GreedyIdsStayExactWhileTheDraftCountChanges) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 2; ++i) {
    GenerationRequest r;
    r.prompt = prompt_of(GetParam(), i);
    r.sampling.temperature = 0.0f;
    r.max_tokens = 40 + 3 * i;
    reqs.push_back(r);
  }
  const auto plain = run(m, reqs, 0);
  EngineStats st;
  EXPECT_EQ(run(m, reqs, 3, &st, {}, false), plain);
  EXPECT_GT(st.spec_drafts, 0u);
  // Steps of 1 and 2 drafts ran besides those of 3.
  EXPECT_LT(st.spec_draft_tokens, st.spec_drafts * 3u);
  EXPECT_GT(st.spec_draft_tokens, st.spec_drafts);
}

// EngineOptions::spec_retire_drafts: a head that is never right (the random heads of the
// fixtures accept nothing) stops speculation once that many drafts were verified, and nothing
// is drafted after it (at most one step in flight); a trained head (the demo model) keeps
// speculating. The ids equal plain decoding's either way.
TEST_P(SpeculativeTest, AHeadThatIsNeverRightRetires) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  const std::vector<GenerationRequest> reqs = greedy_requests(GetParam(), 2, 60);
  const auto plain = run(m, reqs, 0);
  EngineOptions o;
  o.limits = {2, 64, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 3;
  o.spec_retire_drafts = 24;
  Engine engine(cpu(m, 2, 64), o);
  EXPECT_EQ(nemotron::testing::generate_together(engine, reqs), plain);
  const EngineStats st = engine.stats();
  EXPECT_GT(st.spec_drafts, 0u);
  if (GetParam() == "demo") {
    EXPECT_FALSE(st.spec_retired);
    EXPECT_GT(st.spec_accepted_tokens * 2, st.spec_draft_tokens);
  } else {
    EXPECT_EQ(st.spec_accepted_tokens, 0u);
    EXPECT_TRUE(st.spec_retired);
    EXPECT_GE(st.spec_draft_tokens, 24u);
    EXPECT_LE(st.spec_draft_tokens, 24u + 2 * 2 * 3);  // the step that crossed it, one in flight
  }
}

// A step budget too small for every decoding sequence's K + 1 rows: the step verifies fewer
// drafts (1 while 4 sequences decode: 4 x 2 rows = 8) so that every sequence still decodes in
// it, and none while prompts wait for half the budget (drafts never starve a prompt).
TEST_P(SpeculativeTest, DraftsShrinkToTheStepBudget) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r;
    const auto p = prompt_of(GetParam(), i);
    r.prompt.assign(p.begin(), p.begin() + 2);  // prefilled in the step that admits them
    r.sampling.temperature = 0.0f;
    r.max_tokens = 16 + i;
    reqs.push_back(r);
  }
  EngineOptions o;
  o.limits = {4, 8, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 3;
  o.speculate_always = true;
  Engine engine(cpu(m, 4, 64), o);
  const auto got = nemotron::testing::generate_together(engine, reqs);
  EngineOptions p = o;
  p.speculative_tokens = 0;
  p.limits.max_step_tokens = 64;
  Engine plain(cpu(m, 4, 64), p);
  EXPECT_EQ(got, nemotron::testing::generate_together(plain, reqs));
  const EngineStats st = engine.stats();
  EXPECT_GT(st.spec_drafts, 0u);
  // While all four decode, a verify carries one draft (fewer sequences decoding: up to 3).
  EXPECT_LT(st.spec_draft_tokens, st.spec_drafts * 2u);
}

// A 2-token prompt decodes beside a 40-token one, 8 tokens per step. By default the drafts
// take up to half of what the decode leaves; with drafts_after_prompts the prompt takes all of
// it while it lasts (no drafts until its last chunk), so it is in after fewer steps. Greedy ids
// equal plain decoding either way.
TEST_P(SpeculativeTest, DraftsAfterPromptsLeaveTheBudgetToPendingPrompts) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  std::vector<GenerationRequest> reqs(2);
  const auto p0 = prompt_of(GetParam(), 0), p1 = prompt_of(GetParam(), 1);
  reqs[0].prompt.assign(p0.begin(), p0.begin() + 2);
  for (std::size_t i = 0; reqs[1].prompt.size() < 40; ++i) reqs[1].prompt.push_back(p1[i % p1.size()]);
  for (auto& r : reqs) {
    r.sampling.temperature = 0.0f;
    r.max_tokens = 12;
  }
  EngineOptions plain;
  plain.limits = {2, 8, 1 << 16};
  plain.max_model_len = 4096;
  Engine reference(cpu(m, 2, 64), plain);
  const auto want = nemotron::testing::generate_together(reference, reqs);
  int prompt_steps[2] = {0, 0};
  for (const bool after : {false, true}) {
    EngineOptions o = plain;
    o.speculative_tokens = 3;
    o.speculate_always = true;
    o.drafts_after_prompts = after;
    // A directory of its own: ctest runs the three models' cases at once, in separate processes.
    const nemotron::testing::TempDir dir;
    o.step_log = dir.sub("drafts-after-prompts-" + std::to_string(after) + ".csv");
    {
      Engine engine(cpu(m, 2, 64), o);
      EXPECT_EQ(nemotron::testing::submit_together(engine, reqs), want) << "after " << after;
    }
    const auto rows = nemotron::testing::read_step_log(o.step_log).rows;
    ASSERT_FALSE(rows.empty());
    std::size_t last_prompt = 0;
    for (std::size_t i = 0; i < rows.size(); ++i)
      if (rows[i].prompt_rows > 0) {
        ++prompt_steps[after];
        last_prompt = i;
      }
    long long drafts_beside_prompt = 0;
    for (std::size_t i = 0; i < last_prompt; ++i)
      if (rows[i].prompt_rows > 0) drafts_beside_prompt += rows[i].drafts;
    if (after) EXPECT_EQ(drafts_beside_prompt, 0);
    else EXPECT_GT(drafts_beside_prompt, 0);
  }
  EXPECT_LT(prompt_steps[1], prompt_steps[0]);
}

// bench --spec-accept: acceptance drawn at the given rates instead of compared. Rate 0 keeps
// no draft (the ids of plain decoding); rate 1 keeps every draft (K + 1 tokens per verify) and
// each verify's last token is still the target's draw after the emitted tokens (the states
// follow the emitted sequence): at least one position per verify step is the reference's
// greedy choice. A rate outside [0, 1] and a constrained request are refused.
TEST_P(SpeculativeTest, ForcedAcceptanceFollowsTheRatesAndTheEmittedSequence) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  const int64_t V = m.config.vocab_size;
  GenerationRequest r;
  r.prompt = prompt_of(GetParam(), 1);
  r.sampling.temperature = 0.0f;
  r.max_tokens = 31;
  const auto plain = run(m, {r}, 0);
  EngineStats st;
  EXPECT_EQ(run(m, {r}, 3, &st, {0.0}), plain);
  EXPECT_GT(st.spec_drafts, 0u);
  EXPECT_EQ(st.spec_accepted_tokens, 0u);
  const auto all = run(m, {r}, 3, &st, {1.0})[0];
  ASSERT_EQ(all.size(), 31u);
  EXPECT_EQ(st.spec_accepted_tokens, st.spec_draft_tokens);
  EXPECT_EQ(st.spec_accepted_per_pos, std::vector<uint64_t>(3, st.spec_drafts));
  EXPECT_LE(st.spec_drafts, 31u / 4 + 1);
  std::vector<int32_t> ctx = r.prompt;
  ctx.insert(ctx.end(), all.begin(), all.end() - 1);
  const model::CpuModel ref(m);
  auto state = ref.new_state();
  const auto logits = ref.forward(state, ctx.data(), static_cast<int64_t>(ctx.size()), true).logits;
  uint64_t draws = 0;
  for (std::size_t p = 0; p < all.size(); ++p) {
    const float* row = logits.data() + (r.prompt.size() - 1 + p) * static_cast<std::size_t>(V);
    draws += model::argmax(row, V) == all[p];
  }
  EXPECT_GE(draws, st.spec_drafts);
  // Rates per position: position 0 always kept, position 1 never.
  run(m, {r}, 3, &st, {1.0, 0.0});
  EXPECT_EQ(st.spec_accepted_per_pos[0], st.spec_drafts);
  EXPECT_EQ(st.spec_accepted_per_pos[1], 0u);
  EngineOptions o;
  o.speculative_tokens = 3;
  o.spec_accept_rates = {0.5, 1.5};
  EXPECT_THROW(Engine(cpu(m, 1), o), Error);
}

TEST_P(SpeculativeTest, SeededSamplingEqualsPlainTokenForToken) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    r.prompt = prompt_of(GetParam(), i);
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.top_k = 50;
    r.sampling.seed = 77u + static_cast<uint64_t>(i);
    if (i == 1) {
      r.sampling.repetition_penalty = 1.2f;
      r.sampling.presence_penalty = 0.4f;
      r.sampling.frequency_penalty = 0.3f;
    }
    if (i == 2) r.sampling.min_p = 0.05f;
    r.max_tokens = 24;
    reqs.push_back(r);
  }
  const auto plain = run(m, reqs, 0);
  for (int K : {1, 3}) EXPECT_EQ(run(m, reqs, K), plain) << "K = " << K;
}

TEST_P(SpeculativeTest, StopIdInsideAVerifyEndsThere) {
  const model::Model m = model::Model::load(model_path(GetParam()));
  GenerationRequest r;
  r.prompt = prompt_of(GetParam(), 1);
  r.sampling.temperature = 0.0f;
  r.max_tokens = 30;
  const auto plain = run(m, {r}, 0)[0];
  ASSERT_EQ(plain.size(), 30u);
  // Stop at the 7th token: every K must end exactly there.
  r.stop_token_ids = {plain[6]};
  const auto first = std::find(plain.begin(), plain.end(), plain[6]) - plain.begin();
  for (int K = 0; K <= 3; ++K) {
    const auto got = run(m, {r}, K)[0];
    EXPECT_EQ(got, std::vector<int32_t>(plain.begin(), plain.begin() + first + 1)) << "K = " << K;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SpeculativeTest, ::testing::Values("super-latent-mtp", "super-mixed-mtp", "demo"),
                         nemotron::testing::FixtureParamName());

// The third token of many seeded requests with K = 2 on the demo model (drawn in a verify, in a row after an
// accepted draft or in the first row of the next verify), among the requests whose first two
// tokens were the most frequent pair, against the target distribution after that pair
// (sampling_distribution_cpu on the reference's logits): chi-square over the tokens with
// expected count >= 5, the rest pooled.
TEST(Speculative, DrawsFollowTheTargetDistribution) {
  // The demo model: its trained MTP head has its drafts accepted (random fixture heads never).
  const model::Model m = model::Model::load(model_path("demo"));
  const int64_t V = m.config.vocab_size;
  const auto prompt = prompt_of("demo", 0);
  kernels::SamplingParams p;
  p.temperature = 1.3f;
  const int N = 1200;
  std::vector<std::vector<int32_t>> runs;
  uint64_t accepted = 0;
  for (int b = 0; b < N; b += 32) {
    std::vector<GenerationRequest> reqs;
    for (int i = b; i < std::min(N, b + 32); ++i) {
      GenerationRequest r;
      r.prompt = prompt;
      r.sampling = p;
      r.sampling.seed = 1000u + static_cast<uint64_t>(i);
      r.max_tokens = 3;
      reqs.push_back(r);
    }
    EngineStats st;
    for (auto& ids : run(m, reqs, 2, &st)) runs.push_back(std::move(ids));
    accepted += st.spec_accepted_tokens;
  }
  EXPECT_GT(accepted, 0u) << "no draft was accepted: the test would not cover accepted rows";
  std::map<std::pair<int32_t, int32_t>, int> pairs;
  for (const auto& r : runs) pairs[{r.at(0), r.at(1)}]++;
  const auto mode = std::max_element(pairs.begin(), pairs.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; })->first;
  std::vector<int> counts(static_cast<std::size_t>(V), 0);
  int n = 0;
  for (const auto& r : runs)
    if (r[0] == mode.first && r[1] == mode.second) {
      counts[static_cast<std::size_t>(r[2])]++;
      ++n;
    }
  ASSERT_GE(n, 150) << "the most frequent pair of first tokens is too rare for the test";
  std::vector<int32_t> ctx = prompt;
  ctx.push_back(mode.first);
  ctx.push_back(mode.second);
  const model::CpuModel ref(m);
  auto st = ref.new_state();
  const auto logits = ref.forward(st, ctx.data(), static_cast<int64_t>(ctx.size()), false).logits;
  const auto dist = kernels::sampling_distribution_cpu(logits.data(), V, p, nullptr);
  double chi2 = 0, pooled_e = 0, pooled_o = 0;
  int dof = -1;
  for (int64_t t = 0; t < V; ++t) {
    const double e = dist[static_cast<std::size_t>(t)] * n;
    if (e >= 5) {
      chi2 += (counts[t] - e) * (counts[t] - e) / e;
      ++dof;
    } else {
      pooled_e += e;
      pooled_o += counts[t];
    }
  }
  if (pooled_e >= 5) {
    chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
    ++dof;
  } else {
    EXPECT_LE(pooled_o, 12) << "tokens the target gives almost no mass were drawn";
  }
  ASSERT_GE(dof, 1);
  // About a 1e-6 tail: the mean dof plus 5 standard deviations sqrt(2 dof), plus a margin for
  // small dof.
  const double bound = dof + 5.0 * std::sqrt(2.0 * dof) + 12;
  std::printf("third token after the pair (%d, %d): %d draws, chi-square %.1f, %d dof (bound %.1f)\n", mode.first,
              mode.second, n, chi2, dof, bound);
  EXPECT_LT(chi2, bound);
}

// The engine does not explore in steps with prompt rows: a sequence that decodes while
// another's long prompt is prefilled (every step mixed, none measured) decodes plainly
// instead of verifying the unmeasured K in every step. Tokens as plain decoding.
TEST(Speculative, StepsWithPromptsDoNotExploreDrafts) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  GenerationRequest a, b;
  a.prompt = {5, 6, 7};
  for (int t = 0; t < 400; ++t) b.prompt.push_back(5 + (t * 7) % 40);
  a.max_tokens = 30;
  b.max_tokens = 4;
  a.sampling.temperature = b.sampling.temperature = 0.0f;
  const auto plain = run(m, {a, b}, 0);
  EngineOptions o;
  o.limits = {2, 16, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 2;
  const nemotron::testing::TempDir dir;
  o.step_log = dir.sub("mixed-steps-explore.csv");
  {
    Engine engine(cpu(m, 2, 64), o);
    nemotron::testing::Collector ca, cb;
    // b first: a's decodes run beside b's 400 prompt tokens (25+ steps) even if a arrives a
    // few steps late.
    engine.submit(b, cb.sink());
    engine.submit(a, ca.sink());
    ASSERT_TRUE(ca.wait());
    ASSERT_TRUE(cb.wait());
    EXPECT_EQ(ca.tokens(), plain[0]);
    EXPECT_EQ(cb.tokens(), plain[1]);
  }
  const auto log = nemotron::testing::read_step_log(o.step_log);
  int mixed = 0;
  for (const auto& r : log.rows)
    if (r.prompt_rows > 0 && r.decode_rows > 0) {
      ++mixed;
      EXPECT_EQ(r.drafts, 0) << "step " << r.step;
    }
  EXPECT_GE(mixed, 8);  // b's prompt beside a's decodes
}

// A CPU backend that reports the limits of a backend with bounded roll-back and snapshot room
// (as the CUDA backend's keep_limits / snapshot_capacity) and checks that the engine keeps to
// them: at most `chunks` keep_states chunks of at most `rows` rows in a step.
class LimitedBackend final : public model::Backend {
 public:
  LimitedBackend(std::unique_ptr<model::Backend> b, model::KeepLimits k, int64_t capacity)
      : b_(std::move(b)), k_(k), capacity_(capacity) {}
  const model::Model& model() const override { return b_->model(); }
  const char* device() const override { return "limited"; }
  int slots() const override { return b_->slots(); }
  int acquire_slot() override { return b_->acquire_slot(); }
  void release_slot(int slot) override { b_->release_slot(slot); }
  int64_t position(int slot) const override { return b_->position(slot); }
  void begin_step(const std::vector<model::StepChunk>& chunks) override {
    int64_t keeps = 0;
    for (const auto& c : chunks) {
      keeps += c.keep_states;
      if (c.keep_states && c.T > k_.rows) throw Error("a keep_states chunk of " + std::to_string(c.T) + " rows");
    }
    if (keeps > k_.chunks) throw Error(std::to_string(keeps) + " keep_states chunks in one step");
    max_keeps = std::max(max_keeps, keeps);
    b_->begin_step(chunks);
  }
  std::vector<model::StepOutput> finish_step() override { return b_->finish_step(); }
  std::vector<float> last_hidden() const override { return b_->last_hidden(); }
  bool can_roll_back() const override { return true; }
  model::KeepLimits keep_limits() const override { return k_; }
  void roll_back(int slot, int64_t pos) override { b_->roll_back(slot, pos); }
  void mtp_roll_back(int slot, int64_t pos) override { b_->mtp_roll_back(slot, pos); }
  bool can_snapshot() const override { return true; }
  int64_t snapshot_bytes(int64_t pos) const override { return b_->snapshot_bytes(pos); }
  int64_t snapshot_capacity() const override { return capacity_; }
  void save_snapshot(int slot, uint64_t id) override { b_->save_snapshot(slot, id); }
  void load_snapshot(uint64_t id, int slot) override {
    if (break_next_load) bad_snapshots.insert(id);
    break_next_load = false;
    if (bad_snapshots.count(id)) throw Error("snapshot " + std::to_string(id) + " cannot be loaded");
    b_->load_snapshot(id, slot);
  }
  void drop_snapshot(uint64_t id) override { b_->drop_snapshot(id); }
  std::vector<uint8_t> export_snapshot(uint64_t id) const override { return b_->export_snapshot(id); }
  void import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) override { b_->import_snapshot(id, bytes); }
  void observe_prompt(int slot, const int32_t* ids, int64_t n) override { b_->observe_prompt(slot, ids, n); }
  std::vector<float> mtp_forward(int slot, const int32_t* ids, const float* hidden, int64_t T, bool all) override {
    if (T > mtp_rows_limit) throw Error("MTP head: " + std::to_string(T) + " rows exceed " + std::to_string(mtp_rows_limit));
    return b_->mtp_forward(slot, ids, hidden, T, all);
  }
  int64_t mtp_position(int slot) const override { return b_->mtp_position(slot); }
  // Batched drafting and feeding, counted; then Backend's one-at-a-time path (through this
  // wrapper's mtp_forward and its limit).
  std::vector<std::vector<int32_t>> mtp_draft(const std::vector<DraftInput>& in, int K) override {
    // The head follows its trunk: its pending pairs take it to the trunk's position.
    for (const auto& i : in) head_lag = std::max(head_lag, std::abs(b_->position(i.slot) - b_->mtp_position(i.slot) - i.T));
    ++draft_calls;
    max_draft_inputs = std::max(max_draft_inputs, static_cast<int64_t>(in.size()));
    return Backend::mtp_draft(in, K);
  }
  void mtp_feed(const std::vector<DraftInput>& in) override {
    // A feed leaves the last pair pending (the next draft starts from it): one short of the trunk.
    for (const auto& i : in)
      head_lag = std::max(head_lag, std::abs(b_->position(i.slot) - 1 - b_->mtp_position(i.slot) - i.T));
    ++feed_calls;
    max_feed_inputs = std::max(max_feed_inputs, static_cast<int64_t>(in.size()));
    int64_t rows = 0;
    for (const auto& i : in) rows += i.T;
    max_feed_rows = std::max(max_feed_rows, rows);
    Backend::mtp_feed(in);
  }
  void record_routing(bool on) override { b_->record_routing(on); }
  std::vector<std::vector<int32_t>> routing() const override { return b_->routing(); }

  int64_t max_keeps = 0;  // the most keep_states chunks the engine put in one step
  int64_t mtp_rows_limit = INT64_MAX;  // mtp_forward throws above this many rows
  bool break_next_load = false;        // the next snapshot loaded is broken: loading it always throws
  std::set<uint64_t> bad_snapshots;
  int64_t draft_calls = 0, max_draft_inputs = 0, feed_calls = 0, max_feed_inputs = 0, max_feed_rows = 0;
  int64_t head_lag = 0;  // the most an MTP head's position (with its pending pairs) missed its trunk's

 private:
  std::unique_ptr<model::Backend> b_;
  model::KeepLimits k_;
  int64_t capacity_;
};

// The prefix-cache tests with speculation: two slots, K = 2, a snapshot at every 16th prompt
// token (and at none closer than that gap to the last: 0), room for every snapshot.
constexpr int64_t kCacheBytes = int64_t{1} << 28;
EngineOptions cached_speculation(bool always) {
  EngineOptions o;
  o.limits = {2, 64, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 2;
  o.speculate_always = always;
  o.prefix_cache_bytes = kCacheBytes;
  o.prefix_snapshot_interval = 16;
  o.prefix_snapshot_min_gap = 0;
  return o;
}
std::unique_ptr<LimitedBackend> cached_backend(const model::Model& m) {
  return std::make_unique<LimitedBackend>(cpu(m, 2, 64), model::KeepLimits{2, 3}, kCacheBytes);
}
// A greedy request with a 40-token prompt.
GenerationRequest forty_token_request(int max_tokens) {
  GenerationRequest r;
  for (int t = 0; t < 40; ++t) r.prompt.push_back(5 + (t * 11) % 40);
  r.sampling.temperature = 0.0f;
  r.max_tokens = max_tokens;
  return r;
}

// The engine verifies no more sequences per step than the backend keeps (the others decode
// plainly in the same step, with the same tokens), refuses K + 1 above the rows it keeps,
// defaults to fewer drafts when it keeps fewer rows, and caps the prefix cache's budget at
// the backend's snapshot capacity.
TEST(Speculative, EngineKeepsToTheBackendsRoom) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  const std::vector<GenerationRequest> reqs = greedy_requests("super-latent-mtp", 3, 15);
  const auto plain = run(m, reqs, 0);
  EngineOptions o;
  o.limits = {3, 64, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 2;
  o.speculate_always = true;
  o.prefix_cache_bytes = int64_t{1} << 30;
  auto limited = std::make_unique<LimitedBackend>(cpu(m, 3, 64), model::KeepLimits{1, 3}, 12345);
  LimitedBackend* seen = limited.get();
  Engine engine(std::move(limited), o);
  EXPECT_EQ(nemotron::testing::generate_together(engine, reqs), plain);
  EXPECT_EQ(seen->max_keeps, 1);
  EXPECT_EQ(seen->head_lag, 0);  // the prefix cache on: resumed heads stand with their trunks
  EXPECT_GT(engine.stats().spec_drafts, 0u);
  EXPECT_EQ(engine.stats().prefix_cache.budget, 12345);
  // K + 1 above the rows kept: refused; the default K follows the rows kept.
  o.speculative_tokens = 3;
  try {
    Engine e(std::make_unique<LimitedBackend>(cpu(m, 3, 64), model::KeepLimits{1, 3}, 0), o);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("--speculative-tokens 3"));
  }
  EXPECT_EQ(default_speculative_tokens(LimitedBackend(cpu(m, 1), model::KeepLimits{1, 3}, 0)), 2);
  EXPECT_EQ(default_speculative_tokens(LimitedBackend(cpu(m, 1), model::KeepLimits{8, 17}, 0)), 3);
}

// The engine drafts every verifying sequence of a step in one mtp_draft call and feeds the
// heads whose inputs piled up (here: 70-token prompts' prefill rows) through mtp_feed; the
// tokens are those of plain decoding.
TEST(Speculative, DraftsAndFeedsAreBatchedPerStep) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    for (int t = 0; t < 70; ++t) r.prompt.push_back(5 + (t * 7 + i * 13) % 40);
    r.sampling.temperature = 0.0f;
    r.max_tokens = 9;
    reqs.push_back(r);
  }
  const auto plain = run(m, reqs, 0);
  EngineOptions o;
  o.limits = {3, 256, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 2;
  o.speculate_always = true;
  auto limited = std::make_unique<LimitedBackend>(cpu(m, 3, 256), model::KeepLimits{3, 3}, 0);
  LimitedBackend* seen = limited.get();
  Engine engine(std::move(limited), o);
  EXPECT_EQ(nemotron::testing::generate_together(engine, reqs), plain);
  EXPECT_GT(seen->draft_calls, 0);
  EXPECT_GE(seen->max_draft_inputs, 2);  // sequences that decode together draft together
  EXPECT_GT(seen->feed_calls, 0);  // the prefilled prompts' rows (how many per call: arrival order)
  EXPECT_EQ(seen->head_lag, 0);
  std::printf("[ batched ] %lld draft calls (at most %lld sequences), %lld feed calls (at most %lld)\n",
              static_cast<long long>(seen->draft_calls), static_cast<long long>(seen->max_draft_inputs),
              static_cast<long long>(seen->feed_calls), static_cast<long long>(seen->max_feed_inputs));
}

// While speculation pauses (here: a step budget of one token per sequence leaves no room for
// drafts) the decodes pile up inputs for the MTP head; sequences that started together reach
// the feeding size in the same step, and their piles are fed over several steps (the largest
// first, about twice the step's rows per step), not all in one. Tokens as plain decoding.
TEST(Speculative, PausedSpeculationFeedsThePilesSpreadOverSteps) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    GenerationRequest r;
    r.prompt = {5 + i, 6, 7};
    r.sampling.temperature = 0.0f;
    r.max_tokens = 100;
    reqs.push_back(r);
  }
  const auto plain = run(m, reqs, 0);
  EngineOptions o;
  o.limits = {8, 8, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 2;
  auto limited = std::make_unique<LimitedBackend>(cpu(m, 8, 64), model::KeepLimits{8, 3}, 0);
  LimitedBackend* seen = limited.get();
  Engine engine(std::move(limited), o);
  EXPECT_EQ(nemotron::testing::generate_together(engine, reqs), plain);
  EXPECT_GE(seen->feed_calls, 6);  // each of 8 sequences' ~100 rows, 31+ per feed
  EXPECT_LE(seen->max_feed_inputs, 3);
  EXPECT_LE(seen->max_feed_rows, 96);
  EXPECT_EQ(seen->head_lag, 0);
}

// The MTP head resumes from the prefix cache where its trunk does: a snapshot holds the head
// fed up to the point's last pair, and the resumed sequence's pending pairs start with that
// pair (the point's last hidden row, kept with the snapshot). Before, a snapshot held the head
// where its last feed had left it (the chunk ending at the point not yet fed), and every
// resumed sequence drafted with those positions missing. Checked at every draft and feed;
// outputs as plain decoding.
TEST(Speculative, TheHeadResumesFromTheCacheWithItsTrunk) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  const GenerationRequest r1 = forty_token_request(8);
  for (const bool always : {true, false}) {
    auto limited = cached_backend(m);
    LimitedBackend* seen = limited.get();
    Engine engine(std::move(limited), cached_speculation(always));
    const auto first = nemotron::testing::generate_together(engine, {r1})[0];
    // The next turn: prompt + reply + more (resumes at the reply's end); a prompt diverging
    // after 36 tokens (resumes at 32, a chunk's end); the same prompt again (its point before
    // the last token is not cached: 32).
    GenerationRequest r2 = r1, r3 = r1, r4 = r1;
    r2.prompt.insert(r2.prompt.end(), first.begin(), first.end());
    for (int t = 0; t < 9; ++t) r2.prompt.push_back(7 + t);
    r3.prompt.resize(36);
    for (int t = 0; t < 6; ++t) r3.prompt.push_back(30 - t);
    for (const auto& r : {r2, r3, r4}) {
      const auto want = run(m, {r}, 0)[0];
      EXPECT_EQ(nemotron::testing::generate_together(engine, {r})[0], want) << "always " << always;
    }
    EXPECT_GT(engine.stats().prefix_cache.hit_tokens, 0u);
    EXPECT_GT(seen->draft_calls + seen->feed_calls, 0);
    EXPECT_EQ(seen->head_lag, 0) << "always " << always;
  }
}

// The head rows go to --prefix-cache-dir with the snapshots: after a restart a resumed head
// still stands with its trunk. A file of the format before the row ("NMTPFX01") still loads
// (its resumed heads miss one position).
TEST(Speculative, TheHeadRowsSurviveARestart) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  nemotron::testing::TempDir tmp;
  const GenerationRequest r1 = forty_token_request(8);
  EngineOptions o = cached_speculation(true);
  o.prefix_cache_dir = tmp.sub("prefixes");
  GenerationRequest r2 = r1;
  {
    Engine first(cpu(m, 2, 64), o);
    const auto out = nemotron::testing::generate_together(first, {r1})[0];
    r2.prompt.insert(r2.prompt.end(), out.begin(), out.end());
    for (int t = 0; t < 5; ++t) r2.prompt.push_back(9 + t);
  }  // stops: writes the prefixes with their head rows
  const auto want = run(m, {r2}, 0)[0];
  for (const bool old_format : {false, true}) {
    if (old_format) {  // every file rewritten as the format before the row
      for (const auto& f : std::filesystem::directory_iterator(o.prefix_cache_dir)) {
        std::ifstream in(f.path(), std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        in.close();
        int64_t n = 0, snap = 0;
        std::memcpy(&n, bytes.data() + 16, 8);
        const std::size_t at = 24 + 4 * static_cast<std::size_t>(n);
        std::memcpy(&snap, bytes.data() + at, 8);
        bytes.resize(at + 8 + static_cast<std::size_t>(snap));  // up to the snapshot's end
        bytes[7] = '1';
        std::ofstream(f.path(), std::ios::binary | std::ios::trunc) << bytes;
      }
    }
    auto limited = cached_backend(m);
    LimitedBackend* seen = limited.get();
    Engine second(std::move(limited), o);
    EXPECT_EQ(nemotron::testing::generate_together(second, {r2})[0], want) << "old " << old_format;
    EXPECT_GT(second.stats().prefix_cache.hit_tokens, 0u) << "old " << old_format;
    EXPECT_EQ(seen->head_lag, old_format ? 1 : 0);
  }
}

// A backend error in the work after a step (here the MTP head's forward of a long prompt's
// pending rows, as the CUDA backend's 64-row limit once threw) ends that sequence with an error;
// the engine thread lives on: the other request of the step and a later one complete.
TEST(Speculative, ABackendErrorAfterAStepEndsOneSequenceNotTheEngine) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  EngineOptions o;
  o.limits = {2, 64, 1 << 16};
  o.max_model_len = 4096;
  o.speculative_tokens = 2;
  o.speculate_always = true;
  auto limited = std::make_unique<LimitedBackend>(cpu(m, 2, 64), model::KeepLimits{2, 3}, 0);
  limited->mtp_rows_limit = 8;
  Engine engine(std::move(limited), o);
  GenerationRequest longp, shortp;
  for (int i = 0; i < 70; ++i) longp.prompt.push_back(5 + i % 40);  // 64+ pending MTP rows after its prefill
  shortp.prompt = {5, 6, 7};
  longp.max_tokens = shortp.max_tokens = 4;
  longp.sampling.temperature = shortp.sampling.temperature = 0.0f;
  std::string long_error;
  std::vector<int32_t> short_out;
  std::thread a([&] {
    try {
      generate_blocking(engine, longp);
    } catch (const Error& e) {
      long_error = e.what();
    }
  });
  std::thread b([&] {
    for (const auto& e : generate_blocking(engine, shortp))
      if (e.event.token >= 0) short_out.push_back(e.event.token);
  });
  a.join();
  b.join();
  EXPECT_THAT(long_error, ::testing::HasSubstr("rows exceed 8"));
  EXPECT_EQ(short_out.size(), 4u);
  int later = 0;
  for (const auto& e : generate_blocking(engine, shortp)) later += e.event.token >= 0;
  EXPECT_EQ(later, 4);
}

// A backend error while a snapshot is taken (here the MTP head's feed before it) ends that
// request and registers nothing: a later request with the prompt resumes from what was saved
// (or prefills) and equals plain decoding, instead of resuming from an entry without a snapshot.
// One that cannot be loaded is removed the same way.
TEST(Speculative, ASnapshotThatFailsLeavesNoEntry) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  auto limited = cached_backend(m);
  LimitedBackend* seen = limited.get();
  seen->mtp_rows_limit = 8;  // the head's feed of a 16-token chunk throws
  Engine engine(std::move(limited), cached_speculation(true));
  const GenerationRequest r = forty_token_request(6);
  nemotron::testing::Collector failed;
  engine.submit(r, failed.sink());
  ASSERT_TRUE(failed.wait());
  EXPECT_EQ(failed.reason(), FinishReason::Error);
  seen->mtp_rows_limit = INT64_MAX;
  const auto want = run(m, {r}, 0)[0];
  EXPECT_EQ(nemotron::testing::submit_together(engine, {r})[0], want);
  // A snapshot that cannot be loaded fails its request and leaves the index: the next request
  // resumes from a shorter entry (else it would fail on the same snapshot, and every later one).
  seen->break_next_load = true;
  nemotron::testing::Collector unloadable;
  engine.submit(r, unloadable.sink());
  ASSERT_TRUE(unloadable.wait());
  EXPECT_EQ(unloadable.reason(), FinishReason::Error);
  nemotron::testing::Collector again;
  engine.submit(r, again.sink());
  ASSERT_TRUE(again.wait());
  EXPECT_EQ(again.tokens(), want);
  EXPECT_GT(again.cached_tokens(), 0);
}

TEST(Speculative, RefusedWithoutAnMtpHead) {
  const model::Model m = model::Model::load(fixture_dir("nano-moe"));
  EngineOptions o;
  o.limits = {1, 64, 4096};
  o.speculative_tokens = 2;
  try {
    Engine e(cpu(m, 1), o);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("no MTP head"));
  }
  EXPECT_EQ(default_speculative_tokens(*cpu(m, 1)), 0);
  const model::Model mtp = model::Model::load(fixture_dir("super-latent-mtp"));
  EXPECT_EQ(default_speculative_tokens(*cpu(mtp, 1)), 3);
}

}  // namespace
