// Tensor and expert parallelism on the CPU backend (ranks as threads) against the unsharded
// backend, on every fixture in tests/data/fixtures (BF16, NVFP4, FP8 / mixed, dense MLP,
// LatentMoE, grouped routing, MTP): one script of steps through the Backend interface --
// prefill chunks and decode tokens of two sequences mixed in a batch, a kept verify chunk
// rolled back, and the MTP head with a chained draft -- gives the same logits (within 1e-5
// of their scale), hidden rows and greedy tokens sharded as unsharded. Sizes that do not
// split are a clear error; expert counts that do not divide split unevenly. Over several
// nodes (model/nodes; one rank per node, the nodes as threads over localhost sockets) the
// script gives bit for bit what the ranks as threads give; snapshots keep every node's share.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "fixture_util.h"
#include "free_port.h"
#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "model/nodes/node_backend.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;
using nemotron::testing::max_abs;
using nemotron::testing::max_abs_diff;

namespace {

std::vector<std::string> all_fixtures() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(std::string(NEMOTRON_TEST_DATA) + "/fixtures"))
    if (std::filesystem::exists(e.path() / "config.json")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// What a script of steps returned: every logits row, hidden row and sampled token, in order.
struct Trace {
  std::vector<std::vector<float>> logits, hidden;
  std::vector<int32_t> tokens;
};

Trace run_script(const Model& m, const std::vector<std::vector<int32_t>>& prompts, const ParallelConfig& par) {
  BackendOptions o;
  o.device = "cpu";
  o.max_seqs = 2;
  o.max_step_tokens = 512;
  o.parallel = par;
  auto b = make_backend(m, o);
  Trace tr;
  auto keep = [&](const std::vector<StepOutput>& out) {
    for (const auto& s : out) {
      tr.logits.push_back(s.logits);
      tr.tokens.push_back(s.sample.token);
    }
    tr.hidden.push_back(b->last_hidden());
  };
  const auto& p0 = prompts[0];
  const auto& p1 = prompts.back();  // the longest second prompt of the fixtures (p0 when alone)
  const int64_t n0 = static_cast<int64_t>(p0.size()), n1 = static_cast<int64_t>(p1.size()), h1 = n1 / 2;
  const int a = b->acquire_slot(), c = b->acquire_slot();
  // Prefill of a, first half of c's prompt.
  auto out = b->step({{.slot = a, .ids = p0.data(), .T = n0, .sample = true, .logits = LogitsOut::All},
                      {.slot = c, .ids = p1.data(), .T = h1, .sample = true, .logits = LogitsOut::All}});
  keep(out);
  std::vector<float> hidden_a = b->last_hidden();  // a's rows come first
  hidden_a.resize(static_cast<std::size_t>(n0 * m.config.hidden_size));
  int32_t ta = out[0].sample.token;
  const int32_t first_a = ta;
  // a decodes while c prefills the rest of its prompt; then both decode, twice.
  out = b->step({{.slot = a, .ids = &ta, .T = 1, .sample = true, .logits = LogitsOut::Last},
                 {.slot = c, .ids = p1.data() + h1, .T = n1 - h1, .sample = true, .logits = LogitsOut::All}});
  keep(out);
  ta = out[0].sample.token;
  int32_t tc = out[1].sample.token;
  for (int i = 0; i < 2; ++i) {
    out = b->step({{.slot = a, .ids = &ta, .T = 1, .sample = true, .logits = LogitsOut::Last},
                   {.slot = c, .ids = &tc, .T = 1, .sample = true, .logits = LogitsOut::Last}});
    keep(out);
    ta = out[0].sample.token;
    tc = out[1].sample.token;
  }
  // A verify chunk of 3 rows kept and rolled back to its first row, then one more decode.
  const int64_t pos = b->position(a);
  const int32_t verify[3] = {ta, p0[0], p0[1 % n0]};
  keep(b->step({{.slot = a, .ids = verify, .T = 3, .sample = true, .sample_rows = 3, .logits = LogitsOut::All,
                 .keep_states = true}}));
  b->roll_back(a, pos + 1);
  keep(b->step({{.slot = a, .ids = &verify[1], .T = 1, .sample = true, .logits = LogitsOut::Last}}));
  if (m.config.has_mtp()) {
    // The MTP head over a's prompt (row i fed token i+1 and trunk hidden i), then a chained draft.
    std::vector<int32_t> next(p0.begin() + 1, p0.end());
    next.push_back(first_a);
    tr.logits.push_back(b->mtp_forward(a, next.data(), hidden_a.data(), n0, true));
    tr.hidden.push_back(b->last_hidden());
    const int32_t draft = argmax(tr.logits.back().data() + (n0 - 1) * m.config.vocab_size, m.config.vocab_size);
    std::vector<float> h = b->last_hidden();
    h.erase(h.begin(), h.end() - m.config.hidden_size);
    tr.logits.push_back(b->mtp_forward(a, &draft, h.data(), 1, false));
    tr.hidden.push_back(b->last_hidden());
    tr.tokens.push_back(draft);
  }
  return tr;
}

// fn() on node 0 of a run over `par.world()` nodes (one rank each) while the other nodes follow
// on threads, each with options of its own (the leader's sizes win: the hello carries them).
// Returns each follower's exit status (FollowerDone; -1: it returned, 99: another error).
std::vector<int> on_nodes(const Model& m, ParallelConfig& par, const std::function<void()>& fn,
                          std::vector<std::string>* errors = nullptr) {
  par.nnodes = par.world();
  par.master_port = nemotron::testing::free_port();
  std::vector<int> status(static_cast<std::size_t>(par.nnodes), 0);
  if (errors) errors->assign(status.size(), "");
  std::vector<std::thread> followers;
  for (int q = 1; q < par.nnodes; ++q)
    followers.emplace_back([&, q] {
      BackendOptions o;
      o.device = "cpu";
      o.max_seqs = 1;  // not the leader's: it adopts node 0's
      o.parallel = par;
      o.parallel.node_rank = q;
      status[q] = -1;
      try {
        make_backend(m, o);
      } catch (const FollowerDone& d) {
        status[q] = d.status;
      } catch (const std::exception& e) {
        status[q] = 99;
        if (errors) (*errors)[q] = e.what();
      }
    });
  try {
    fn();
  } catch (...) {
    for (auto& t : followers) t.join();
    throw;
  }
  for (auto& t : followers) t.join();
  return status;
}

void expect_close(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size()) << what << " " << i;
    const float tol = 1e-5f * std::max(1.0f, max_abs(want[i]));
    EXPECT_LE(max_abs_diff(got[i].data(), want[i].data(), want[i].size()), tol) << what << " " << i;
  }
}

class ParallelForward : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(Model::load(fixture_dir(GetParam())));
    const Expected ex(GetParam());
    for (int i = 0; i < ex.num_prompts(); ++i) prompts_.push_back(ex.ids("p" + std::to_string(i) + ".input_ids"));
    ASSERT_FALSE(prompts_.empty());
    reference_ = run_script(*model_, prompts_, {});
  }
  std::unique_ptr<Model> model_;
  std::vector<std::vector<int32_t>> prompts_;
  Trace reference_;
};

TEST_P(ParallelForward, ShardedStepsEqualUnsharded) {
  const ParallelConfig configs[] = {{2, 1}, {4, 1}, {1, 2}, {1, 4}, {2, 2}, {4, 2}, {2, 4}};
  for (const auto& par : configs) {
    SCOPED_TRACE(par.describe());
    const Trace t = run_script(*model_, prompts_, par);
    expect_close(t.logits, reference_.logits, "logits");
    expect_close(t.hidden, reference_.hidden, "hidden");
    EXPECT_EQ(t.tokens, reference_.tokens);
  }
}

TEST_P(ParallelForward, UnevenExpertSplitsAreCorrectAndUnevenHeadsAnError) {
  // Expert counts that do not divide (16 or 32 experts over 3 ranks) split unevenly.
  const Trace t = run_script(*model_, prompts_, {1, 3});
  expect_close(t.logits, reference_.logits, "EP 3 logits");
  EXPECT_EQ(t.tokens, reference_.tokens);
  // Four query heads over three ranks: a clear error naming the key and sizes.
  BackendOptions o;
  o.parallel = {3, 1};
  try {
    make_backend(*model_, o);
    FAIL() << "TP 3 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_attention_heads (4) is not divisible by --tensor-parallel-size 3"),
              std::string::npos)
        << e.what();
  }
}

TEST_P(ParallelForward, SnapshotsKeepEveryRanksShare) {
  // A prefix snapshot of a sharded backend, exported and imported into another backend of the
  // same sizes, continues exactly as the sequence it was taken from; a backend of other sizes
  // refuses its bytes.
  BackendOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 512;
  o.parallel = {2, 4};
  auto a = make_backend(*model_, o), b = make_backend(*model_, o);
  const auto& p = prompts_[0];
  const int s = a->acquire_slot();
  a->step({{.slot = s, .ids = p.data(), .T = static_cast<int64_t>(p.size())}});
  a->save_snapshot(s, 7);
  const std::vector<uint8_t> bytes = a->export_snapshot(7);
  b->import_snapshot(9, bytes);
  const int t = b->acquire_slot();
  b->load_snapshot(9, t);
  const int32_t next = p[0];
  const auto want = a->step({{.slot = s, .ids = &next, .T = 1, .logits = LogitsOut::Last}});
  const auto got = b->step({{.slot = t, .ids = &next, .T = 1, .logits = LogitsOut::Last}});
  EXPECT_EQ(got[0].logits, want[0].logits);
  o.parallel = {};
  auto whole = make_backend(*model_, o);
  EXPECT_THROW(whole->import_snapshot(1, bytes), Error);
}

TEST_P(ParallelForward, NodesGiveWhatRanksAsThreadsGive) {
  for (ParallelConfig par : {ParallelConfig{2, 1}, ParallelConfig{1, 2}, ParallelConfig{2, 4}}) {
    SCOPED_TRACE(par.describe());
    const Trace want = run_script(*model_, prompts_, par);
    Trace got;
    const auto status = on_nodes(*model_, par, [&] { got = run_script(*model_, prompts_, par); });
    for (std::size_t q = 1; q < status.size(); ++q) EXPECT_EQ(status[q], 0) << "node " << q;
    EXPECT_EQ(got.logits, want.logits);
    EXPECT_EQ(got.hidden, want.hidden);
    EXPECT_EQ(got.tokens, want.tokens);
  }
}

TEST_P(ParallelForward, NodeSnapshotsAndFailedCallsKeepTheNodesInStep) {
  // A snapshot exported on node 0 holds every node's share: dropped and imported again it
  // continues as the sequence it was taken from. Calls that fail (an id outside the vocabulary,
  // bytes of another run) fail on every node alike and leave them in step.
  ParallelConfig par{2, 2};
  on_nodes(*model_, par, [&] {
    BackendOptions o;
    o.max_seqs = 2;
    o.parallel = par;
    auto b = make_backend(*model_, o);
    const auto& p = prompts_[0];
    const int s = b->acquire_slot();
    b->step({{.slot = s, .ids = p.data(), .T = static_cast<int64_t>(p.size())}});
    b->save_snapshot(s, 7);
    const std::vector<uint8_t> bytes = b->export_snapshot(7);
    b->drop_snapshot(7);
    const int32_t bad = static_cast<int32_t>(model_->config.vocab_size);
    EXPECT_THROW(b->step({{.slot = s, .ids = &bad, .T = 1}}), Error);
    std::vector<uint8_t> wrong = bytes;
    wrong.resize(wrong.size() - 1);
    EXPECT_THROW(b->import_snapshot(8, wrong), Error);
    b->import_snapshot(9, bytes);
    const int t = b->acquire_slot();
    b->load_snapshot(9, t);
    const int32_t next = p[0];
    const auto want = b->step({{.slot = s, .ids = &next, .T = 1, .logits = LogitsOut::Last}});
    const auto got = b->step({{.slot = t, .ids = &next, .T = 1, .logits = LogitsOut::Last}});
    EXPECT_EQ(got[0].logits, want[0].logits);
    EXPECT_EQ(b->position(t), b->position(s));
  });
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParallelForward, ::testing::ValuesIn(all_fixtures()),
                         nemotron::testing::FixtureParamName());

TEST(ParallelForward, EveryFixtureIsCovered) { EXPECT_GE(all_fixtures().size(), 5u); }

TEST(ParallelForward, NodesOfAnotherModelOrOtherSizesAreRefused) {
  // The hello names what differs: a follower with another model, or other parallel sizes.
  const Model a = Model::load(fixture_dir("nano-moe")), b = Model::load(fixture_dir("super-latent-mtp"));
  for (int other_model = 1; other_model >= 0; --other_model) {
    ParallelConfig par{2, 1};
    par.nnodes = 2;
    par.master_port = nemotron::testing::free_port();
    std::string follower_error;
    std::thread follower([&] {
      BackendOptions o;
      o.parallel = par;
      o.parallel.node_rank = 1;
      if (!other_model) o.parallel = {1, 2, 2, 1, "127.0.0.1", par.master_port};
      try {
        make_backend(other_model ? b : a, o);
      } catch (const std::exception& e) {
        follower_error = e.what();
      } catch (const FollowerDone&) {
        follower_error = "followed";
      }
    });
    BackendOptions o;
    o.parallel = par;
    try {
      make_backend(a, o);
      ADD_FAILURE() << "node 0 accepted the follower";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("node 1: "), std::string::npos) << what;
      EXPECT_NE(what.find(other_model ? "differs from this node's" : "start every node with the same flags"),
                std::string::npos)
          << what;
    }
    follower.join();
    EXPECT_NE(follower_error.find(other_model ? "node 0's model differs" : "--tensor-parallel-size 2"), std::string::npos)
        << follower_error;
  }
}

}  // namespace
