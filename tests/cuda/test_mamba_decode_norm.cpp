// ssm_update_gated_norm_cuda (decode SSM update fused with the gated group RMSNorm) against the
// two kernels it replaces, each tested against the CPU references (test_mamba.cpp,
// test_norm.cpp): ssm_state_update_cuda then gated_rmsnorm_cuda. Nano and Super dimensions,
// three sequences in scattered slots, three consecutive steps. The states must be bit-identical
// (same per-element arithmetic); the outputs may differ only by the order of the fp32 sum of
// squares (per head, then heads in order, vs one block sum): 2^-7 of |ref| + 1e-6. The
// workspace counters must be back at zero after every launch.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/mamba_cuda.h"
#include "kernels/norm_cuda.h"

namespace nemotron::testing {
namespace {

struct Dims {
  const char* name;
  int64_t heads, P, N, G, in_proj;
};

TEST(MambaDecodeNorm, FusedEqualsSsmUpdateThenGatedNorm) {
  ASSERT_TRUE(have_device());
  const Dims dims[] = {{"nano", 64, 64, 128, 8, 10304}, {"super", 128, 64, 128, 8, 18560}};
  const std::vector<int32_t> slots = {2, 0, 5};
  const int64_t S = 6, B = 3;
  Rng rng(7);
  for (const auto& d : dims) {
    const int64_t di = d.heads * d.P, C = di + 2 * d.G * d.N;
    std::vector<float> state(static_cast<std::size_t>(S * d.heads * d.P * d.N));
    for (auto& v : state) v = rng.normal(0.5f);
    std::vector<float> dt_bias(static_cast<std::size_t>(d.heads)), A(dt_bias.size()), D(dt_bias.size());
    for (auto& v : dt_bias) v = rng.normal(0.5f);
    for (auto& v : A) v = -std::exp(rng.normal(0.5f));
    for (auto& v : D) v = rng.normal(1.0f);
    std::vector<float> wf;
    const auto wb = rng.bf16(static_cast<std::size_t>(di), 1.0f, &wf);
    DeviceBuffer<float> st_ref(state), st_fused(state), ddtb(dt_bias), dA(A), dD(D);
    DeviceBuffer<uint16_t> dw(wb);
    DeviceBuffer<int32_t> dslot(slots);
    const int64_t ws_bytes = kernels::mamba_decode_workspace_bytes(B, d.heads, d.G);
    DeviceBuffer<uint8_t> ws(std::vector<uint8_t>(static_cast<std::size_t>(ws_bytes), 0));
    for (int step = 0; step < 3; ++step) {
      std::vector<float> xbc(static_cast<std::size_t>(B * C));
      for (auto& v : xbc) v = rng.normal(1.0f);
      const auto zx = rng.bf16(static_cast<std::size_t>(B * d.in_proj), 1.0f, nullptr);  // z | xBC | dt rows
      DeviceBuffer<float> dxbc(xbc), y_ref(static_cast<std::size_t>(B * di)), y_fused(static_cast<std::size_t>(B * di));
      DeviceBuffer<uint16_t> dzx(zx), out_ref(static_cast<std::size_t>(B * di)), out_fused(static_cast<std::size_t>(B * di));
      kernels::SsmUpdateArgs a;
      a.xbc = dxbc.get();
      a.xbc_stride = C;
      a.dt_raw = dzx.get() + di + C;
      a.dt_stride = d.in_proj;
      a.dt_bias = ddtb.get();
      a.A = dA.get();
      a.D = dD.get();
      a.slot = dslot.get();
      a.B = B;
      a.heads = d.heads;
      a.head_dim = d.P;
      a.state_dim = d.N;
      a.groups = d.G;
      a.state = st_ref.get();
      a.y = y_ref.get();
      kernels::ssm_state_update_cuda(a, nullptr);
      kernels::gated_rmsnorm_cuda(y_ref.get(), dzx.get(), d.in_proj, dw.get(), B, di, di / d.G, 1e-5f, out_ref.get(),
                                  nullptr);
      kernels::SsmDecodeNormArgs f;
      f.ssm = a;
      f.ssm.state = st_fused.get();
      f.ssm.y = y_fused.get();
      f.z = dzx.get();
      f.z_stride = d.in_proj;
      f.w = dw.get();
      f.eps = 1e-5f;
      f.out = out_fused.get();
      f.workspace = ws.get();
      ASSERT_NO_THROW(kernels::ssm_update_gated_norm_cuda(f, nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto s1 = st_ref.download(), s2 = st_fused.download();
      EXPECT_EQ(std::memcmp(s1.data(), s2.data(), s1.size() * 4), 0) << d.name << " step " << step << ": states differ";
      const auto r = bf16_to_f32(out_ref.download()), g = bf16_to_f32(out_fused.download());
      std::vector<float> tol(r.size());
      for (std::size_t i = 0; i < r.size(); ++i) tol[i] = std::ldexp(std::fabs(r[i]), -7) + 1e-6f;
      EXPECT_EQ(report(std::string(d.name) + " fused decode SSM + gated norm, step " + std::to_string(step), g, r, tol),
                0u);
      const auto counters = ws.download();
      const std::size_t off = static_cast<std::size_t>(B * d.heads) * 4;
      for (std::size_t i = off; i < off + static_cast<std::size_t>(B * d.G) * 4; ++i)
        ASSERT_EQ(counters[i], 0) << "counter byte " << i << " not reset";
    }
  }
}

}  // namespace
}  // namespace nemotron::testing
