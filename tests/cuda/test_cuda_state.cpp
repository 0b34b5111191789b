// The CUDA backend's state primitives (model/cuda/cuda_model_state.cpp), at the interface
// (model/backend.h), mirroring tests/runtime/test_speculative.cpp and test_prefix_cache.cpp:
//   - roll_back to every row of a 5-row verify chunk leaves the state of the shorter sequence:
//     the next chunk's logits equal those of a sequence fed the same tokens in the same chunking
//     bit for bit where that is guaranteed (all rows kept, none kept) or where the kernels give
//     a row the same bits whatever the chunk's length (probed), else within kSelfRelTol;
//   - a verify chunk's rows draw as sample_cpu with the penalty state of the rows before them,
//     and after roll_back the penalty state is the kept rows' (draws after it compared with
//     sample_cpu on the step's own logits); a prompt fed in chunks is marked seen;
//   - snapshots: a slot loaded from a snapshot continues bit for bit as the saved one (trunk
//     and MTP head), also after the saved slot's pages were reused and after a roll_back; the
//     pool's accounting (snapshot_bytes, capacity, full pool, drop);
//   - the MTP head's roll-back cuts its length only; a keep_states step of single tokens runs
//     eagerly and equals the decode graph bit for bit; verify steps replay graphs and equal
//     eager verify steps, roll-backs included; errors and limits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "cuda_model_test_util.h"
#include "cuda_state_test_util.h"
#include "model/cpu/cpu_forward.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using nemotron::testing::cuda_backend;
using nemotron::testing::kSelfRelTol;
using nemotron::testing::max_abs;
using nemotron::testing::rel_err;
using nemotron::testing::same_bits;
using nemotron::testing::state_model_path;
using nemotron::testing::state_prompt;

namespace {

class CudaStateTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
    m_ = std::make_unique<Model>(Model::load(state_model_path(GetParam())));
  }
  const Model& m() const { return *m_; }
  std::unique_ptr<Model> m_;
};

// Logits of every row of `chunk` fed after `prompt` (a greedy sample at the prompt's end).
std::vector<float> rows_after(Backend& b, int slot, const std::vector<int32_t>& prompt,
                              const std::vector<int32_t>& chunk) {
  b.step({{.slot = slot, .ids = prompt.data(), .T = static_cast<int64_t>(prompt.size()), .sample = true}});
  return b.step({{.slot = slot, .ids = chunk.data(), .T = static_cast<int64_t>(chunk.size()),
                  .logits = LogitsOut::All}})[0].logits;
}

TEST_P(CudaStateTest, RollBackToEveryRowEqualsTheShorterSequence) {
  const int64_t V = m().config.vocab_size;
  const auto prompt = state_prompt(GetParam(), 0);
  const auto T0 = static_cast<int64_t>(prompt.size());
  const std::vector<int32_t> tail{7, 11, 13, 17, 19}, next{23, 29, 31};
  // Probe: does a row get the same bits in a chunk of n rows as in the 5-row chunk (the same
  // kernels whatever the chunk's length)? Then the roll-back must be bitwise too.
  std::vector<float> five;
  {
    const auto b = cuda_backend(m(), 1);
    five = rows_after(*b, b->acquire_slot(), prompt, tail);
  }
  for (int64_t n = 0; n <= 5; ++n) {
    bool invariant = n == 0 || n == 5;
    if (n > 0 && n < 5) {
      const auto b = cuda_backend(m(), 1);
      const auto part = rows_after(*b, b->acquire_slot(), prompt, std::vector<int32_t>(tail.begin(), tail.begin() + n));
      invariant = std::memcmp(part.data(), five.data(), part.size() * 4) == 0;
    }
    // Rolled back: the prompt, the 5-row chunk with every row drawing and keep_states, cut to n.
    const auto a = cuda_backend(m(), 1);
    const int sa = a->acquire_slot();
    a->step({{.slot = sa, .ids = prompt.data(), .T = T0, .sample = true}});
    const auto v = a->step({{.slot = sa, .ids = tail.data(), .T = 5, .sample = true, .sample_rows = 5, .draw = 1,
                             .logits = LogitsOut::All, .keep_states = true}});
    ASSERT_EQ(v[0].samples.size(), 5u);
    ASSERT_EQ(static_cast<int64_t>(v[0].logits.size()), 5 * V);
    // The verify chunk computed what a plain 5-row chunk computes.
    EXPECT_TRUE(same_bits(v[0].logits, five)) << "n " << n << ": a keep_states step differs from a plain one";
    for (int j = 0; j < 5; ++j)
      EXPECT_EQ(v[0].samples[static_cast<std::size_t>(j)].token, argmax(five.data() + j * V, V)) << "row " << j;
    a->roll_back(sa, T0 + n);
    ASSERT_EQ(a->position(sa), T0 + n);
    const auto la = a->step({{.slot = sa, .ids = next.data(), .T = 3, .logits = LogitsOut::All}})[0].logits;
    // Reference: the prompt, then the first n rows as one chunk, then the same next chunk.
    const auto b = cuda_backend(m(), 1);
    const int sb = b->acquire_slot();
    b->step({{.slot = sb, .ids = prompt.data(), .T = T0, .sample = true}});
    if (n > 0) b->step({{.slot = sb, .ids = tail.data(), .T = n}});
    const auto lb = b->step({{.slot = sb, .ids = next.data(), .T = 3, .logits = LogitsOut::All}})[0].logits;
    ASSERT_EQ(la.size(), lb.size());
    const double e = rel_err(la.data(), lb.data(), lb.size());
    const bool exact = same_bits(la, lb);
    std::printf("[ %s ] roll back to row %lld of 5: next logits %s (rel_err %.3g, max |diff| %.3g; kernels %s)\n",
                GetParam().c_str(), static_cast<long long>(n), exact ? "bit-identical" : "differ", e, max_abs(la, lb),
                invariant ? "length-invariant" : "differ by chunk length");
    if (invariant) {
      EXPECT_TRUE(exact) << "n " << n << ": max |diff| " << max_abs(la, lb);
    }
    EXPECT_LE(e, kSelfRelTol) << "n " << n;
    // The same next tokens wherever the reference's top two are not a near-tie.
    const auto agree = nemotron::testing::top1(la, lb, V, 0.05f);
    EXPECT_EQ(agree.agree, agree.compared) << "n " << n;
  }
}

// The penalty state through a verify chunk and its roll-back, against sample_cpu on the step's
// own logits with the state the CPU backend would keep (kernels::PenaltyState on the host).
TEST_P(CudaStateTest, VerifyRowsAndRolledBackPenaltiesDrawAsSampleCpu) {
  const int64_t V = m().config.vocab_size;
  const auto prompt = state_prompt(GetParam(), 1);
  const auto T0 = static_cast<int64_t>(prompt.size());
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 40;
  p.repetition_penalty = 1.5f;
  p.frequency_penalty = 0.7f;
  p.presence_penalty = 0.5f;
  const uint64_t seed = 9;
  int mismatches = 0, compared = 0;
  // Compares a GPU draw with sample_cpu and keeps the host state on the GPU's token.
  auto expect_draw = [&](const float* logits, uint64_t draw, kernels::PenaltyState& st, int32_t got) {
    const auto ref = kernels::sample_cpu(logits, V, p, seed, draw, &st);
    ++compared;
    if (ref.token == got) return;
    ++mismatches;
    std::printf("[ %s ] draw %llu: device %d, sample_cpu %d\n", GetParam().c_str(),
                static_cast<unsigned long long>(draw), got, ref.token);
    if (--st.counts[ref.token] == 0) st.counts.erase(ref.token);
    st.counts[got]++;
    st.seen.insert(got);
  };
  for (int64_t n = 0; n <= 5; ++n) {
    const auto a = cuda_backend(m(), 2);
    a->acquire_slot();  // a neighbour in slot 0: the state of slot 1 is what is checked
    const int s = a->acquire_slot();
    kernels::PenaltyState host;
    kernels::penalty_observe_prompt(host, prompt.data(), T0);
    const auto o0 = a->step({{.slot = s, .ids = prompt.data(), .T = T0, .sampling = &p, .sample = true, .seed = seed,
                              .logits = LogitsOut::Last}})[0];
    expect_draw(o0.logits.data(), 0, host, o0.sample.token);
    // The verify chunk [last draw, 4 drafts]: rows draw 1..5; the drafts are not marked seen.
    const std::vector<int32_t> verify{o0.sample.token, 7, 11, 13, 17};
    const auto ov = a->step({{.slot = s, .ids = verify.data(), .T = 5, .sampling = &p, .sample = true,
                              .sample_rows = 5, .seed = seed, .draw = 1, .logits = LogitsOut::All,
                              .keep_states = true}})[0];
    ASSERT_EQ(ov.samples.size(), 5u);
    kernels::PenaltyState pv = host;
    kernels::penalty_observe_prompt(pv, verify.data(), 1);
    for (int j = 0; j < 5; ++j)
      expect_draw(ov.logits.data() + j * V, 1 + static_cast<uint64_t>(j), pv,
                  ov.samples[static_cast<std::size_t>(j)].token);
    // Roll back to n rows: the state before the chunk, its first row's id if kept, the kept
    // rows' draws.
    a->roll_back(s, T0 + n);
    kernels::penalty_observe_prompt(host, verify.data(), std::min<int64_t>(n, 1));
    for (int64_t j = 0; j < n; ++j) {
      const int32_t t = ov.samples[static_cast<std::size_t>(j)].token;
      host.counts[t]++;
      host.seen.insert(t);
    }
    // Decode on (graph steps): token 23, then the draws.
    int32_t x = 23;
    for (int k = 0; k < 6; ++k) {
      const uint64_t draw = 1 + static_cast<uint64_t>(n + k);
      const auto o = a->step({{.slot = s, .ids = &x, .T = 1, .sampling = &p, .sample = true, .seed = seed,
                               .draw = draw, .logits = LogitsOut::Last}})[0];
      kernels::penalty_observe_prompt(host, &x, 1);
      expect_draw(o.logits.data(), draw, host, o.sample.token);
      x = o.sample.token;
    }
  }
  std::printf("[ %s ] %d draws compared with sample_cpu, %d differ\n", GetParam().c_str(), compared, mismatches);
  EXPECT_LE(mismatches, 2);  // float expf/logf may differ by an ulp at a near-tie
}

// A prompt fed in two chunks (the first samples nothing) is marked seen whole.
TEST_P(CudaStateTest, PromptInChunksIsMarkedSeen) {
  const int64_t V = m().config.vocab_size;
  const auto prompt = state_prompt(GetParam(), 2);
  const auto T0 = static_cast<int64_t>(prompt.size());
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 3.0f;
  const auto a = cuda_backend(m(), 1);
  const int s = a->acquire_slot();
  a->step({{.slot = s, .ids = prompt.data(), .T = T0 / 2, .sampling = &p}});
  const auto o = a->step({{.slot = s, .ids = prompt.data() + T0 / 2, .T = T0 - T0 / 2, .sampling = &p,
                           .sample = true, .logits = LogitsOut::Last}})[0];
  kernels::PenaltyState host;
  kernels::penalty_observe_prompt(host, prompt.data(), T0);
  EXPECT_EQ(o.sample.token, kernels::sample_cpu(o.logits.data(), V, p, 0, 0, &host).token);
  // A few decode steps on: each draw is penalized by the whole prompt and the draws.
  int32_t x = o.sample.token;
  for (int k = 1; k <= 4; ++k) {
    const auto d = a->step({{.slot = s, .ids = &x, .T = 1, .sampling = &p, .sample = true,
                             .draw = static_cast<uint64_t>(k), .logits = LogitsOut::Last}})[0];
    EXPECT_EQ(d.sample.token, kernels::sample_cpu(d.logits.data(), V, p, 0, static_cast<uint64_t>(k), &host).token)
        << "step " << k;
    x = d.sample.token;
  }
}

TEST_P(CudaStateTest, SnapshotLoadContinuesBitForBit) {
  const Config& c = m().config;
  const auto prompt = state_prompt(GetParam(), 3);
  const auto T0 = static_cast<int64_t>(prompt.size());
  const int64_t k = T0 - 5;  // the snapshot point; the rest is fed after it
  const std::vector<int32_t> rest(prompt.begin() + k, prompt.end());
  const auto b = cuda_backend(m(), 4, int64_t{64} << 20);
  ASSERT_TRUE(b->can_snapshot());
  const int sa = b->acquire_slot();
  b->step({{.slot = sa, .ids = prompt.data(), .T = k}});
  // The MTP head fed the pairs (token t + 1, hidden row t) for t < k - 1: its own K/V rows.
  if (c.has_mtp()) {
    const auto h = b->last_hidden();
    b->mtp_forward(sa, prompt.data() + 1, h.data(), k - 1, false);
    ASSERT_EQ(b->mtp_position(sa), k - 1);
  }
  b->save_snapshot(sa, 1);
  EXPECT_THROW(b->save_snapshot(sa, 1), Error);  // the id is taken
  // The saved sequence continues...
  auto go = [&](int slot, std::vector<float>* mtp_logits) {
    auto l = b->step({{.slot = slot, .ids = rest.data(), .T = 5, .logits = LogitsOut::All}})[0].logits;
    if (c.has_mtp()) {
      const auto h = b->last_hidden();
      *mtp_logits = b->mtp_forward(slot, rest.data(), h.data(), 5, true);
    }
    return l;
  };
  std::vector<float> ma, mb, mc;
  const auto la = go(sa, &ma);
  // ... and a fresh slot loaded from the snapshot continues the same, bit for bit.
  const int sb = b->acquire_slot();
  b->load_snapshot(1, sb);
  EXPECT_EQ(b->position(sb), k);
  if (c.has_mtp()) {
    EXPECT_EQ(b->mtp_position(sb), k - 1);
  }
  const auto lb = go(sb, &mb);
  EXPECT_TRUE(same_bits(la, lb)) << "max |diff| " << max_abs(la, lb);
  EXPECT_TRUE(same_bits(ma, mb)) << "MTP head: max |diff| " << max_abs(ma, mb);
  // The snapshot is a copy: after both slots are released and their pages rewritten by
  // another sequence, a load still continues the same.
  b->release_slot(sa);
  b->release_slot(sb);
  const int sx = b->acquire_slot();
  std::vector<int32_t> other(200);
  for (std::size_t i = 0; i < other.size(); ++i) other[i] = static_cast<int32_t>(5 + (i * 7) % 300);
  b->step({{.slot = sx, .ids = other.data(), .T = 200}});
  const int sc = b->acquire_slot();
  b->load_snapshot(1, sc);
  const auto lc = go(sc, &mc);
  EXPECT_TRUE(same_bits(la, lc)) << "after reuse: max |diff| " << max_abs(la, lc);
  EXPECT_TRUE(same_bits(ma, mc)) << "MTP head after reuse: max |diff| " << max_abs(ma, mc);
  // Errors: a slot that is not fresh, an unknown id.
  EXPECT_THROW(b->load_snapshot(1, sx), Error);
  const int sy = b->acquire_slot();
  EXPECT_THROW(b->load_snapshot(99, sy), Error);
}

// export_snapshot / import_snapshot (--prefix-cache-dir): the bytes of a snapshot, imported
// into another backend of the same model and options (a restarted server), continue bit for
// bit as the saved slot; bytes of another layout, damaged bytes, a taken id and a full pool
// are refused, leaving the pool as it was.
TEST_P(CudaStateTest, ExportedSnapshotImportsIntoAnotherBackendBitForBit) {
  const Config& c = m().config;
  const auto prompt = state_prompt(GetParam(), 3);
  const auto T0 = static_cast<int64_t>(prompt.size());
  const int64_t k = T0 - 4;
  const std::vector<int32_t> rest(prompt.begin() + k, prompt.end());
  auto feed = [&](Backend& b, int slot) {
    b.step({{.slot = slot, .ids = prompt.data(), .T = k}});
    if (c.has_mtp()) {
      const auto h = b.last_hidden();
      b.mtp_forward(slot, prompt.data() + 1, h.data(), k - 1, false);
    }
  };
  auto go = [&](Backend& b, int slot, std::vector<float>* mtp_logits) {
    auto l = b.step({{.slot = slot, .ids = rest.data(), .T = 4, .logits = LogitsOut::All}})[0].logits;
    if (c.has_mtp()) {
      const auto h = b.last_hidden();
      *mtp_logits = b.mtp_forward(slot, rest.data(), h.data(), 4, true);
    }
    return l;
  };
  const auto a = cuda_backend(m(), 2, int64_t{64} << 20);
  const int sa = a->acquire_slot();
  feed(*a, sa);
  a->save_snapshot(sa, 3);
  const std::vector<uint8_t> bytes = a->export_snapshot(3);
  EXPECT_THROW(a->export_snapshot(4), Error);
  std::vector<float> ma, mb;
  const auto la = go(*a, sa, &ma);

  const int64_t one = a->snapshot_bytes(k);
  const auto b = cuda_backend(m(), 2, 5 * one + one / 2);
  b->import_snapshot(11, bytes);
  EXPECT_THROW(b->import_snapshot(11, bytes), Error);  // the id is taken
  const int sb = b->acquire_slot();
  b->load_snapshot(11, sb);
  EXPECT_EQ(b->position(sb), k);
  const auto lb = go(*b, sb, &mb);
  EXPECT_TRUE(same_bits(la, lb)) << "max |diff| " << max_abs(la, lb);
  EXPECT_TRUE(same_bits(ma, mb)) << "MTP head: max |diff| " << max_abs(ma, mb);
  // The round trip is exact: the imported snapshot exports the same bytes.
  EXPECT_EQ(b->export_snapshot(11), bytes);

  // Refused: damaged or truncated bytes, bytes of another layout (a changed field), the CPU
  // backend's export.
  std::vector<uint8_t> bad = bytes;
  bad[0] ^= 1;
  EXPECT_THROW(b->import_snapshot(12, bad), Error);
  bad = bytes;
  bad.resize(bad.size() - 1);
  EXPECT_THROW(b->import_snapshot(12, bad), Error);
  bad = bytes;
  bad[8 + 8 * 2] ^= 0x10;  // the unit size
  EXPECT_THROW(b->import_snapshot(12, bad), Error);
  const auto cpu = make_backend(m(), BackendOptions{.device = "cpu", .max_seqs = 1, .prefix_cache_bytes = int64_t{64} << 20});
  const int sc = cpu->acquire_slot();
  cpu->step({{.slot = sc, .ids = prompt.data(), .T = k}});
  cpu->save_snapshot(sc, 1);
  EXPECT_THROW(b->import_snapshot(12, cpu->export_snapshot(1)), Error);
  // A pool with no room refuses, and nothing leaked: after dropping the import the whole
  // capacity is free again (as many copies fit as before).
  const auto small = cuda_backend(m(), 1, one / 2 + 1);
  EXPECT_THROW(small->import_snapshot(1, bytes), Error);
  b->release_slot(sb);
  b->drop_snapshot(11);
  int fitted = 0;
  for (uint64_t id = 100; id < 100 + 10; ++id) {
    try {
      b->import_snapshot(id, bytes);
      ++fitted;
    } catch (const Error&) {
      break;
    }
  }
  EXPECT_EQ(fitted, 5);
}

// observe_prompt after a load marks the cached prompt seen (the engine's resumed request).
TEST_P(CudaStateTest, ObservePromptMarksTheCachedPrefixSeen) {
  const int64_t V = m().config.vocab_size;
  const auto prompt = state_prompt(GetParam(), 2);
  const auto T0 = static_cast<int64_t>(prompt.size());
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 3.0f;
  const auto b = cuda_backend(m(), 2, int64_t{64} << 20);
  const int sa = b->acquire_slot();
  b->step({{.slot = sa, .ids = prompt.data(), .T = T0 - 1}});
  b->save_snapshot(sa, 5);
  const int sb = b->acquire_slot();
  b->load_snapshot(5, sb);
  b->observe_prompt(sb, prompt.data(), T0 - 1);
  const auto o = b->step({{.slot = sb, .ids = prompt.data() + T0 - 1, .T = 1, .sampling = &p, .sample = true,
                           .logits = LogitsOut::Last}})[0];
  kernels::PenaltyState host;
  kernels::penalty_observe_prompt(host, prompt.data(), T0);
  EXPECT_EQ(o.sample.token, kernels::sample_cpu(o.logits.data(), V, p, 0, 0, &host).token);
}

// A snapshot after a roll-back holds the rolled-back state (queued replays applied first); the
// pool holds what snapshot_bytes says and refuses more.
TEST_P(CudaStateTest, SnapshotAfterRollBackAndThePoolsAccounting) {
  const auto prompt = state_prompt(GetParam(), 0);
  const auto T0 = static_cast<int64_t>(prompt.size());
  const std::vector<int32_t> tail{7, 11, 13, 17, 19}, next{23, 29};
  const auto probe = cuda_backend(m(), 1, int64_t{1} << 20);
  const int64_t one = probe->snapshot_bytes(T0 + 2), capacity = 3 * one + one / 2;
  const auto b = cuda_backend(m(), 3, capacity);
  EXPECT_EQ(b->snapshot_bytes(T0 + 2), one);
  EXPECT_LE(b->snapshot_capacity(), capacity);
  EXPECT_GE(b->snapshot_capacity(), 3 * one);
  EXPECT_LE(b->snapshot_bytes(0), b->snapshot_bytes(16));
  const int sa = b->acquire_slot();
  b->step({{.slot = sa, .ids = prompt.data(), .T = T0, .sample = true}});
  b->step({{.slot = sa, .ids = tail.data(), .T = 5, .sample = true, .sample_rows = 5, .keep_states = true}});
  b->roll_back(sa, T0 + 2);
  b->save_snapshot(sa, 7);
  const auto la = b->step({{.slot = sa, .ids = next.data(), .T = 2, .logits = LogitsOut::All}})[0].logits;
  const int sb = b->acquire_slot();
  b->load_snapshot(7, sb);
  const auto lb = b->step({{.slot = sb, .ids = next.data(), .T = 2, .logits = LogitsOut::All}})[0].logits;
  EXPECT_TRUE(same_bits(la, lb)) << "max |diff| " << max_abs(la, lb);
  // Two more fit; a fourth does not; dropping one makes room.
  const int sc = b->acquire_slot();
  b->step({{.slot = sc, .ids = prompt.data(), .T = T0}});
  b->step({{.slot = sc, .ids = tail.data(), .T = 2}});
  ASSERT_EQ(b->position(sc), T0 + 2);
  b->save_snapshot(sc, 8);
  b->save_snapshot(sc, 9);
  EXPECT_THROW(b->save_snapshot(sc, 10), Error);
  b->drop_snapshot(8);
  b->drop_snapshot(12345);  // unknown: ignored
  b->save_snapshot(sc, 10);
}

TEST_P(CudaStateTest, MtpRollBackCutsTheHeadsLengthOnly) {
  const Config& c = m().config;
  if (!c.has_mtp()) GTEST_SKIP() << GetParam() << " has no MTP head";
  const int64_t H = c.hidden_size, V = c.vocab_size;
  const auto prompt = state_prompt(GetParam(), 1);
  const auto T0 = static_cast<int64_t>(prompt.size());
  auto run = [&](bool drafts) {
    const auto b = cuda_backend(m(), 1);
    const int s = b->acquire_slot();
    const int32_t first = b->step({{.slot = s, .ids = prompt.data(), .T = T0, .sample = true}})[0].sample.token;
    const auto h = b->last_hidden();
    std::vector<int32_t> ids(prompt.begin() + 1, prompt.end());
    ids.push_back(first);
    b->mtp_forward(s, ids.data(), h.data(), T0 - 1, false);  // all pairs but the last
    const int64_t committed = b->mtp_position(s);
    if (drafts) {
      // Two chained drafts past the committed position, then cut back.
      auto l = b->mtp_forward(s, &ids.back(), h.data() + (T0 - 1) * H, 1, false);
      for (int d = 0; d < 2; ++d) {
        const auto hh = b->last_hidden();
        const int32_t t = argmax(l.data(), V);
        l = b->mtp_forward(s, &t, hh.data(), 1, false);
      }
      EXPECT_EQ(b->mtp_position(s), committed + 3);
      EXPECT_THROW(b->mtp_roll_back(s, committed + 4), Error);
      b->mtp_roll_back(s, committed);
      EXPECT_EQ(b->mtp_position(s), committed);
    }
    return b->mtp_forward(s, &ids.back(), h.data() + (T0 - 1) * H, 1, true);
  };
  const auto plain = run(false), cut = run(true);
  EXPECT_TRUE(same_bits(plain, cut)) << "max |diff| " << max_abs(plain, cut);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaStateTest,
                         ::testing::Values("nano-moe", "super-latent-mtp", "super-mixed-mtp", "nano-nvfp4", "demo"),
                         nemotron::testing::FixtureParamName());

namespace {
// Two slots, room for a 4-row keep_states chunk in each (spec_rows 4: K = 3).
CudaModelOptions two_slot_options(int64_t step_tokens = 128, int64_t kv_tokens = 1024, int spec_seqs = 2) {
  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = step_tokens;
  o.kv_tokens = kv_tokens;
  o.verbose = false;
  o.spec_seqs = spec_seqs;
  o.spec_rows = 4;
  return o;
}

// Two slots of `m` prefilled with the prompt (the second one token shorter), sampling their
// last rows; their slot numbers in s[0], s[1].
void prefill_two(CudaModel& m, const std::vector<int32_t>& prompt, int* s) {
  const auto T0 = static_cast<int64_t>(prompt.size());
  for (int i = 0; i < 2; ++i) {
    s[i] = m.acquire_slot();
    m.step({{.slot = s[i], .ids = prompt.data(), .T = T0 - i, .sample = true}});
  }
}
}  // namespace

// A step with keep_states chunks of one token each runs eagerly (no graph is captured for it)
// and gives the decode graph's bits; rolled back to its start and run again as a graph step, it
// gives them again.
TEST(CudaState, KeepStepsRunEagerlyAndEqualTheDecodeGraph) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(nemotron::testing::fixture_dir("super-latent-mtp"));
  const CudaModelOptions o = two_slot_options();
  CudaModel a(m, o), b(m, o);
  const auto prompt = state_prompt("super-latent-mtp", 0);
  const auto T0 = static_cast<int64_t>(prompt.size());
  int sa[2], sb[2];
  prefill_two(a, prompt, sa);
  prefill_two(b, prompt, sb);
  const int32_t x[2] = {41, 43};
  auto decode = [&](CudaModel& g, const int* s, bool keep) {
    std::vector<StepChunk> ch;
    for (int i = 0; i < 2; ++i)
      ch.push_back(
          {.slot = s[i], .ids = &x[i], .T = 1, .sample = true, .logits = LogitsOut::Last, .keep_states = keep});
    return g.step(ch);
  };
  const auto gb = decode(b, sb, false);  // graph (B = 2)
  const int64_t nodes = b.graph_nodes();
  EXPECT_GT(nodes, 0);
  const int64_t before = a.graph_nodes();
  const auto ka = decode(a, sa, true);  // eager, keeping states
  EXPECT_EQ(a.graph_nodes(), before) << "a keep_states step was captured";
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(same_bits(ka[static_cast<std::size_t>(i)].logits, gb[static_cast<std::size_t>(i)].logits)) << i;
    EXPECT_EQ(ka[static_cast<std::size_t>(i)].sample.token, gb[static_cast<std::size_t>(i)].sample.token) << i;
    a.roll_back(sa[i], T0 - i);  // none kept: the state before the step
  }
  const auto ga = decode(a, sa, false);  // now a graph step
  for (int i = 0; i < 2; ++i)
    EXPECT_TRUE(same_bits(ga[static_cast<std::size_t>(i)].logits, gb[static_cast<std::size_t>(i)].logits)) << i;
}

// Verify steps (every chunk keeps its states and draws all of its T >= 2 rows) of up to
// kMaxSpecGraphSeqs sequences replay a graph per (B, T): their logits, draws, roll-backs and
// the steps after them equal a model with graphs off, bit for bit, for B = 2 and 1, when a
// shape is captured and when it is replayed, and with a sampled (seeded) sequence beside a
// greedy one.
TEST(CudaState, VerifyStepsReplayGraphsAndEqualEagerSteps) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  for (const char* name : {"super-latent-mtp", "nano-nvfp4"}) {
    const Model m = Model::load(nemotron::testing::fixture_dir(name));
    CudaModelOptions o = two_slot_options();
    CudaModel g(m, o);
    o.cuda_graphs = false;
    CudaModel e(m, o);
    const auto prompt = state_prompt(name, 0);
    int sg[2], se[2];
    prefill_two(g, prompt, sg);
    prefill_two(e, prompt, se);
    SamplingParams sampled;
    sampled.temperature = 0.8f;
    sampled.top_p = 0.9f;
    const int32_t rows[2][3] = {{41, 43, 47}, {53, 59, 61}};
    uint64_t draw = 1;
    // One verify step of the first B sequences, T = 3 rows each (sequence 1 sampled, seeded).
    auto verify = [&](CudaModel& mdl, const int* s, int64_t B) {
      std::vector<StepChunk> ch;
      for (int64_t i = 0; i < B; ++i)
        ch.push_back({.slot = s[i], .ids = rows[i], .T = 3, .sampling = i == 1 ? &sampled : nullptr, .sample = true,
                      .sample_rows = 3, .seed = 7 + static_cast<uint64_t>(i), .draw = draw,
                      .logits = LogitsOut::All, .keep_states = true});
      return mdl.step(ch);
    };
    auto expect_equal = [&](const std::vector<StepOutput>& a, const std::vector<StepOutput>& b, const std::string& w) {
      ASSERT_EQ(a.size(), b.size()) << w;
      for (std::size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(same_bits(a[i].logits, b[i].logits)) << w << ", chunk " << i;
        ASSERT_EQ(a[i].samples.size(), 3u) << w;
        for (std::size_t j = 0; j < 3; ++j) EXPECT_EQ(a[i].samples[j].token, b[i].samples[j].token) << w;
      }
    };
    for (const int64_t B : {2, 1}) {
      for (int round = 0; round < 2; ++round) {  // capture, then replay
        const std::string what = std::string(name) + ", B = " + std::to_string(B) + ", round " + std::to_string(round);
        const int64_t before = g.graph_nodes();
        expect_equal(verify(g, sg, B), verify(e, se, B), what);
        if (round == 0) {
          EXPECT_GT(g.graph_nodes(), before) << what << ": the verify step was not captured";
        } else {
          EXPECT_EQ(g.graph_nodes(), before) << what << ": the verify step was captured again";
        }
        EXPECT_EQ(e.graph_nodes(), 0);
        // Keep 2 of the 3 rows (round 0) or all 3 (round 1), then decode one token as a check.
        for (int64_t i = 0; i < B; ++i) {
          const int64_t keep = round == 0 ? 2 : 3;
          g.roll_back(sg[i], g.position(sg[i]) - 3 + keep);
          e.roll_back(se[i], e.position(se[i]) - 3 + keep);
          EXPECT_EQ(g.position(sg[i]), e.position(se[i]));
        }
        draw += 3;
        const int32_t t = 67;
        const auto a = g.step({{.slot = sg[0], .ids = &t, .T = 1, .sample = true, .logits = LogitsOut::Last}});
        const auto b = e.step({{.slot = se[0], .ids = &t, .T = 1, .sample = true, .logits = LogitsOut::Last}});
        EXPECT_TRUE(same_bits(a[0].logits, b[0].logits)) << what << ": the step after the roll-back";
      }
    }
  }
}

// sampled_logits_only (the engine's backends, MemoryPlan::backend_options): the logits buffer
// holds the sampler's rows only, a step asking for more logit rows is refused before it
// changes anything, and sampling steps give the same draws as a model holding every row.
TEST(CudaState, SampledLogitsOnlyHoldsTheSamplersRows) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(nemotron::testing::fixture_dir("nano-moe"));
  CudaModelOptions o = two_slot_options(64, 512, 0);
  CudaModel full(m, o);
  o.sampled_logits_only = true;
  CudaModel small(m, o);
  const int64_t V = m.config.vocab_size;
  auto up = [](int64_t b) { return (b + 255) / 256 * 256; };
  EXPECT_EQ(full.device_bytes() - small.device_bytes(), up(64 * V * 4) - up(2 * V * 4));  // 2 sampled rows
  const auto prompt = state_prompt("nano-moe", 0);
  const auto T0 = static_cast<int64_t>(prompt.size());
  const int a = small.acquire_slot(), b = full.acquire_slot();
  EXPECT_THROW(small.step({{.slot = a, .ids = prompt.data(), .T = 3, .logits = LogitsOut::All}}), nemotron::Error);
  EXPECT_EQ(small.position(a), 0) << "a refused step changed the slot";
  const auto x = small.step({{.slot = a, .ids = prompt.data(), .T = T0, .sample = true, .logits = LogitsOut::Last}});
  const auto y = full.step({{.slot = b, .ids = prompt.data(), .T = T0, .sample = true, .logits = LogitsOut::Last}});
  EXPECT_TRUE(same_bits(x[0].logits, y[0].logits));
  EXPECT_EQ(x[0].sample.token, y[0].sample.token);
}

TEST(CudaState, ErrorsAndLimits) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(nemotron::testing::fixture_dir("super-latent-mtp"));
  const auto prompt = state_prompt("super-latent-mtp", 0);
  const auto T0 = static_cast<int64_t>(prompt.size());
  const auto b = cuda_backend(m, 3, 0, 1);  // one keep_states chunk per step, 17 rows
  EXPECT_TRUE(b->can_roll_back());
  EXPECT_FALSE(b->can_snapshot());
  EXPECT_EQ(b->keep_limits().chunks, 1);
  EXPECT_EQ(b->keep_limits().rows, 17);
  const int s0 = b->acquire_slot(), s1 = b->acquire_slot();
  b->step({{.slot = s0, .ids = prompt.data(), .T = T0}, {.slot = s1, .ids = prompt.data(), .T = T0}});
  const std::vector<int32_t> ids(18, 7);
  // Two keep_states chunks; a chunk of 18 rows; sample_rows outside [1, T]: errors before anything runs.
  EXPECT_THROW(b->step({{.slot = s0, .ids = ids.data(), .T = 2, .keep_states = true},
                        {.slot = s1, .ids = ids.data(), .T = 2, .keep_states = true}}),
               Error);
  EXPECT_THROW(b->step({{.slot = s0, .ids = ids.data(), .T = 18, .keep_states = true}}), Error);
  EXPECT_THROW(b->step({{.slot = s0, .ids = ids.data(), .T = 2, .sample = true, .sample_rows = 3}}), Error);
  EXPECT_THROW(b->step({{.slot = s0, .ids = ids.data(), .T = 2, .sample = true, .sample_rows = 0}}), Error);
  EXPECT_EQ(b->position(s0), T0);
  // roll_back: without a kept chunk, outside it, while a step is in flight, twice.
  EXPECT_THROW(b->roll_back(s0, T0), Error);
  b->step({{.slot = s0, .ids = ids.data(), .T = 4, .sample = true, .sample_rows = 4, .keep_states = true}});
  EXPECT_THROW(b->roll_back(s0, T0 - 1), Error);
  EXPECT_THROW(b->roll_back(s0, T0 + 5), Error);
  b->begin_step({{.slot = s1, .ids = ids.data(), .T = 1}});
  EXPECT_THROW(b->roll_back(s0, T0 + 1), Error);
  b->finish_step();
  b->roll_back(s0, T0 + 1);
  EXPECT_EQ(b->position(s0), T0 + 1);
  EXPECT_THROW(b->roll_back(s0, T0 + 1), Error);
  // A later step of the slot ends what it kept.
  b->step({{.slot = s0, .ids = ids.data(), .T = 3, .keep_states = true}});
  b->step({{.slot = s0, .ids = ids.data(), .T = 1}});
  EXPECT_THROW(b->roll_back(s0, T0 + 2), Error);
  // Snapshots without a pool.
  EXPECT_THROW(b->save_snapshot(s0, 1), Error);
  // No roll-back room at all.
  const auto none = cuda_backend(m, 1, 0, 0);
  EXPECT_FALSE(none->can_roll_back());
  const int sn = none->acquire_slot();
  EXPECT_THROW(none->step({{.slot = sn, .ids = ids.data(), .T = 2, .keep_states = true}}), Error);
}

}  // namespace
