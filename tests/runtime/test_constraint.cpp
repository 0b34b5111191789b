// Constrained decoding in the engine (runtime/constraint.h) on the CPU backend, with toy
// constraints (the grammar-backed ones are tested with the text layer): every drawn token is
// allowed, greedy picks the best allowed token (the reference: the model's logits masked), a
// literal forces its exact tokens and then the end, outputs are the same with speculative
// decoding on (verify rows get the masks after their drafts), and a constraint that allows
// nothing fails the request with a message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "fixture_util.h"
#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "runtime/engine.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::runtime;
using nemotron::testing::fixture_dir;

namespace {

// Allows the tokens of `set`; records what it accepted.
class SetConstraint : public TokenConstraint {
 public:
  SetConstraint(int64_t V, std::vector<int32_t> set) : V_(V), set_(std::move(set)) {}
  void fill_mask(uint32_t* bits) override {
    std::fill(bits, bits + (V_ + 31) / 32, 0u);
    for (int32_t t : set_) bits[t / 32] |= 1u << (t % 32);
  }
  bool accept(int32_t t) override {
    if (std::find(set_.begin(), set_.end(), t) == set_.end()) return false;
    seen_.push_back(t);
    return true;
  }
  void rollback(int n) override { seen_.resize(seen_.size() - static_cast<std::size_t>(n)); }
  std::vector<int32_t> seen_;

 private:
  int64_t V_;
  std::vector<int32_t> set_;
};

// Allows exactly `lit` token by token, then only `end`.
class LiteralConstraint : public TokenConstraint {
 public:
  LiteralConstraint(int64_t V, std::vector<int32_t> lit, int32_t end) : V_(V), lit_(std::move(lit)), end_(end) {}
  void fill_mask(uint32_t* bits) override {
    std::fill(bits, bits + (V_ + 31) / 32, 0u);
    const int32_t t = pos_ < lit_.size() ? lit_[pos_] : end_;
    bits[t / 32] |= 1u << (t % 32);
  }
  bool accept(int32_t t) override {
    const int32_t want = pos_ < lit_.size() ? lit_[pos_] : end_;
    if (t != want) return false;
    ++pos_;
    return true;
  }
  void rollback(int n) override { pos_ -= static_cast<std::size_t>(n); }

 private:
  int64_t V_;
  std::vector<int32_t> lit_;
  int32_t end_;
  std::size_t pos_ = 0;
};

class NothingConstraint : public TokenConstraint {
 public:
  explicit NothingConstraint(int64_t V) : V_(V) {}
  void fill_mask(uint32_t* bits) override { std::fill(bits, bits + (V_ + 31) / 32, 0u); }
  bool accept(int32_t) override { return false; }
  void rollback(int) override {}

 private:
  int64_t V_;
};

class ConstraintTest : public ::testing::Test {
 protected:
  void SetUp() override { m_ = std::make_unique<model::Model>(model::Model::load(fixture_dir("super-latent-mtp"))); }
  std::unique_ptr<Engine> engine(int K = 0) {
    model::BackendOptions b;
    b.device = "cpu";
    b.max_seqs = 2;
    b.max_step_tokens = 64;
    EngineOptions o;
    o.limits = {2, 64, 1 << 14};
    o.max_model_len = 1024;
    o.speculative_tokens = K;
    o.speculate_always = K > 0;
    return std::make_unique<Engine>(model::make_backend(*m_, b), o);
  }
  std::vector<int32_t> run(Engine& e, GenerationRequest r, FinishReason* reason = nullptr, std::string* error = nullptr) {
    std::vector<int32_t> out;
    try {
      for (const auto& ev : generate_blocking(e, std::move(r)))
        if (ev.event.token >= 0) out.push_back(ev.event.token);
      if (reason) *reason = FinishReason::Length;
    } catch (const std::exception& ex) {
      if (reason) *reason = FinishReason::Error;
      if (error) *error = ex.what();
    }
    return out;
  }
  std::unique_ptr<model::Model> m_;
};

TEST_F(ConstraintTest, GreedyDrawsTheBestAllowedToken) {
  const int64_t V = m_->config.vocab_size;
  std::vector<int32_t> set;
  for (int32_t t = 0; t < V; t += 7) set.push_back(t);
  const std::vector<int32_t> prompt{5, 9, 13, 17, 21};
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 10;
  r.sampling.temperature = 0.0f;
  auto c = std::make_shared<SetConstraint>(V, set);
  r.constraint = c;
  auto e = engine();
  const auto out = run(*e, r);
  ASSERT_EQ(out.size(), 10u);
  EXPECT_EQ(c->seen_, out);
  // The reference: the CPU model's logits, disallowed tokens masked, argmax.
  const model::CpuModel cpu(*m_);
  auto st = cpu.new_state();
  std::vector<int32_t> ctx = prompt;
  auto res = cpu.forward(st, ctx.data(), static_cast<int64_t>(ctx.size()), false);
  for (int32_t tok : out) {
    std::vector<float> l = res.logits;
    for (int64_t t = 0; t < V; ++t)
      if (t % 7 != 0) l[static_cast<std::size_t>(t)] = -INFINITY;
    EXPECT_EQ(tok, model::argmax(l.data(), V));
    res = cpu.forward(st, &tok, 1, false);
  }
}

TEST_F(ConstraintTest, SampledTokensAreAllowedAndSpeculationKeepsTheOutput) {
  const int64_t V = m_->config.vocab_size;
  std::vector<int32_t> set;
  for (int32_t t = 3; t < V; t += 11) set.push_back(t);
  GenerationRequest r;
  r.prompt = {1, 2, 3, 4, 5, 6};
  r.max_tokens = 20;
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 3;
  r.constraint = std::make_shared<SetConstraint>(V, set);
  auto plain = engine();
  const auto want = run(*plain, r);
  ASSERT_EQ(want.size(), 20u);
  for (int32_t t : want) EXPECT_EQ((t - 3) % 11, 0) << t;
  r.constraint = std::make_shared<SetConstraint>(V, set);
  auto spec = engine(3);
  EXPECT_EQ(run(*spec, r), want);
  EXPECT_GT(spec->stats().spec_drafts, 0u);
}

// The demo model's trained MTP head gets drafts accepted: the masks of verify rows after
// accepted drafts are then the ones that matter.
TEST(Constraint, DemoModelSpeculationWithAMaskEqualsPlain) {
  const model::Model m = model::Model::load(std::string(NEMOTRON_SOURCE_DIR) + "/models/demo");
  const int64_t V = m.config.vocab_size;
  std::vector<int32_t> set;
  for (int32_t t = 0; t < V; ++t)
    if (t % 5 != 1) set.push_back(t);  // most tokens allowed: drafts are often allowed and kept
  auto make = [&](int K) {
    model::BackendOptions b;
    b.device = "cpu";
    b.max_step_tokens = 64;
    EngineOptions o;
    o.limits = {1, 64, 1 << 14};
    o.max_model_len = 1024;
    o.speculative_tokens = K;
    o.speculate_always = K > 0;
    return std::make_unique<Engine>(model::make_backend(m, b), o);
  };
  auto gen = [&](Engine& e, float temperature) {
    GenerationRequest r;
    r.prompt = {10, 4988, 1010, 11, 1010, 10, 3148, 1010, 7735, 2348, 1333, 1979, 1271, 2676,
                1274, 1034, 3717, 1063, 11, 1010, 10, 1314, 1509, 1582, 1010, 12, 1010};
    r.max_tokens = 40;
    r.sampling.temperature = temperature;
    r.sampling.seed = 11;
    r.constraint = std::make_shared<SetConstraint>(V, set);
    std::vector<int32_t> out;
    for (const auto& ev : generate_blocking(e, r))
      if (ev.event.token >= 0) out.push_back(ev.event.token);
    return out;
  };
  for (float temperature : {0.0f, 0.8f}) {
    auto plain = make(0), spec = make(3);
    const auto want = gen(*plain, temperature);
    for (int32_t t : want) EXPECT_NE(t % 5, 1);
    EXPECT_EQ(gen(*spec, temperature), want);
    EXPECT_GT(spec->stats().spec_accepted_tokens, 0u);
  }
}

TEST_F(ConstraintTest, ALiteralIsForcedThenTheEnd) {
  const int64_t V = m_->config.vocab_size;
  const std::vector<int32_t> lit{100, 7, 7, 250, 3};
  const int32_t end = 2;
  for (int K : {0, 2}) {
    GenerationRequest r;
    r.prompt = {9, 8, 7};
    r.max_tokens = 50;
    r.sampling.temperature = 0.8f;
    r.stop_token_ids = {end};
    r.constraint = std::make_shared<LiteralConstraint>(V, lit, end);
    auto e = engine(K);
    std::vector<int32_t> want = lit;
    want.push_back(end);
    EXPECT_EQ(run(*e, r), want) << "K = " << K;
  }
}

TEST_F(ConstraintTest, AConstraintThatAllowsNothingFailsTheRequest) {
  GenerationRequest r;
  r.prompt = {9, 8, 7};
  r.max_tokens = 5;
  r.constraint = std::make_shared<NothingConstraint>(m_->config.vocab_size);
  auto e = engine();
  FinishReason reason = FinishReason::None;
  std::string error;
  EXPECT_TRUE(run(*e, r, &reason, &error).empty());
  EXPECT_EQ(reason, FinishReason::Error);
  EXPECT_THAT(error, ::testing::HasSubstr("allows no token"));
}

// Allows everything, then throws from its `fail_at`-th mask (a grammar too ambiguous to match).
class ThrowingConstraint : public TokenConstraint {
 public:
  ThrowingConstraint(int64_t V, int fail_at) : V_(V), fail_at_(fail_at) {}
  void fill_mask(uint32_t* bits) override {
    if (++masks_ == fail_at_) throw Error("the grammar is too ambiguous to match (test)");
    std::fill(bits, bits + (V_ + 31) / 32, ~0u);
  }
  bool accept(int32_t) override { return true; }
  void rollback(int) override {}

 private:
  int64_t V_;
  int fail_at_, masks_ = 0;
};

TEST_F(ConstraintTest, AConstraintThatThrowsEndsOnlyItsRequest) {
  GenerationRequest other;
  other.prompt = {4, 6, 8, 10};
  other.max_tokens = 40;
  other.sampling.temperature = 0.0f;
  std::vector<int32_t> alone;
  {
    auto e = engine();
    alone = run(*e, other);
  }
  ASSERT_EQ(alone.size(), 40u);
  GenerationRequest bad;
  bad.prompt = {9, 8, 7};
  bad.max_tokens = 30;
  bad.constraint = std::make_shared<ThrowingConstraint>(m_->config.vocab_size, 4);
  auto e = engine();
  FinishReason reason = FinishReason::None;
  std::string error;
  std::vector<int32_t> bad_out, other_out;
  std::thread t([&] { bad_out = run(*e, bad, &reason, &error); });
  other_out = run(*e, other);
  t.join();
  EXPECT_EQ(reason, FinishReason::Error);
  EXPECT_THAT(error, ::testing::HasSubstr("too ambiguous"));
  EXPECT_EQ(other_out, alone);
}

}  // namespace

namespace {

// Reasoning budget (GenerationRequest::reasoning_budget): after the budget the forced end is
// emitted and the answer follows; the forced tokens count toward max_tokens; with speculation
// on the output is the same.
TEST(ReasoningBudget, TheEndIsForcedAfterTheBudget) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  for (int K : {0, 2}) {
    model::BackendOptions b;
    b.device = "cpu";
    b.max_step_tokens = 64;
    EngineOptions o;
    o.limits = {1, 64, 1 << 14};
    o.max_model_len = 1024;
    o.speculative_tokens = K;
    o.speculate_always = K > 0;
    Engine e(model::make_backend(m, b), o);
    GenerationRequest r;
    r.prompt = {4, 5, 6, 7};
    r.max_tokens = 12;
    r.sampling.temperature = 0.0f;
    r.reasoning = true;
    r.reasoning_budget = 4;
    r.reasoning_end = {301, 302, 303};
    r.reasoning_end_id = 302;
    std::vector<int32_t> out;
    for (const auto& ev : generate_blocking(e, r))
      if (ev.event.token >= 0) out.push_back(ev.event.token);
    ASSERT_EQ(out.size(), 12u) << "K = " << K;
    // 4 reasoning tokens (none of them the end id), then the forced end, then the answer.
    for (int i = 0; i < 4; ++i) EXPECT_NE(out[static_cast<std::size_t>(i)], 302);
    EXPECT_EQ(std::vector<int32_t>(out.begin() + 4, out.begin() + 7), (std::vector<int32_t>{301, 302, 303}));
    // The answer continues from the fed end: the same as a prompt that contains it.
    GenerationRequest plain;
    plain.prompt = {4, 5, 6, 7};
    plain.prompt.insert(plain.prompt.end(), out.begin(), out.begin() + 7);
    plain.max_tokens = 5;
    plain.sampling.temperature = 0.0f;
    std::vector<int32_t> rest;
    for (const auto& ev : generate_blocking(e, plain))
      if (ev.event.token >= 0) rest.push_back(ev.event.token);
    EXPECT_EQ(std::vector<int32_t>(out.begin() + 7, out.end()), rest) << "K = " << K;
  }
}

}  // namespace
