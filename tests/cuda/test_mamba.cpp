// Mamba-2 decode kernels against the CPU references run with T = 1 per sequence, for a batch
// of sequences in scattered state slots, two consecutive steps (so the carried state is
// checked too). Nano (conv_dim 6144, 64 heads) and Super (10240, 128 heads) dimensions.
// Tolerances: conv state is an exact shift (tol 0); conv output and SSM y: 1e-5 relative to
// the sum of absolute terms + 1e-6; SSM state: 2e-6 ((1 + |dt A|) |decay S| + |dt x B|) + 1e-7
// per step, carried (times decay) into the next step, + 1e-6 |ref| (exp(dt A) amplifies an ulp
// of dt by |dt A|).
#include <cmath>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/mamba.h"
#include "kernels/mamba_cuda.h"

namespace nemotron::testing {
namespace {

struct Dims {
  const char* name;
  int64_t heads, P, N, G, in_proj;  // in_proj: row stride of the in_proj output
};
const Dims kDims[] = {{"nano", 64, 64, 128, 8, 10304}, {"super", 128, 64, 128, 8, 18560}};
const std::vector<int32_t> kSlots = {2, 0, 5};  // B = 3 sequences in 6 slots
constexpr int64_t kNumSlots = 6, K = 4;

TEST(MambaCuda, ConvUpdateSilu) {
  ASSERT_TRUE(have_device());
  Rng rng(21);
  for (const auto& d : kDims) {
    const int64_t di = d.heads * d.P, C = di + 2 * d.G * d.N, B = static_cast<int64_t>(kSlots.size());
    std::vector<float> wf, bf, state(static_cast<std::size_t>(kNumSlots * (K - 1) * C));
    const auto wb = rng.bf16(static_cast<std::size_t>(C * K), 0.5f, &wf);
    const auto bb = rng.bf16(static_cast<std::size_t>(C), 0.5f, &bf);
    for (auto& v : state) v = rng.normal(1.0f);
    DeviceBuffer<uint16_t> dw(wb), dbias(bb);
    DeviceBuffer<float> dstate(state), dout(static_cast<std::size_t>(B * C));
    DeviceBuffer<int32_t> dslot(kSlots);
    for (int step = 0; step < 2; ++step) {
      std::vector<float> zf;
      const auto zx = rng.bf16(static_cast<std::size_t>(B * d.in_proj), 1.0f, &zf);  // whole in_proj rows
      DeviceBuffer<uint16_t> dzx(zx);
      dout.poison();
      kernels::ConvUpdateArgs a;
      a.xbc = dzx.get() + di;  // the xBC slice starts after z
      a.xbc_stride = d.in_proj;
      a.state = dstate.get();
      a.slot = dslot.get();
      a.w = dw.get();
      a.bias = dbias.get();
      a.B = B;
      a.C = C;
      a.K = K;
      a.out = dout.get();
      kernels::conv1d_update_silu_cuda(a, nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> ref(static_cast<std::size_t>(B * C)), tol(ref.size());
      for (int64_t b = 0; b < B; ++b) {
        float* st = state.data() + kSlots[b] * (K - 1) * C;
        const float* x = zf.data() + b * d.in_proj + di;
        for (int64_t c = 0; c < C; ++c) {
          double s = std::fabs(bf[c]) + std::fabs(wf[c * K + K - 1] * x[c]);
          for (int64_t k = 0; k + 1 < K; ++k) s += std::fabs(wf[c * K + k] * st[k * C + c]);
          tol[b * C + c] = 1e-5f * static_cast<float>(s) + 1e-6f;
        }
        kernels::causal_conv1d_silu_cpu(x, st, wf.data(), bf.data(), 1, C, K, ref.data() + b * C);
      }
      const std::string what = std::string("conv_update ") + d.name + " step " + std::to_string(step);
      EXPECT_EQ(report(what + " out", dout.download(), ref, tol), 0u);
      EXPECT_EQ(report(what + " state", dstate.download(), state, std::vector<float>(state.size(), 0.0f)), 0u);
    }
  }
}

TEST(MambaCuda, SsmStateUpdate) {
  ASSERT_TRUE(have_device());
  Rng rng(22);
  for (const auto& d : kDims) {
    const int64_t di = d.heads * d.P, GN = d.G * d.N, C = di + 2 * GN, B = static_cast<int64_t>(kSlots.size());
    std::vector<float> dt_bias(d.heads), A(d.heads), D(d.heads);
    for (int64_t h = 0; h < d.heads; ++h) {
      dt_bias[h] = rng.uniform(-4.0f, 0.5f);
      A[h] = -std::exp(rng.uniform(-1.0f, 2.5f));
      D[h] = rng.normal(1.0f);
    }
    std::vector<float> state(static_cast<std::size_t>(kNumSlots * d.heads * d.P * d.N));
    for (auto& v : state) v = rng.normal(0.5f);
    DeviceBuffer<float> ddtb(dt_bias), dA(A), dD(D), dstate(state), dy(static_cast<std::size_t>(B * di));
    DeviceBuffer<int32_t> dslot(kSlots);
    // State tolerance, carried across steps: exp(dt*A) turns an ulp of difference in dt (softplus
    // and exp of different libms) into |dt*A| ulps of the decayed state.
    std::vector<float> stol(state.size(), 0.0f);
    for (int step = 0; step < 2; ++step) {
      std::vector<float> xbc(static_cast<std::size_t>(B * C)), zf;
      for (auto& v : xbc) v = rng.normal(1.0f);
      // dt_raw: the last `heads` columns of each in_proj row (BF16); values spread over the
      // softplus range, including > 20 where softplus is the identity.
      auto zx = rng.bf16(static_cast<std::size_t>(B * d.in_proj), 1.0f, &zf);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < d.heads; ++h) {
          const std::size_t i = static_cast<std::size_t>(b * d.in_proj + d.in_proj - d.heads + h);
          zx[i] = kernels::float_to_bf16(h % 17 == 0 ? 25.0f : rng.uniform(-6.0f, 4.0f));
          zf[i] = kernels::bf16_to_float(zx[i]);
        }
      DeviceBuffer<float> dxbc(xbc);
      DeviceBuffer<uint16_t> dzx(zx);
      dy.poison();
      kernels::SsmUpdateArgs a;
      a.xbc = dxbc.get();
      a.xbc_stride = C;
      a.dt_raw = dzx.get() + (d.in_proj - d.heads);
      a.dt_stride = d.in_proj;
      a.dt_bias = ddtb.get();
      a.A = dA.get();
      a.D = dD.get();
      a.state = dstate.get();
      a.slot = dslot.get();
      a.B = B;
      a.heads = d.heads;
      a.head_dim = d.P;
      a.state_dim = d.N;
      a.groups = d.G;
      a.y = dy.get();
      kernels::ssm_state_update_cuda(a, nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> ref(static_cast<std::size_t>(B * di)), tol(ref.size());
      kernels::SsmDims dims{d.heads, d.P, d.N, d.G};
      for (int64_t b = 0; b < B; ++b) {
        const float* row = xbc.data() + b * C;
        const float* dtr = zf.data() + b * d.in_proj + d.in_proj - d.heads;
        float* S = state.data() + kSlots[b] * d.heads * d.P * d.N;
        float* St = stol.data() + kSlots[b] * d.heads * d.P * d.N;
        for (int64_t h = 0; h < d.heads; ++h) {
          const float v = dtr[h] + dt_bias[h];
          const float dt = v > 20.0f ? v : std::log1p(std::exp(v));
          const float decay = std::exp(dt * A[h]);
          const int64_t g = h / (d.heads / d.G);
          for (int64_t p = 0; p < d.P; ++p)
            for (int64_t n = 0; n < d.N; ++n) {
              const int64_t i = (h * d.P + p) * d.N + n;
              const float term = std::fabs(dt * row[h * d.P + p] * row[di + g * d.N + n]);
              St[i] = decay * St[i] + 2e-6f * ((1.0f + std::fabs(dt * A[h])) * std::fabs(decay * S[i]) + term) + 1e-7f;
            }
        }
        kernels::ssm_scan_cpu(row, dtr, row + di, row + di + GN, dt_bias.data(), A.data(), D.data(), dims, 0.0f,
                              INFINITY, 1, S, ref.data() + b * di);
        for (int64_t h = 0; h < d.heads; ++h)
          for (int64_t p = 0; p < d.P; ++p) {
            const int64_t g = h / (d.heads / d.G);
            double s = std::fabs(D[h] * row[h * d.P + p]);
            for (int64_t n = 0; n < d.N; ++n)
              s += std::fabs(S[(h * d.P + p) * d.N + n] * row[di + GN + g * d.N + n]);
            tol[b * di + h * d.P + p] = 1e-5f * static_cast<float>(s) + 1e-6f;
          }
      }
      const std::string what = std::string("ssm_update ") + d.name + " step " + std::to_string(step);
      EXPECT_EQ(report(what + " y", dy.download(), ref, tol), 0u);
      std::vector<float> tol_state(state.size());
      for (std::size_t i = 0; i < state.size(); ++i) tol_state[i] = stol[i] + 1e-6f * std::fabs(state[i]);
      EXPECT_EQ(report(what + " state", dstate.download(), state, tol_state), 0u);
    }
  }
}

TEST(MambaCuda, RejectsBadArguments) {
  kernels::SsmUpdateArgs a;
  a.B = 1;
  a.heads = 6;
  a.groups = 4;  // does not divide heads
  EXPECT_THROW(kernels::ssm_state_update_cuda(a, nullptr), Error);
  kernels::ConvUpdateArgs c;
  c.B = 1;
  c.C = 8;
  c.K = 9;  // > 8
  EXPECT_THROW(kernels::conv1d_update_silu_cuda(c, nullptr), Error);
}

}  // namespace
}  // namespace nemotron::testing
