// The MTP head on the GPU (CudaModel::mtp_forward) against the CPU reference's mtp_forward,
// routing-aware (cuda_model_test_util.h: the CPU is forced to the GPU's expert choices in the
// trunk and in the head once those are checked to be near-ties): the trunk's post-norm_f
// rows, the head's logits over a prompt, and chained drafts (each engine fed its own hidden
// output, both the GPU's draft token). The fixtures' MTP logits and draft ids are printed
// (every MTP fixture has MoE blocks). Also: a head run in chunks equals one call, batched
// drafting (mtp_draft) and feeding (mtp_feed) equal one sequence at a time, drafting with
// graphs equals drafting without, and the head's errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "cuda_model_test_util.h"
#include "fixture_util.h"
#include "model/cpu/cpu_forward.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::Expected;
using nemotron::testing::fixture_dir;
using nemotron::testing::kLogitRelTol;
using nemotron::testing::kSelfRelTol;
using nemotron::testing::Lockstep;
using nemotron::testing::rel_err;
using nemotron::testing::top1;

namespace {

CudaModelOptions small_options() {
  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 256;
  o.kv_tokens = 2048;
  o.verbose = false;
  return o;
}

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref, int64_t V) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  const double e = rel_err(got.data(), ref.data(), ref.size());
  const auto a = top1(got, ref, V, 0.1f);
  std::printf("[ %s ] rel_err=%.4g top1 %d/%d\n", what.c_str(), e, a.agree, a.compared);
  EXPECT_LE(e, kLogitRelTol) << what;
  EXPECT_GE(a.agree, a.compared * 95 / 100) << what;
}

// A prompt run through the trunk of `m` in a slot of its own: the head's pending inputs
// (each prompt token's successor, the first token again at the end, and the trunk's rows).
struct Fed {
  int slot;
  std::vector<int32_t> next;
  std::vector<float> hidden;
  Backend::DraftInput input() const {
    return {slot, next.data(), hidden.data(), static_cast<int64_t>(next.size())};
  }
};
std::vector<Fed> feed(CudaModel& m, const std::vector<std::vector<int32_t>>& prompts) {
  std::vector<Fed> out;
  for (const auto& ids : prompts) {
    Fed f;
    f.slot = m.acquire_slot();
    m.forward({{f.slot, ids.data(), static_cast<int64_t>(ids.size()), false}});
    f.hidden = m.last_hidden();
    f.next.assign(ids.begin() + 1, ids.end());
    f.next.push_back(ids[0]);
    out.push_back(std::move(f));
  }
  return out;
}

class CudaMtpTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
    model_ = std::make_unique<Model>(Model::load(fixture_dir(GetParam())));
    ASSERT_TRUE(model_->config.has_mtp()) << GetParam();
    gpu_ = std::make_unique<CudaModel>(*model_, small_options());
    ex_ = std::make_unique<Expected>(GetParam());
  }
  int64_t V() const { return model_->config.vocab_size; }
  int64_t H() const { return model_->config.hidden_size; }
  std::string p(int i, const char* what) const { return "p" + std::to_string(i) + "." + what; }

  std::unique_ptr<Model> model_;
  std::unique_ptr<CudaModel> gpu_;
  std::unique_ptr<Expected> ex_;
};

TEST_P(CudaMtpTest, HeadAndDraftsMatchCpuOnGpuRoutes) {
  Lockstep ls(*model_, *gpu_);
  for (int i = 0; i < ex_->num_prompts(); ++i) {
    const std::string tag = GetParam() + " p" + std::to_string(i);
    const auto ids = ex_->ids(p(i, "input_ids"));
    const auto greedy = ex_->ids(p(i, "greedy_ids"));
    const int64_t T = static_cast<int64_t>(ids.size());
    const int slot = gpu_->acquire_slot();
    auto st = ls.cpu().new_state();
    auto mst = ls.cpu().new_mtp_state();
    const auto trunk = ls.forward(slot, st, ids.data(), T, false);
    ASSERT_EQ(trunk.gpu_hidden.size(), static_cast<std::size_t>(T * H()));
    const double eh = rel_err(trunk.gpu_hidden.data(), trunk.cpu_hidden.data(), trunk.cpu_hidden.size());
    const auto href = ex_->f32(p(i, "trunk_hidden"));
    std::printf("[ %s ] trunk hidden rel_err vs CPU on GPU routes %.4g, vs fixture (unforced) %.4g\n", tag.c_str(), eh,
                rel_err(trunk.gpu_hidden.data(), href.data(), href.size()));
    EXPECT_LE(eh, kLogitRelTol) << tag;

    // Position j is fed token j+1 and trunk row j; the last position the first generated token.
    std::vector<int32_t> next(ids.begin() + 1, ids.end());
    next.push_back(greedy[0]);
    const auto m = ls.mtp(slot, mst, next.data(), trunk.gpu_hidden.data(), trunk.cpu_hidden.data(), T, true);
    expect_close(tag + " MTP logits vs CPU on GPU routes", m.gpu, m.cpu, V());
    const auto mref = ex_->f32(p(i, "mtp_logits"));
    const auto ma = top1(m.gpu, mref, V(), 0.1f);
    std::printf("[ %s ] MTP logits vs fixture (unforced) rel_err=%.4g top1 %d/%d\n", tag.c_str(),
                rel_err(m.gpu.data(), mref.data(), mref.size()), ma.agree, ma.compared);
    EXPECT_EQ(gpu_->mtp_position(slot), T);

    // Chained drafts: the GPU's draft token feeds both engines; each gets its own hidden row.
    const auto dref = ex_->ids(p(i, "mtp_draft_ids"));
    std::vector<int32_t> drafts{argmax(m.gpu.data() + (T - 1) * V(), V())};
    std::vector<float> hg(m.gpu_hidden.end() - H(), m.gpu_hidden.end());
    std::vector<float> hc(m.cpu_hidden.end() - H(), m.cpu_hidden.end());
    std::vector<float> chain_gpu(m.gpu.end() - V(), m.gpu.end()), chain_cpu(m.cpu.end() - V(), m.cpu.end());
    while (drafts.size() < dref.size()) {
      const int32_t tok = drafts.back();
      const auto o = ls.mtp(slot, mst, &tok, hg.data(), hc.data(), 1, false);
      chain_gpu.insert(chain_gpu.end(), o.gpu.begin(), o.gpu.end());
      chain_cpu.insert(chain_cpu.end(), o.cpu.begin(), o.cpu.end());
      drafts.push_back(argmax(o.gpu.data(), V()));
      hg = o.gpu_hidden;
      hc = o.cpu_hidden;
    }
    gpu_->release_slot(slot);
    expect_close(tag + " draft chain logits vs CPU on GPU routes", chain_gpu, chain_cpu, V());
    int same = 0;
    for (std::size_t k = 0; k < dref.size(); ++k) same += drafts[k] == dref[k];
    std::printf("[ %s ] GPU drafts equal to the fixture's: %d/%zu\n", tag.c_str(), same, dref.size());
  }
  ls.stats.print((GetParam() + " trunk + MTP").c_str());
  ls.stats.expect_legitimate("trunk + MTP");
}

// The head over a prompt in one call equals the head over it in chunks (its KV cache appends).
TEST_P(CudaMtpTest, ChunkedHeadEqualsOneCall) {
  const auto ids = ex_->ids(p(0, "input_ids"));
  const int64_t T = static_cast<int64_t>(ids.size());
  const int slot = gpu_->acquire_slot();
  gpu_->forward({{slot, ids.data(), T, false}});
  const auto hidden = gpu_->last_hidden();
  std::vector<int32_t> next(ids.begin() + 1, ids.end());
  next.push_back(ids[0]);
  const auto full = gpu_->mtp_forward(slot, next.data(), hidden.data(), T, true);
  gpu_->release_slot(slot);
  const int s2 = gpu_->acquire_slot();
  EXPECT_EQ(gpu_->mtp_position(s2), 0);
  std::vector<float> got;
  for (int64_t s = 0; s < T; s += 5) {
    const int64_t n = std::min<int64_t>(5, T - s);
    const auto r = gpu_->mtp_forward(s2, next.data() + s, hidden.data() + s * H(), n, true);
    got.insert(got.end(), r.begin(), r.end());
  }
  EXPECT_EQ(gpu_->mtp_position(s2), T);
  EXPECT_EQ(gpu_->position(s2), 0);  // the trunk's position is separate
  gpu_->release_slot(s2);
  ASSERT_EQ(got.size(), full.size());
  const double e = rel_err(got.data(), full.data(), full.size());
  std::printf("[ %s ] MTP chunks of 5 vs one call rel=%.4g\n", GetParam().c_str(), e);
  EXPECT_LE(e, kSelfRelTol);
}

// CudaModel::mtp_draft (one head step per draft for every input, argmax on the device)
// against Backend's one-input-at-a-time path (mtp_forward + host argmax), each on its own
// CudaModel fed the same trunk rows: one input alone gives the same ids (the same kernels on
// the same rows); two inputs at once may differ only where the batch's GEMM path broke a
// near-tie (printed); either way the head's positions end after the fed rows (drafts 2..K
// rolled back).
TEST_P(CudaMtpTest, BatchedDraftsEqualOneAtATime) {
  const int K = 3;
  CudaModelOptions o = small_options();
  o.max_seqs = 3;
  CudaModel batched(*model_, o), single(*model_, o);
  std::vector<std::vector<int32_t>> prompts{ex_->ids(p(0, "input_ids")), ex_->ids(p(1, "input_ids"))};
  prompts.push_back(std::vector<int32_t>(prompts[0].rbegin(), prompts[0].rend()));
  const auto fa = feed(batched, prompts), fb = feed(single, prompts);
  auto input = [](const Fed& f) { return f.input(); };
  // One input.
  const auto one_a = batched.mtp_draft({input(fa[0])}, K);
  const auto one_b = single.Backend::mtp_draft({input(fb[0])}, K);
  ASSERT_EQ(one_a.size(), 1u);
  ASSERT_EQ(one_a[0].size(), static_cast<std::size_t>(K));
  EXPECT_EQ(one_a, one_b);
  EXPECT_EQ(batched.mtp_position(fa[0].slot), static_cast<int64_t>(fa[0].next.size()));
  EXPECT_EQ(single.mtp_position(fb[0].slot), static_cast<int64_t>(fb[0].next.size()));
  // Two inputs at once.
  const auto two_a = batched.mtp_draft({input(fa[1]), input(fa[2])}, K);
  const auto two_b = single.Backend::mtp_draft({input(fb[1]), input(fb[2])}, K);
  ASSERT_EQ(two_a.size(), 2u);
  int same = 0;
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(two_a[i].size(), static_cast<std::size_t>(K));
    for (int k = 0; k < K; ++k) {
      EXPECT_GE(two_a[i][static_cast<std::size_t>(k)], 0);
      EXPECT_LT(two_a[i][static_cast<std::size_t>(k)], V());
      same += two_a[i][static_cast<std::size_t>(k)] == two_b[i][static_cast<std::size_t>(k)];
    }
    EXPECT_EQ(batched.mtp_position(fa[i + 1].slot), static_cast<int64_t>(fa[i + 1].next.size()));
  }
  std::printf("[ %s ] two inputs: %d of %d draft ids as one at a time\n", GetParam().c_str(), same, 2 * K);
  EXPECT_GE(same, 2 * K - 2);
  // A third round on the first input (its rows fed already): one more pair, drafts again.
  const int32_t t = 7;
  std::vector<float> h(fa[0].hidden.end() - H(), fa[0].hidden.end());
  const auto again_a = batched.mtp_draft({{fa[0].slot, &t, h.data(), 1}}, K);
  const auto again_b = single.Backend::mtp_draft({{fb[0].slot, &t, h.data(), 1}}, K);
  EXPECT_EQ(again_a, again_b);
  EXPECT_EQ(batched.mtp_position(fa[0].slot), static_cast<int64_t>(fa[0].next.size()) + 1);
  EXPECT_THROW(batched.mtp_draft({input(fa[1]), input(fa[1])}, K), nemotron::Error);  // one slot twice
}

// mtp_draft chains its drafts on the device and replays its later drafting steps as draft
// graphs (captured on first use per batch size): the drafts and the head's positions equal
// those of the same calls on a model with graphs off (the same kernels on the same inputs),
// for one input and two, in a first round (captures) and a second (replays), also with the
// speculation room's FP8 draft head.
TEST_P(CudaMtpTest, DraftGraphsEqualEager) {
  const int K = 4;
  for (const bool room : {false, true}) {
    CudaModelOptions o = small_options();
    o.max_seqs = 3;
    if (room) {
      o.spec_seqs = 2;
      o.spec_rows = K + 1;
    }
    CudaModel graphs(*model_, o);
    o.cuda_graphs = false;
    CudaModel eager(*model_, o);
    const std::vector<std::vector<int32_t>> prompts{ex_->ids(p(0, "input_ids")), ex_->ids(p(1, "input_ids"))};
    const auto fg = feed(graphs, prompts), fe = feed(eager, prompts);
    // Prefill steps only so far, but a one-token prompt's step is a decode step (its graph).
    const int64_t fed_nodes = graphs.graph_nodes();
    auto input = [](const Fed& f) { return f.input(); };
    const std::string what = GetParam() + (room ? ", FP8 draft head" : "");
    // Round 1: each input's pending rows, one input per call (B = 1: captured, then replayed).
    EXPECT_EQ(graphs.mtp_draft({input(fg[0])}, K), eager.mtp_draft({input(fe[0])}, K)) << what;
    EXPECT_EQ(graphs.mtp_draft({input(fg[1])}, K), eager.mtp_draft({input(fe[1])}, K)) << what;
    const int64_t nodes = graphs.graph_nodes();
    EXPECT_GT(nodes, fed_nodes) << what << ": the later drafting steps ran as graphs";
    EXPECT_EQ(eager.graph_nodes(), 0);
    // Round 2: one more pair each, both inputs at once (B = 2: captured, then replayed).
    for (int round = 0; round < 2; ++round) {
      const int32_t t[2] = {7 + round, 11 + round};
      std::vector<float> hg[2], he[2];
      std::vector<Backend::DraftInput> ig, ie;
      for (int i = 0; i < 2; ++i) {
        hg[i].assign(fg[static_cast<std::size_t>(i)].hidden.end() - H(), fg[static_cast<std::size_t>(i)].hidden.end());
        he[i].assign(fe[static_cast<std::size_t>(i)].hidden.end() - H(), fe[static_cast<std::size_t>(i)].hidden.end());
        ig.push_back({fg[static_cast<std::size_t>(i)].slot, &t[i], hg[i].data(), 1});
        ie.push_back({fe[static_cast<std::size_t>(i)].slot, &t[i], he[i].data(), 1});
      }
      const auto a = graphs.mtp_draft(ig, K), b = eager.mtp_draft(ie, K);
      ASSERT_EQ(a.size(), 2u);
      for (const auto& d : a) EXPECT_EQ(d.size(), static_cast<std::size_t>(K));
      EXPECT_EQ(a, b) << what << ", round " << round;
      for (int i = 0; i < 2; ++i)
        EXPECT_EQ(graphs.mtp_position(fg[static_cast<std::size_t>(i)].slot),
                  eager.mtp_position(fe[static_cast<std::size_t>(i)].slot));
    }
    EXPECT_GE(graphs.graph_nodes(), nodes);
    EXPECT_EQ(graphs.mtp_position(fg[0].slot), static_cast<int64_t>(fg[0].next.size()) + 2);
    std::printf("[ %s ] draft graphs: %lld nodes, drafts equal to eager\n", what.c_str(),
                static_cast<long long>(graphs.graph_nodes()));
  }
}

// With speculation room (spec_seqs > 0) the drafts read a per-tensor FP8 copy of the BF16
// lm_head (cuda_buffers.h lm_head_draft): they agree with the BF16 head's drafts except near
// logit ties (printed), scoring (mtp_forward) is unchanged bit for bit, and the copy costs
// vocab x hidden bytes.
TEST_P(CudaMtpTest, Fp8DraftHeadAgreesWithTheBf16Head) {
  const int K = 3;
  CudaModelOptions o = small_options();
  o.max_seqs = 3;
  o.spec_seqs = 2;
  o.spec_rows = K + 1;
  CudaModel fp8(*model_, o);
  o.fp8_draft_head = false;
  CudaModel bf16(*model_, o);
  const auto& lm = model_->weights.lm_head.w;
  EXPECT_EQ(fp8.device_bytes() - bf16.device_bytes(), (lm.out * lm.in + 255) / 256 * 256);
  int same = 0, total = 0;
  for (int i = 0; i < 3; ++i) {
    const auto ids = ex_->ids(p(i % 2, "input_ids"));
    std::vector<int32_t> prompt = i < 2 ? ids : std::vector<int32_t>(ids.rbegin(), ids.rend());
    std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
    next.push_back(prompt[0]);
    std::vector<std::vector<int32_t>> drafts;
    std::vector<std::vector<float>> scores;
    for (CudaModel* m : {&fp8, &bf16}) {
      const int slot = m->acquire_slot();
      m->forward({{slot, prompt.data(), static_cast<int64_t>(prompt.size()), false}});
      const auto hidden = m->last_hidden();
      drafts.push_back(m->mtp_draft({{slot, next.data(), hidden.data(), static_cast<int64_t>(next.size())}}, K)[0]);
      const int32_t t = drafts.back()[0];
      std::vector<float> h(hidden.end() - H(), hidden.end());
      scores.push_back(m->mtp_forward(slot, &t, h.data(), 1, false));
      m->release_slot(slot);
    }
    for (int k = 0; k < K; ++k) same += drafts[0][static_cast<std::size_t>(k)] == drafts[1][static_cast<std::size_t>(k)];
    total += K;
    if (drafts[0][0] == drafts[1][0]) {
      EXPECT_EQ(scores[0], scores[1]) << "mtp_forward reads the BF16 lm_head";
    }
  }
  std::printf("[ %s ] FP8 draft head: %d of %d drafts as the BF16 head's\n", GetParam().c_str(), same, total);
  EXPECT_GE(same * 10, total * 6);
}

// CudaModel::mtp_feed (inputs packed into head steps without logit rows; an input longer than
// a step in pieces) against feeding each input with mtp_forward: the heads' positions end
// alike, and the drafts that follow agree (near-ties of the batched path aside).
TEST_P(CudaMtpTest, BatchedFeedEqualsOneAtATime) {
  const int K = 2;
  CudaModelOptions o = small_options();
  o.max_seqs = 3;
  CudaModel batched(*model_, o), single(*model_, o);
  const auto ids = ex_->ids(p(0, "input_ids"));
  const auto T0 = static_cast<int64_t>(ids.size());
  const int s0 = batched.acquire_slot();
  batched.forward({{s0, ids.data(), T0, false}});
  const auto hidden = batched.last_hidden();
  // Inputs of 5, T0 and 300 rows (300 > max_step_tokens 256: fed in two pieces), tokens and
  // hidden rows cycled from the prompt's.
  std::vector<std::vector<int32_t>> toks;
  std::vector<std::vector<float>> hids;
  for (int64_t T : {int64_t{5}, T0, int64_t{300}}) {
    std::vector<int32_t> t;
    std::vector<float> h;
    for (int64_t r = 0; r < T; ++r) {
      t.push_back(ids[static_cast<std::size_t>((r + 1) % T0)]);
      h.insert(h.end(), hidden.begin() + (r % T0) * H(), hidden.begin() + (r % T0 + 1) * H());
    }
    toks.push_back(std::move(t));
    hids.push_back(std::move(h));
  }
  std::vector<int> slots_b, slots_s;
  for (int i = 0; i < 3; ++i) {
    slots_b.push_back(i == 0 ? s0 : batched.acquire_slot());
    slots_s.push_back(single.acquire_slot());
  }
  auto inputs = [&](const std::vector<int>& slots) {
    std::vector<Backend::DraftInput> in;
    for (int i = 0; i < 3; ++i)
      in.push_back({slots[static_cast<std::size_t>(i)], toks[static_cast<std::size_t>(i)].data(),
                    hids[static_cast<std::size_t>(i)].data(), static_cast<int64_t>(toks[static_cast<std::size_t>(i)].size())});
    return in;
  };
  batched.mtp_feed(inputs(slots_b));
  single.Backend::mtp_feed(inputs(slots_s));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(batched.mtp_position(slots_b[static_cast<std::size_t>(i)]),
              static_cast<int64_t>(toks[static_cast<std::size_t>(i)].size()));
    EXPECT_EQ(single.mtp_position(slots_s[static_cast<std::size_t>(i)]),
              static_cast<int64_t>(toks[static_cast<std::size_t>(i)].size()));
  }
  // One more pair each, then drafts, one input at a time on both (the same path).
  const int32_t t = 11;
  const std::vector<float> h(hidden.end() - H(), hidden.end());
  int same = 0, total = 0;
  for (int i = 0; i < 3; ++i) {
    const auto a = batched.Backend::mtp_draft({{slots_b[static_cast<std::size_t>(i)], &t, h.data(), 1}}, K);
    const auto b = single.Backend::mtp_draft({{slots_s[static_cast<std::size_t>(i)], &t, h.data(), 1}}, K);
    for (int k = 0; k < K; ++k) same += a[0][static_cast<std::size_t>(k)] == b[0][static_cast<std::size_t>(k)];
    total += K;
  }
  std::printf("[ %s ] after batched feeds: %d of %d draft ids as after one-at-a-time feeds\n", GetParam().c_str(),
              same, total);
  EXPECT_GE(same, total - 2);
  EXPECT_THROW(batched.mtp_feed({{slots_b[0], &t, nullptr, 1}}), nemotron::Error);
}

TEST_P(CudaMtpTest, InvalidInputsAreErrors) {
  const int slot = gpu_->acquire_slot();
  std::vector<float> h(static_cast<std::size_t>(H()), 0.5f);
  const int32_t bad = static_cast<int32_t>(V());
  EXPECT_THROW(gpu_->mtp_forward(slot, &bad, h.data(), 1, false), nemotron::Error);
  const int32_t ok = 3;
  EXPECT_THROW(gpu_->mtp_forward(slot, &ok, nullptr, 1, false), nemotron::Error);
  EXPECT_THROW(gpu_->mtp_forward(slot + 1, &ok, h.data(), 1, false), nemotron::Error);  // not acquired
  EXPECT_THROW(gpu_->mtp_forward(slot, &ok, h.data(), 0, false), nemotron::Error);
  EXPECT_EQ(gpu_->mtp_position(slot), 0);
  gpu_->release_slot(slot);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaMtpTest, ::testing::Values("super-latent-mtp", "super-mixed-mtp"),
                         nemotron::testing::FixtureParamName());

TEST(CudaMtp, ModelWithoutMtpHeadIsAnError) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(fixture_dir("nano-moe"));
  ASSERT_FALSE(m.config.has_mtp());
  CudaModel gpu(m, small_options());
  const int slot = gpu.acquire_slot();
  std::vector<float> h(static_cast<std::size_t>(m.config.hidden_size), 0.5f);
  const int32_t tok = 3;
  EXPECT_THROW(gpu.mtp_forward(slot, &tok, h.data(), 1, false), nemotron::Error);
}

}  // namespace
