// gate_logits_bf16_cuda (the decode router gate: up to 8 BF16 rows) against a double-precision
// CPU dot product on the same BF16 values (tolerance 1e-5 of the absolute dot sum), at the Nano
// (128 x 2688) and Super (512 x 4096) gate shapes and odd ones, T = 1..8; a row's logits do not
// depend on the other rows of the call (batch = alone, bit for bit). gate_route_bf16_cuda (the
// fused gate + top-k of decode) against the two launches it replaces, bit for bit, and its
// ids against route_topk_cpu.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/moe_cuda.h"
#include "kernels/moe_router.h"

namespace nemotron::testing {
namespace {

void check_gate(int64_t E, int64_t H, int64_t T, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> xf, wf;
  const auto xb = rng.bf16(static_cast<std::size_t>(T * H), 1.0f, &xf);
  const auto wb = rng.bf16(static_cast<std::size_t>(E * H), 0.02f, &wf);
  DeviceBuffer<uint16_t> dx(xb), dw(wb);
  DeviceBuffer<float> dl(static_cast<std::size_t>(T * E));
  dl.poison();
  ASSERT_NO_THROW(kernels::gate_logits_bf16_cuda(dx.get(), dw.get(), T, E, H, dl.get(), nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = dl.download();
  std::vector<float> ref(got.size()), tol(got.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e) {
      double s = 0, sa = 0;
      for (int64_t i = 0; i < H; ++i) {
        const double p = static_cast<double>(xf[t * H + i]) * wf[e * H + i];
        s += p;
        sa += std::fabs(p);
      }
      ref[t * E + e] = static_cast<float>(s);
      tol[t * E + e] = static_cast<float>(1e-5 * sa) + 1e-30f;
    }
  EXPECT_EQ(report("gate E=" + std::to_string(E) + " H=" + std::to_string(H) + " T=" + std::to_string(T), got, ref, tol),
            0u);
  // Row t alone gives the same bits as row t inside the batch.
  for (int64_t t = 0; t < T; t += 3) {
    DeviceBuffer<float> one(static_cast<std::size_t>(E));
    ASSERT_NO_THROW(kernels::gate_logits_bf16_cuda(dx.get() + t * H, dw.get(), 1, E, H, one.get(), nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const auto alone = one.download();
    EXPECT_EQ(std::memcmp(alone.data(), got.data() + t * E, static_cast<std::size_t>(E) * 4), 0) << "row " << t;
  }
}

TEST(GateLogitsCuda, MatchesCpuAtRouterShapes) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 1;
  for (int64_t T : {1, 2, 5, 8}) {
    check_gate(128, 2688, T, seed++);
    check_gate(512, 4096, T, seed++);
  }
  check_gate(5, 96, 3, seed++);
  check_gate(1, 8, 1, seed++);
  check_gate(33, 1000, 7, seed++);
}

TEST(GateLogitsCuda, RejectsBadArguments) {
  ASSERT_TRUE(have_device());
  DeviceBuffer<uint16_t> x(std::vector<uint16_t>(16 * 64, 0)), w(std::vector<uint16_t>(4 * 64, 0));
  DeviceBuffer<float> l(std::vector<float>(16 * 4, 0.0f));
  EXPECT_THROW(kernels::gate_logits_bf16_cuda(x.get(), w.get(), 9, 4, 64, l.get(), nullptr), Error);  // > 8 rows
  EXPECT_THROW(kernels::gate_logits_bf16_cuda(x.get(), w.get(), 1, 4, 60, l.get(), nullptr), Error);  // H % 8
  EXPECT_THROW(kernels::gate_logits_bf16_cuda(nullptr, w.get(), 1, 4, 64, l.get(), nullptr), Error);
  EXPECT_NO_THROW(kernels::gate_logits_bf16_cuda(x.get(), w.get(), 0, 4, 64, l.get(), nullptr));
}

// The fused launch, repeated `reps` times on one counter (the routing block must reset it),
// equals gate_logits_bf16_cuda + route_topk_cuda: logits, ids and weights bit for bit; the
// ids equal route_topk_cpu's on those logits.
void check_fused(const kernels::RouterParams& p, int64_t H, int64_t T, bool with_bias, uint64_t seed, int reps = 3) {
  const std::string name = "E=" + std::to_string(p.experts) + " k=" + std::to_string(p.top_k) + " H=" +
                           std::to_string(H) + " T=" + std::to_string(T);
  Rng rng(seed);
  const int64_t E = p.experts, k = p.top_k;
  const auto xb = rng.bf16(static_cast<std::size_t>(T * H), 1.0f, nullptr);
  const auto wb = rng.bf16(static_cast<std::size_t>(E * H), 0.05f, nullptr);
  std::vector<float> bias(static_cast<std::size_t>(E));
  for (auto& v : bias) v = rng.uniform(-0.2f, 0.2f);
  DeviceBuffer<uint16_t> dx(xb), dw(wb);
  DeviceBuffer<float> db(bias), l1(static_cast<std::size_t>(T * E)), l2(static_cast<std::size_t>(T * E));
  DeviceBuffer<float> w1(static_cast<std::size_t>(T * k)), w2(static_cast<std::size_t>(T * k));
  DeviceBuffer<int32_t> i1(static_cast<std::size_t>(T * k)), i2(static_cast<std::size_t>(T * k));
  DeviceBuffer<unsigned> counter(std::vector<unsigned>{0u});
  const float* bp = with_bias ? db.get() : nullptr;
  ASSERT_NO_THROW(kernels::gate_logits_bf16_cuda(dx.get(), dw.get(), T, E, H, l1.get(), nullptr));
  ASSERT_NO_THROW(kernels::route_topk_cuda(l1.get(), bp, p, T, i1.get(), w1.get(), nullptr));
  for (int r = 0; r < reps; ++r) {
    l2.poison();
    w2.poison();
    i2.poison();
    ASSERT_NO_THROW(kernels::gate_route_bf16_cuda(dx.get(), dw.get(), bp, p, T, H, l2.get(), i2.get(), w2.get(),
                                                  counter.get(), nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const auto a = l1.download(), b = l2.download(), wa = w1.download(), wbb = w2.download();
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << name << ": logits differ (rep " << r << ")";
    EXPECT_EQ(i1.download(), i2.download()) << name << ": ids differ (rep " << r << ")";
    EXPECT_EQ(std::memcmp(wa.data(), wbb.data(), wa.size() * 4), 0) << name << ": weights differ (rep " << r << ")";
    EXPECT_EQ(counter.download()[0], 0u) << name << ": the counter must be left at 0";
  }
  const auto logits = l2.download();
  std::vector<int32_t> rid(static_cast<std::size_t>(T * k));
  std::vector<float> rw(rid.size());
  for (int64_t t = 0; t < T; ++t)
    kernels::route_topk_cpu(logits.data() + t * E, with_bias ? bias.data() : nullptr, p, rid.data() + t * k,
                            rw.data() + t * k);
  EXPECT_EQ(i2.download(), rid) << name << ": ids differ from route_topk_cpu";
}

TEST(GateLogitsCuda, FusedRoutingEqualsGateThenTopk) {
  ASSERT_TRUE(have_device());
  using kernels::RouterParams;
  uint64_t seed = 100;
  for (int64_t T : {1, 2, 5, 8}) check_fused(RouterParams{128, 6, 1, 1, true, 2.5f}, 2688, T, true, seed++);  // Nano
  check_fused(RouterParams{16, 4, 1, 1, true, 1.0f}, 64, 3, true, seed++, 20);  // fixtures; one counter, 20 calls
  check_fused(RouterParams{37, 37, 1, 1, true, 1.0f}, 96, 7, false, seed++);     // k = E, odd E, no bias
  check_fused(RouterParams{256, 64, 1, 1, false, 1.0f}, 512, 8, true, seed++);  // the most experts, k = 64
  check_fused(RouterParams{1, 1, 1, 1, true, 1.0f}, 8, 1, true, seed++);
  check_fused(RouterParams{200, 9, 1, 1, true, 2.5f}, 1000, 4, true, seed++);
}

TEST(GateLogitsCuda, FusedRoutingRejectsWhatItCannotRoute) {
  ASSERT_TRUE(have_device());
  using kernels::RouterParams;
  EXPECT_TRUE(kernels::gate_route_fused(RouterParams{128, 6, 1, 1, true, 2.5f}, 8));
  EXPECT_FALSE(kernels::gate_route_fused(RouterParams{128, 6, 1, 1, true, 2.5f}, 9));     // > 8 rows
  EXPECT_FALSE(kernels::gate_route_fused(RouterParams{512, 22, 1, 1, true, 5.0f}, 1));    // Super: > 256 experts
  EXPECT_FALSE(kernels::gate_route_fused(RouterParams{256, 8, 8, 4, true, 2.5f}, 1));     // grouped
  EXPECT_FALSE(kernels::gate_route_fused(RouterParams{256, 100, 1, 1, true, 1.0f}, 1));  // k > 64
  DeviceBuffer<uint16_t> x(std::vector<uint16_t>(8 * 64, 0)), w(std::vector<uint16_t>(512 * 64, 0));
  DeviceBuffer<float> l(std::vector<float>(8 * 512, 0.0f)), wt(std::vector<float>(8 * 22, 0.0f));
  DeviceBuffer<int32_t> ids(std::vector<int32_t>(8 * 22, 0));
  DeviceBuffer<unsigned> counter(std::vector<unsigned>{0u});
  EXPECT_THROW(kernels::gate_route_bf16_cuda(x.get(), w.get(), nullptr, RouterParams{512, 22, 1, 1, true, 5.0f}, 1, 64,
                                             l.get(), ids.get(), wt.get(), counter.get(), nullptr),
               Error);
  EXPECT_THROW(kernels::gate_route_bf16_cuda(x.get(), w.get(), nullptr, RouterParams{16, 4, 1, 1, true, 1.0f}, 1, 60,
                                             l.get(), ids.get(), wt.get(), counter.get(), nullptr),
               Error);  // H % 8
  EXPECT_THROW(kernels::gate_route_bf16_cuda(x.get(), w.get(), nullptr, RouterParams{16, 4, 1, 1, true, 1.0f}, 1, 64,
                                             l.get(), ids.get(), wt.get(), nullptr, nullptr),
               Error);  // no counter
  EXPECT_NO_THROW(kernels::gate_route_bf16_cuda(x.get(), w.get(), nullptr, RouterParams{16, 4, 1, 1, true, 1.0f}, 0,
                                                64, l.get(), ids.get(), wt.get(), counter.get(), nullptr));
}

}  // namespace
}  // namespace nemotron::testing
