// Decode steps replayed as CUDA graphs (CudaModelOptions::cuda_graphs) against the eager path
// (the same kernels launched one by one, itself tested against the CPU reference and the
// transformers fixtures in test_cuda_model.cpp), and the device argmax against model::argmax.
//
// The graph launches the eager path's kernels with the eager path's launch shapes, so its
// logits and final hidden rows must be bit-identical (compared exactly, tolerance 0), over
// many steps with several sequences at different positions, chunked prefills in between,
// KV pages crossing page boundaries, and slots released and reused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include "cuda_test_util.h"
#include "fixture_util.h"
#include "kernels/elementwise_cuda.h"
#include "kernels/norm_cuda.h"
#include "model/cpu/cpu_forward.h"
#include "model/cuda/cuda_model.h"
#include "runtime/warm_up.h"
#include "util/error.h"

using namespace nemotron::model;
using nemotron::testing::fixture_dir;

namespace {

std::vector<int32_t> synthetic(int64_t n, int64_t V, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  uint32_t x = seed * 2654435761u + 7u;
  for (auto& id : ids) {
    x = x * 1664525u + 1013904223u;
    id = static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(V));
  }
  return ids;
}

// Largest |a - b| (NaN counts as infinite); 0 only when the two are equal value for value.
double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    m = std::max(m, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
  }
  return m;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

CudaModelOptions options(bool graphs) {
  CudaModelOptions o;
  o.max_seqs = 4;
  o.max_step_tokens = 64;
  o.kv_tokens = 2048;
  o.verbose = false;
  o.cuda_graphs = graphs;
  return o;
}

// The same sequences on two models, one replaying decode graphs and one eager. Handles are
// indices into the slot pairs.
class Twin {
 public:
  explicit Twin(const Model& m) : graph_(m, options(true)), eager_(m, options(false)), V_(m.config.vocab_size) {}

  int acquire() {
    const int g = graph_.acquire_slot(), e = eager_.acquire_slot();
    EXPECT_EQ(g, e);  // both pick the lowest free slot
    return g;
  }
  void release(int slot) {
    graph_.release_slot(slot);
    eager_.release_slot(slot);
  }

  // Prefill chunks (eager on both: not decode-only steps); logits must agree exactly.
  void prefill(int slot, const std::vector<int32_t>& ids, int64_t chunk, const std::string& what) {
    for (std::size_t s = 0; s < ids.size(); s += static_cast<std::size_t>(chunk)) {
      const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(ids.size() - s));
      const auto g = graph_.forward({{slot, ids.data() + s, n, true}});
      const auto e = eager_.forward({{slot, ids.data() + s, n, true}});
      EXPECT_TRUE(same_bits(g[0], e[0])) << what << " prefill chunk at " << s << ": max diff " << max_diff(g[0], e[0]);
      next_[slot] = nemotron::model::argmax(e[0].data() + (n - 1) * V_, V_);
    }
  }

  // One decode step: every listed slot feeds its next token (the eager model's greedy choice
  // of the previous step). `greedy`: the graph model runs forward_greedy (ids only) and its
  // ids must equal the host argmax of the eager logits; otherwise forward() logits and the
  // final hidden rows must equal the eager ones bit for bit.
  void decode(const std::vector<int>& slots, bool greedy, const std::string& what) {
    std::vector<int32_t> toks;
    for (int s : slots) toks.push_back(next_.at(s));
    std::vector<CudaChunk> chunks;
    for (std::size_t i = 0; i < slots.size(); ++i) chunks.push_back({slots[i], &toks[i], 1, false});
    const auto e = eager_.forward(chunks);
    std::vector<int32_t> host(slots.size());
    for (std::size_t i = 0; i < slots.size(); ++i) host[i] = nemotron::model::argmax(e[i].data(), V_);
    if (greedy) {
      const auto ids = graph_.forward_greedy(chunks);
      EXPECT_EQ(ids, host) << what << ": device argmax vs host argmax";
    } else {
      const auto g = graph_.forward(chunks);
      ASSERT_EQ(g.size(), e.size());
      for (std::size_t i = 0; i < g.size(); ++i) {
        const double d = max_diff(g[i], e[i]);
        worst_ = std::max(worst_, d);
        EXPECT_TRUE(same_bits(g[i], e[i])) << what << " slot " << slots[i] << " at position "
                                           << eager_.position(slots[i]) << ": max diff " << d;
      }
      EXPECT_TRUE(same_bits(graph_.last_hidden(), eager_.last_hidden())) << what << ": final hidden rows";
    }
    for (std::size_t i = 0; i < slots.size(); ++i) {
      next_[slots[i]] = host[i];
      EXPECT_EQ(graph_.position(slots[i]), eager_.position(slots[i]));
    }
    ++steps_;
  }

  CudaModel graph_, eager_;
  int64_t V_;
  std::map<int, int32_t> next_;
  double worst_ = 0;
  int steps_ = 0;
};

class CudaGraphTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaGraphTest, DecodeGraphEqualsEagerBitForBit) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(fixture_dir(GetParam()));
  const int64_t V = m.config.vocab_size;
  Twin tw(m);
  // a: 21-token prompt in chunks of 8; b: 3 tokens at once; c: a single token.
  const int a = tw.acquire(), b = tw.acquire(), c = tw.acquire();
  tw.prefill(a, synthetic(21, V, 1), 8, "a");
  tw.prefill(b, synthetic(3, V, 2), 3, "b");
  tw.prefill(c, synthetic(1, V, 3), 1, "c");
  // B = 1, 2, 3 over 40 steps: positions cross several page boundaries (pages of 16) at
  // different steps for each sequence; every fourth step checks the greedy path.
  for (int i = 0; i < 40; ++i) {
    std::vector<int> rows{a};
    if (i % 3 != 0) rows.push_back(b);
    if (i % 2 == 0) rows.push_back(c);
    tw.decode(rows, i % 4 == 3, "step " + std::to_string(i));
    if (HasFailure()) return;
  }
  // Release a (its pages and slot), start d in the same slot with a chunked prefill while b
  // and c decode, then continue with the reused slot at a different batch order.
  tw.release(a);
  const int d = tw.acquire();
  EXPECT_EQ(d, a);
  tw.prefill(d, synthetic(19, V, 4), 7, "d");
  for (int i = 0; i < 24; ++i) {
    std::vector<int> rows{c, d};
    if (i % 2 == 0) rows.push_back(b);
    tw.decode(rows, i % 5 == 4, "after reuse, step " + std::to_string(i));
    if (HasFailure()) return;
  }
  // A fourth sequence: B = 4 (all slots).
  const int e = tw.acquire();
  tw.prefill(e, synthetic(17, V, 5), 17, "e");
  for (int i = 0; i < 6; ++i) tw.decode({b, c, d, e}, i == 5, "four rows, step " + std::to_string(i));
  // Graphs off and on again on the graph model: same results either way.
  tw.graph_.set_cuda_graphs(false);
  tw.decode({e, b}, false, "graphs off");
  tw.graph_.set_cuda_graphs(true);
  tw.decode({e, b}, false, "graphs on again");
  std::printf("[ %s ] %d decode steps, graph vs eager max |diff| = %g (bit-identical expected)\n",
              GetParam().c_str(), tw.steps_, tw.worst_);
  EXPECT_EQ(tw.worst_, 0.0);
}

// Mixed steps (a prefill chunk with decode rows) run eagerly; forward_greedy's device argmax of
// each chunk's last row still equals the host argmax of forward()'s logits.
TEST_P(CudaGraphTest, GreedyOnMixedStepsEqualsHostArgmax) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(fixture_dir(GetParam()));
  const int64_t V = m.config.vocab_size;
  CudaModel g(m, options(true)), e(m, options(false));
  const auto p = synthetic(30, V, 9), q = synthetic(12, V, 10);
  const int s0 = g.acquire_slot(), s1 = g.acquire_slot();
  ASSERT_EQ(e.acquire_slot(), s0);
  ASSERT_EQ(e.acquire_slot(), s1);
  const std::vector<CudaChunk> first{{s0, p.data(), 20, false}};
  EXPECT_EQ(g.forward_greedy(first)[0], nemotron::model::argmax(e.forward(first)[0].data(), V));
  const std::vector<CudaChunk> mixed{{s0, p.data() + 20, 1, false}, {s1, q.data(), 12, true}};
  const auto ids = g.forward_greedy(mixed);
  const auto lg = e.forward(mixed);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], nemotron::model::argmax(lg[0].data(), V));
  EXPECT_EQ(ids[1], nemotron::model::argmax(lg[1].data() + 11 * V, V));  // last row of the all_logits chunk
}

// Bad input on a decode step (graph path) throws before anything is launched: positions and
// the sequence state are untouched, so the next valid steps still equal the eager model's.
TEST_P(CudaGraphTest, InvalidDecodeInputThrowsBeforeLaunch) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(fixture_dir(GetParam()));
  const int64_t V = m.config.vocab_size;
  Twin tw(m);
  const int a = tw.acquire(), b = tw.acquire();
  tw.prefill(a, synthetic(5, V, 11), 5, "a");
  tw.prefill(b, synthetic(9, V, 12), 9, "b");
  tw.decode({a, b}, false, "before");  // captures B = 2 and B = 1 below
  tw.decode({a}, false, "before");
  const int64_t pa = tw.graph_.position(a), pb = tw.graph_.position(b);
  const int32_t bad = static_cast<int32_t>(V), neg = -1, ok = 1;
  EXPECT_THROW(tw.graph_.forward({{a, &ok, 1, false}, {b, &bad, 1, false}}), nemotron::Error);
  EXPECT_THROW(tw.graph_.forward_greedy({{a, &neg, 1, false}}), nemotron::Error);
  EXPECT_THROW(tw.graph_.forward({{a, &ok, 1, false}, {a, &ok, 1, false}}), nemotron::Error);  // slot twice
  EXPECT_THROW(tw.graph_.forward_greedy({{3, &ok, 1, false}}), nemotron::Error);              // not in use
  EXPECT_THROW(tw.graph_.forward({{a, nullptr, 1, false}}), nemotron::Error);
  EXPECT_EQ(tw.graph_.position(a), pa);
  EXPECT_EQ(tw.graph_.position(b), pb);
  for (int i = 0; i < 4; ++i) tw.decode({b, a}, i == 3, "after the errors");
  EXPECT_EQ(tw.worst_, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaGraphTest,
                         ::testing::Values("nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4",
                                           "super-mixed-mtp"),
                         nemotron::testing::FixtureParamName());

// A decode step that needs a new KV page when the cache is full throws and leaves the
// sequence where it was (graph path).
TEST(CudaGraph, KvExhaustionOnDecodeIsAnError) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(fixture_dir("nano-moe"));
  CudaModelOptions o = options(true);
  o.max_seqs = 1;
  o.kv_tokens = 16;  // one page, plus one page of slack per slot: 32 positions
  CudaModel g(m, o);
  const int s = g.acquire_slot();
  int32_t tok = 7;
  int64_t fed = 0;
  bool threw = false;
  for (int i = 0; i < 40 && !threw; ++i) {
    try {
      tok = g.forward_greedy({{s, &tok, 1, false}})[0];
      ++fed;
    } catch (const nemotron::Error&) {
      threw = true;
    }
  }
  EXPECT_TRUE(threw);
  EXPECT_EQ(fed, 32);
  EXPECT_EQ(g.position(s), 32);
}

// runtime::warm_up_decode_steps (what `serve` runs at start-up on the GPU) captures the decode
// graph of every batch size before any request: the decode steps after it replay them (no new
// capture), and their tokens equal those of a model that was never warmed up.
TEST(CudaGraph, WarmUpCapturesEveryDecodeBatchSize) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(fixture_dir("nano-moe"));
  CudaModel warm(m, options(true)), cold(m, options(true));
  EXPECT_EQ(warm.graph_nodes(), 0);
  const nemotron::runtime::WarmUpResult w = nemotron::runtime::warm_up_decode_steps(warm, 4, 64, 512);
  EXPECT_EQ(w.batch_sizes, 4);
  const int64_t nodes = warm.graph_nodes();
  EXPECT_GT(nodes, 0);
  auto run = [&](CudaModel& g) {
    std::vector<int> slots;
    for (int i = 0; i < 4; ++i) slots.push_back(g.acquire_slot());
    std::vector<int32_t> tok = {7, 8, 9, 10}, out;
    for (int B = 1; B <= 4; ++B)
      for (int step = 0; step < 3; ++step) {
        std::vector<CudaChunk> chunks;
        for (int i = 0; i < B; ++i) chunks.push_back({slots[i], &tok[i], 1, false});
        const auto next = g.forward_greedy(chunks);
        for (int i = 0; i < B; ++i) tok[i] = next[i];
        out.insert(out.end(), next.begin(), next.end());
      }
    for (int s : slots) g.release_slot(s);
    return out;
  };
  const auto a = run(warm), b = run(cold);
  EXPECT_EQ(warm.graph_nodes(), nodes) << "a decode step captured a graph after the warm-up";
  EXPECT_EQ(a, b);
}

// argmax_rows_f32_cuda against model::argmax: ties (first index wins), NaNs, infinities,
// rows of one value, widths around the block size.
TEST(CudaGraph, DeviceArgmaxEqualsHostArgmax) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const int64_t V : {int64_t{1}, int64_t{7}, int64_t{1023}, int64_t{1024}, int64_t{1025}, int64_t{32772}, int64_t{131072}}) {
    const int64_t R = 12;
    std::vector<float> h(static_cast<std::size_t>(R * V));
    for (auto& v : h) v = std::round(u(rng) * 4.0f) / 4.0f;  // coarse values: many ties
    auto row = [&](int64_t r) { return h.data() + r * V; };
    for (int64_t j = 0; j < V; ++j) row(1)[j] = 1.5f;           // all equal -> 0
    row(2)[V - 1] = 100.0f;                                       // max at the end
    if (V > 3) row(3)[V / 2] = row(3)[V / 3] = row(3)[V - 1] = 50.0f;  // tie: first of them
    row(4)[0] = nan;                                              // first NaN -> 0 (host semantics)
    for (int64_t j = 1; j < V; j += 3) row(5)[j] = nan;           // NaNs skipped
    for (int64_t j = 0; j < V; ++j) row(6)[j] = -inf;             // all -inf -> 0
    row(7)[V - 1] = inf;
    if (V > 2) row(7)[V / 2] = inf;                               // two +inf: the first
    for (int64_t j = 0; j < V; ++j) row(8)[j] = nan;              // all NaN -> 0
    nemotron::testing::DeviceBuffer<float> d(h);
    nemotron::testing::DeviceBuffer<int32_t> out(static_cast<std::size_t>(R));
    nemotron::kernels::argmax_rows_f32_cuda(d.get(), R, V, out.get(), nullptr);
    const auto got = out.download();
    for (int64_t r = 0; r < R; ++r)
      EXPECT_EQ(got[static_cast<std::size_t>(r)], argmax(row(r), V)) << "V = " << V << ", row " << r;
  }
  EXPECT_THROW(nemotron::kernels::argmax_rows_f32_cuda(nullptr, 1, 0, nullptr, nullptr), nemotron::Error);
}

// add2_rmsnorm_f32_cuda (the shared experts' add fused into the next norm) equals
// add_bf16_cuda followed by add_rmsnorm_f32_cuda bit for bit: residual, BF16 and fp32 rows.
TEST(CudaGraph, FusedSharedExpertAddEqualsTwoKernels) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  using nemotron::testing::DeviceBuffer;
  nemotron::testing::Rng rng(3);
  for (const int64_t H : {int64_t{96}, int64_t{2688}}) {
    const int64_t T = 5;
    const std::size_t n = static_cast<std::size_t>(T * H);
    std::vector<float> x(n);
    for (auto& v : x) v = rng.normal(2.0f);
    const auto y = rng.bf16(n, 1.0f, nullptr), y2 = rng.bf16(n, 1.0f, nullptr);
    const auto w = rng.bf16(static_cast<std::size_t>(H), 1.0f, nullptr);
    DeviceBuffer<float> x1(x), x2(x), uf1(n), uf2(n);
    DeviceBuffer<uint16_t> dy(y), dy2(y2), dw(w), sum(n), u1(n), u2(n);
    nemotron::kernels::add_bf16_cuda(dy.get(), dy2.get(), static_cast<int64_t>(n), sum.get(), nullptr);
    nemotron::kernels::add_rmsnorm_f32_cuda(x1.get(), sum.get(), dw.get(), T, H, 1e-5f, u1.get(), uf1.get(), nullptr);
    nemotron::kernels::add2_rmsnorm_f32_cuda(x2.get(), dy.get(), dy2.get(), dw.get(), T, H, 1e-5f, u2.get(), uf2.get(),
                                             nullptr);
    EXPECT_TRUE(same_bits(x1.download(), x2.download())) << "H = " << H << ": residual";
    EXPECT_TRUE(same_bits(uf1.download(), uf2.download())) << "H = " << H << ": fp32 normed rows";
    EXPECT_EQ(u1.download(), u2.download()) << "H = " << H << ": BF16 normed rows";
  }
  EXPECT_THROW(nemotron::kernels::add2_rmsnorm_f32_cuda(nullptr, nullptr, nullptr, nullptr, 1, 8, 1e-5f, nullptr,
                                                        nullptr, nullptr),
               nemotron::Error);
}

}  // namespace
