// gate_logits_bf16_cuda (the decode router gate: up to 8 BF16 rows) against a double-precision
// CPU dot product on the same BF16 values (tolerance 1e-5 of the absolute dot sum), at the Nano
// (128 x 2688) and Super (512 x 4096) gate shapes and odd ones, T = 1..8; a row's logits do not
// depend on the other rows of the call (batch = alone, bit for bit).
#include <cmath>
#include <cstring>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/moe_cuda.h"

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

}  // namespace
}  // namespace nemotron::testing
