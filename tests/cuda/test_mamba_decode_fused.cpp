// Fused Mamba-2 decode (mamba_decode_fused_cuda) against (1) the CPU references run with T = 1
// per row (causal_conv1d_silu_cpu, ssm_scan_cpu, gated_rmsnorm_cpu on the same BF16 inputs) and
// (2) the three-kernel GPU path the model uses otherwise (conv1d_prefill_silu_cuda +
// ssm_scan_cuda + gated_rmsnorm_cuda), for rows in scattered state slots over three consecutive
// steps (carried states checked after each), with fixture, Nano and Super dims and odd shapes
// (3 heads per group; state 64 with K = 3 and a dt clamp; 4 heads per block over 5 SSM passes;
// state 256 with K = 2).
// Tolerances vs CPU: conv state exact (a shift); each conv output x within e(x) = 4e-7 (|bias| +
// sum_k |w window|) + 2.4e-7 |x| (sum order, libm exp); SSM state as test_mamba.cpp (carried
// 2e-6 ((1 + |dt A|) |decay S| + |dt x B|) + 1e-7 per step, + 1e-6 |S|) plus the conv errors
// |dt| (e(x) |B| + |x| e(B)); out: one BF16 rounding 2^-7 |ref| + the y tolerance of
// test_mamba.cpp (1e-5 (|D x| + sum_n |S C|) + 1e-6, plus |D| e(x) + sum_n |S| e(C)) carried
// through the gate and the norm (x 2 |silu(z) w| inv) + 1e-6.
// Vs the GPU path: conv state bit for bit, SSM state within the CPU tolerance (same per-element
// expressions; bit-identity is printed, not required), out within one BF16 rounding (the group
// norm's sum of squares is reduced in another order).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/mamba.h"
#include "kernels/mamba_cuda.h"
#include "kernels/norm.h"
#include "kernels/norm_cuda.h"
#include "kernels/state_round.h"

namespace nemotron::testing {
namespace {

struct Dims {
  const char* name;
  int64_t heads, P, N, G, K;
  float dt_min, dt_max;
  int64_t di() const { return heads * P; }
  int64_t GN() const { return G * N; }
  int64_t C() const { return di() + 2 * GN(); }
  int64_t W() const { return di() + C() + heads; }  // in_proj row: z | xBC | dt
};
constexpr float kInf = std::numeric_limits<float>::infinity();
const Dims kDims[] = {{"fixture", 8, 16, 16, 2, 4, 0.0f, kInf},
                      {"nano", 64, 64, 128, 8, 4, 0.0f, kInf},
                      {"super", 128, 64, 128, 8, 4, 0.0f, kInf},
                      {"odd hpg=3", 12, 32, 32, 4, 4, 0.0f, kInf},
                      {"N=64 K=3 clamp", 16, 24, 64, 2, 3, 1e-3f, 0.5f},
                      {"4 heads per block, 5 passes", 64, 40, 32, 2, 4, 0.0f, kInf},
                      {"N=256", 8, 16, 256, 2, 2, 0.0f, kInf}};
const std::vector<int32_t> kSlots = {2, 0, 5};
constexpr int64_t kNumSlots = 6;
constexpr float kEps = 1e-5f;

struct Weights {
  std::vector<uint16_t> conv_w, conv_b, norm_w;
  std::vector<float> conv_wf, conv_bf, norm_wf, dt_bias, A, D;
};

Weights make_weights(const Dims& d, Rng& rng) {
  Weights w;
  w.conv_w = rng.bf16(static_cast<std::size_t>(d.C() * d.K), 0.5f, &w.conv_wf);
  w.conv_b = rng.bf16(static_cast<std::size_t>(d.C()), 0.5f, &w.conv_bf);
  w.norm_w = rng.bf16(static_cast<std::size_t>(d.di()), 0.3f, &w.norm_wf);
  for (std::size_t i = 0; i < w.norm_w.size(); ++i) {
    w.norm_w[i] = kernels::float_to_bf16(1.0f + w.norm_wf[i]);
    w.norm_wf[i] = kernels::bf16_to_float(w.norm_w[i]);
  }
  for (int64_t h = 0; h < d.heads; ++h) {
    w.dt_bias.push_back(rng.uniform(-4.0f, 0.5f));
    w.A.push_back(-std::exp(rng.uniform(-1.0f, 2.5f)));
    w.D.push_back(rng.normal(1.0f));
  }
  return w;
}

// One step's in_proj rows [R, W]: z, xBC ~ N(0, 1); dt_raw spread over the softplus range,
// including > 20 where softplus is the identity.
std::vector<uint16_t> make_in_proj(const Dims& d, int64_t R, Rng& rng, std::vector<float>* f) {
  auto b = rng.bf16(static_cast<std::size_t>(R * d.W()), 1.0f, f);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t h = 0; h < d.heads; ++h) {
      const std::size_t i = static_cast<std::size_t>(r * d.W() + d.di() + d.C() + h);
      b[i] = kernels::float_to_bf16(h % 17 == 0 ? 25.0f : rng.uniform(-6.0f, 4.0f));
      (*f)[i] = kernels::bf16_to_float(b[i]);
    }
  return b;
}

// Device copies of one path's states and weights.
struct DevicePath {
  DeviceBuffer<float> conv, ssm, dtb, A, D;
  DeviceBuffer<uint16_t> cw, cb, nw;
  DevicePath(const Weights& w, const std::vector<float>& conv_state, const std::vector<float>& ssm_state)
      : conv(conv_state), ssm(ssm_state), dtb(w.dt_bias), A(w.A), D(w.D), cw(w.conv_w), cb(w.conv_b), nw(w.norm_w) {}
};

// dt / row_pos: the SSM state's storage (p.ssm then holds 16-bit codes, two per float).
void run_fused(const Dims& d, DevicePath& p, const uint16_t* in, const int32_t* slot, int64_t R, uint16_t* out,
               kernels::StateDType dt = kernels::StateDType::F32, const int32_t* row_pos = nullptr) {
  kernels::MambaDecodeArgs a;
  a.state_dtype = dt;
  a.state_layer = 3;
  a.row_pos = row_pos;
  a.in_proj = in;
  a.in_stride = d.W();
  a.conv_state = p.conv.get();
  a.conv_w = p.cw.get();
  a.conv_b = p.cb.get();
  a.state = p.ssm.get();
  a.dt_bias = p.dtb.get();
  a.A = p.A.get();
  a.D = p.D.get();
  a.norm_w = p.nw.get();
  a.slot = slot;
  a.rows = R;
  a.heads = d.heads;
  a.head_dim = d.P;
  a.state_dim = d.N;
  a.groups = d.G;
  a.K = d.K;
  a.dt_min = d.dt_min;
  a.dt_max = d.dt_max;
  a.eps = kEps;
  a.out = out;
  kernels::mamba_decode_fused_cuda(a, nullptr);
}

// The model's three-kernel path (one row per sequence).
void run_unfused(const Dims& d, DevicePath& p, const uint16_t* in, const int32_t* slot, const int32_t* cu, int64_t R,
                 float* conv_out, float* y, uint16_t* out, kernels::StateDType dt = kernels::StateDType::F32,
                 const int32_t* row_pos = nullptr) {
  kernels::ConvPrefillArgs ca;
  ca.xbc = in + d.di();
  ca.xbc_stride = d.W();
  ca.state = p.conv.get();
  ca.slot = slot;
  ca.cu_rows = cu;
  ca.w = p.cw.get();
  ca.bias = p.cb.get();
  ca.B = R;
  ca.rows = R;
  ca.C = d.C();
  ca.K = d.K;
  ca.out = conv_out;
  kernels::conv1d_prefill_silu_cuda(ca, nullptr);
  kernels::SsmScanArgs sa;
  sa.xbc = conv_out;
  sa.xbc_stride = d.C();
  sa.dt_raw = in + d.di() + d.C();
  sa.dt_stride = d.W();
  sa.dt_bias = p.dtb.get();
  sa.A = p.A.get();
  sa.D = p.D.get();
  sa.state = p.ssm.get();
  sa.state_dtype = dt;
  sa.state_layer = 3;
  sa.row_pos = row_pos;
  sa.slot = slot;
  sa.cu_rows = cu;
  sa.B = R;
  sa.rows = R;
  sa.heads = d.heads;
  sa.head_dim = d.P;
  sa.state_dim = d.N;
  sa.groups = d.G;
  sa.dt_min = d.dt_min;
  sa.dt_max = d.dt_max;
  sa.y = y;
  kernels::ssm_scan_cuda(sa, nullptr);
  kernels::gated_rmsnorm_cuda(y, in, d.W(), p.nw.get(), R, d.di(), d.di() / d.G, kEps, out, nullptr);
}

void check_dims(const Dims& d, const std::vector<int32_t>& slots, uint64_t seed) {
  Rng rng(seed);
  const int64_t R = static_cast<int64_t>(slots.size()), di = d.di(), C = d.C(), GN = d.GN(), W = d.W();
  const int64_t conv_per = (d.K - 1) * C, ssm_per = d.heads * d.P * d.N, group = di / d.G;
  const Weights w = make_weights(d, rng);
  std::vector<float> conv_state(static_cast<std::size_t>(kNumSlots * conv_per)),
      ssm_state(static_cast<std::size_t>(kNumSlots * ssm_per)), stol(ssm_state.size(), 0.0f);
  for (auto& v : conv_state) v = rng.normal(1.0f);
  for (auto& v : ssm_state) v = rng.normal(0.5f);
  DevicePath fused(w, conv_state, ssm_state), unfused(w, conv_state, ssm_state);
  std::vector<int32_t> cu(static_cast<std::size_t>(R + 1));
  for (int64_t r = 0; r <= R; ++r) cu[static_cast<std::size_t>(r)] = static_cast<int32_t>(r);
  DeviceBuffer<int32_t> dslot(slots), dcu(cu);
  DeviceBuffer<float> conv_out(static_cast<std::size_t>(R * C)), ybuf(static_cast<std::size_t>(R * di));
  DeviceBuffer<uint16_t> out_f(static_cast<std::size_t>(R * di)), out_u(static_cast<std::size_t>(R * di));
  const kernels::SsmDims sd{d.heads, d.P, d.N, d.G};
  for (int step = 0; step < 3; ++step) {
    std::vector<float> inf;
    const auto in = make_in_proj(d, R, rng, &inf);
    DeviceBuffer<uint16_t> din(in);
    out_f.poison();
    out_u.poison();
    run_fused(d, fused, din.get(), dslot.get(), R, out_f.get());
    run_unfused(d, unfused, din.get(), dslot.get(), dcu.get(), R, conv_out.get(), ybuf.get(), out_u.get());
    CUDA_OK(cudaDeviceSynchronize());

    // CPU reference, row by row, with the tolerances of the header comment.
    std::vector<float> ref(static_cast<std::size_t>(R * di)), tol(ref.size());
    for (int64_t r = 0; r < R; ++r) {
      const float* row = inf.data() + r * W;
      float* cst = conv_state.data() + slots[r] * conv_per;
      float* S = ssm_state.data() + slots[r] * ssm_per;
      float* St = stol.data() + slots[r] * ssm_per;
      std::vector<float> xbc(static_cast<std::size_t>(C)), y(static_cast<std::size_t>(di)), ytol(y.size());
      // Absolute error bound of each conv output (fp32 sums in another order, another libm's
      // exp in the SiLU): 4e-7 (|bias| + sum_k |w window|) + 2.4e-7 |out|.
      std::vector<float> xerr(static_cast<std::size_t>(C));
      for (int64_t ch = 0; ch < C; ++ch) {
        double a = std::fabs(w.conv_bf[ch]) + std::fabs(w.conv_wf[ch * d.K + d.K - 1] * row[di + ch]);
        for (int64_t k = 0; k + 1 < d.K; ++k) a += std::fabs(w.conv_wf[ch * d.K + k] * cst[k * C + ch]);
        xerr[ch] = static_cast<float>(4e-7 * a);
      }
      kernels::causal_conv1d_silu_cpu(row + di, cst, w.conv_wf.data(), w.conv_bf.data(), 1, C, d.K, xbc.data());
      for (int64_t ch = 0; ch < C; ++ch) xerr[ch] += 2.4e-7f * std::fabs(xbc[ch]);
      for (int64_t h = 0; h < d.heads; ++h) {
        const float v = row[di + C + h] + w.dt_bias[h];
        const float dt = std::fmin(std::fmax(v > 20.0f ? v : std::log1p(std::exp(v)), d.dt_min), d.dt_max);
        const float decay = std::exp(dt * w.A[h]);
        const int64_t g = h / (d.heads / d.G);
        for (int64_t p = 0; p < d.P; ++p)
          for (int64_t n = 0; n < d.N; ++n) {
            const int64_t i = (h * d.P + p) * d.N + n;
            const int64_t xc = h * d.P + p, bc = di + g * d.N + n;
            const float term = std::fabs(dt * xbc[xc] * xbc[bc]);
            const float conv_term = std::fabs(dt) * (xerr[xc] * std::fabs(xbc[bc]) + std::fabs(xbc[xc]) * xerr[bc]);
            St[i] = decay * St[i] + 2e-6f * ((1.0f + std::fabs(dt * w.A[h])) * std::fabs(decay * S[i]) + term) +
                    conv_term + 1e-7f;
          }
      }
      kernels::ssm_scan_cpu(xbc.data(), row + di + C, xbc.data() + di, xbc.data() + di + GN, w.dt_bias.data(),
                            w.A.data(), w.D.data(), sd, d.dt_min, d.dt_max, 1, S, y.data());
      for (int64_t h = 0; h < d.heads; ++h)
        for (int64_t p = 0; p < d.P; ++p) {
          const int64_t g = h / (d.heads / d.G);
          double s = std::fabs(w.D[h] * xbc[h * d.P + p]);
          double e = std::fabs(w.D[h]) * xerr[h * d.P + p];  // conv errors of x and C
          for (int64_t n = 0; n < d.N; ++n) {
            s += std::fabs(S[(h * d.P + p) * d.N + n] * xbc[di + GN + g * d.N + n]);
            e += std::fabs(S[(h * d.P + p) * d.N + n]) * xerr[di + GN + g * d.N + n];
          }
          ytol[h * d.P + p] = 1e-5f * static_cast<float>(s) + static_cast<float>(e) + 1e-6f;
        }
      kernels::gated_rmsnorm_cpu(y.data(), row, w.norm_wf.data(), 1, di, group, kEps, ref.data() + r * di);
      for (int64_t g0 = 0; g0 < di; g0 += group) {
        double ss = 0;
        for (int64_t i = g0; i < g0 + group; ++i) {
          const double gv = y[i] * (row[i] / (1.0 + std::exp(-row[i])));
          ss += gv * gv;
        }
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(group) + kEps);
        for (int64_t i = g0; i < g0 + group; ++i) {
          const double gate = std::fabs(row[i] / (1.0 + std::exp(-row[i])));
          tol[r * di + i] = static_cast<float>(std::fabs(ref[r * di + i]) / 128 +
                                               2.0 * ytol[i] * gate * inv * std::fabs(w.norm_wf[i]) + 1e-6);
        }
      }
    }
    const std::string what = std::string("fused decode ") + d.name + " R=" + std::to_string(R) +
                             " step " + std::to_string(step);
    const auto got = bf16_to_f32(out_f.download());
    EXPECT_EQ(report(what + " out vs CPU", got, ref, tol), 0u);
    EXPECT_EQ(report(what + " conv state vs CPU", fused.conv.download(), conv_state,
                     std::vector<float>(conv_state.size(), 0.0f)),
              0u);
    std::vector<float> tol_state(ssm_state.size());
    for (std::size_t i = 0; i < ssm_state.size(); ++i) tol_state[i] = stol[i] + 1e-6f * std::fabs(ssm_state[i]);
    const auto ssm_f = fused.ssm.download();
    EXPECT_EQ(report(what + " ssm state vs CPU", ssm_f, ssm_state, tol_state), 0u);

    // Against the three-kernel path: states bit for bit, out within one BF16 rounding.
    const auto ref_u = bf16_to_f32(out_u.download());
    EXPECT_EQ(report(what + " out vs 3 kernels", got, ref_u, uniform_tol(ref_u.size(), 1e-6f, ref_u, 1.0f / 128)), 0u);
    EXPECT_EQ(fused.conv.download(), unfused.conv.download()) << what << ": conv state vs 3 kernels";
    // SSM state: same per-element expressions as the scan kernel; held to the CPU tolerance
    // (contraction into FMAs is the compiler's choice per kernel), and the number of elements
    // that are not bit-identical is printed.
    const auto ssm_u = unfused.ssm.download();
    std::size_t differ = 0;
    for (std::size_t i = 0; i < ssm_u.size(); ++i) differ += ssm_u[i] != ssm_f[i];
    std::printf("[ max_err ] %s: ssm state elements not bit-identical to the 3-kernel path: %zu of %zu\n",
                what.c_str(), differ, ssm_u.size());
    EXPECT_EQ(report(what + " ssm state vs 3 kernels", ssm_f, ssm_u, tol_state), 0u);
  }
}

TEST(MambaDecodeFused, MatchesCpuAndThreeKernelPath) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 100;
  for (const auto& d : kDims) {
    ASSERT_TRUE(kernels::mamba_decode_fused_supported(d.heads, d.P, d.N, d.G, d.K)) << d.name;
    check_dims(d, kSlots, ++seed);
  }
  check_dims(kDims[1], {4}, ++seed);  // a single row (single-stream decode), Nano dims
}

// A 16-bit SSM state (kernels/state_round.h): the fused kernel rounds like the three-kernel
// path (same position, layer and element noise) over three steps; at least 99% of the elements
// identical (a float-rounding difference flips a decision only next to a threshold), every
// element within two grid steps; out within one BF16 rounding plus what the state's rounding
// moves it (both paths compute y from the fp32 state before rounding it).
TEST(MambaDecodeFused, SixteenBitStateMatchesThreeKernelPath) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 300;
  for (const Dims& d : {kDims[0], kDims[1]})
    for (kernels::StateDType dt : {kernels::StateDType::BF16, kernels::StateDType::F16}) {
      Rng rng(++seed);
      const int64_t R = static_cast<int64_t>(kSlots.size()), per = d.heads * d.P * d.N;
      const Weights w = make_weights(d, rng);
      std::vector<float> conv_state(static_cast<std::size_t>(kNumSlots * (d.K - 1) * d.C()));
      for (auto& v : conv_state) v = rng.normal(1.0f);
      std::vector<uint16_t> codes(static_cast<std::size_t>(kNumSlots * per));
      for (auto& c : codes) c = kernels::encode_state16(kernels::round_state(rng.normal(0.5f), dt, false, 0), dt);
      std::vector<float> packed(codes.size() / 2);  // the codes' bytes, as the buffer type
      std::memcpy(packed.data(), codes.data(), codes.size() * 2);
      DevicePath fused(w, conv_state, packed), unfused(w, conv_state, packed);
      std::vector<int32_t> cu, pos;
      for (int64_t r = 0; r <= R; ++r) cu.push_back(static_cast<int32_t>(r));
      DeviceBuffer<int32_t> dslot(kSlots), dcu(cu);
      DeviceBuffer<float> conv_out(static_cast<std::size_t>(R * d.C())), ybuf(static_cast<std::size_t>(R * d.di()));
      DeviceBuffer<uint16_t> out_f(static_cast<std::size_t>(R * d.di())), out_u(static_cast<std::size_t>(R * d.di()));
      for (int step = 0; step < 3; ++step) {
        pos = {10 + step, 3 + step, 2000 + step};
        DeviceBuffer<int32_t> dpos(pos);
        std::vector<float> inf;
        DeviceBuffer<uint16_t> din(make_in_proj(d, R, rng, &inf));
        run_fused(d, fused, din.get(), dslot.get(), R, out_f.get(), dt, dpos.get());
        run_unfused(d, unfused, din.get(), dslot.get(), dcu.get(), R, conv_out.get(), ybuf.get(), out_u.get(), dt,
                    dpos.get());
        CUDA_OK(cudaDeviceSynchronize());
        auto unpack = [&](const std::vector<float>& f) {
          std::vector<uint16_t> c(f.size() * 2);
          std::memcpy(c.data(), f.data(), c.size() * 2);
          std::vector<float> v(c.size());
          for (std::size_t i = 0; i < c.size(); ++i) v[i] = kernels::decode_state16(c[i], dt);
          return v;
        };
        const auto sf = unpack(fused.ssm.download()), su = unpack(unfused.ssm.download());
        std::size_t same = 0, far = 0;
        const double rel = dt == kernels::StateDType::BF16 ? 1.0 / 128 : 1.0 / 1024;
        for (std::size_t i = 0; i < sf.size(); ++i) {
          same += sf[i] == su[i];
          far += !(std::fabs(sf[i] - su[i]) <= 2 * rel * std::fmax(std::fabs(sf[i]), std::fabs(su[i])) + 1.2e-7);
        }
        const std::string what = std::string("fused decode ") + d.name + " " +
                                 kernels::state_dtype_name(dt) + " step " + std::to_string(step);
        std::printf("[ max_err ] %s: %zu of %zu state elements identical to the 3-kernel path\n", what.c_str(), same,
                    sf.size());
        EXPECT_EQ(far, 0u) << what;
        EXPECT_GE(static_cast<double>(same), 0.99 * static_cast<double>(sf.size())) << what;
        EXPECT_EQ(fused.conv.download(), unfused.conv.download()) << what;
        const auto got = bf16_to_f32(out_f.download()), ref = bf16_to_f32(out_u.download());
        EXPECT_EQ(report(what + " out", got, ref, uniform_tol(ref.size(), 1e-3f, ref, 1.0f / 64)), 0u);
      }
    }
}

TEST(MambaDecodeFused, RejectsBadArguments) {
  EXPECT_FALSE(kernels::mamba_decode_fused_supported(6, 64, 128, 4, 4));  // groups do not divide heads
  EXPECT_FALSE(kernels::mamba_decode_fused_supported(8, 64, 48, 2, 4));   // state_dim 48
  EXPECT_FALSE(kernels::mamba_decode_fused_supported(8, 64, 128, 2, 9));  // K > 8
  kernels::MambaDecodeArgs a;
  a.rows = 1;
  a.heads = 8;
  a.head_dim = 16;
  a.state_dim = 16;
  a.groups = 2;
  a.in_stride = 10;  // below the in_proj width
  EXPECT_THROW(kernels::mamba_decode_fused_cuda(a, nullptr), Error);
  a.in_stride = 2 * 128 + 2 * 32 + 8;
  EXPECT_THROW(kernels::mamba_decode_fused_cuda(a, nullptr), Error);  // null pointers
  a.state_dim = 48;
  EXPECT_THROW(kernels::mamba_decode_fused_cuda(a, nullptr), Error);
}

}  // namespace
}  // namespace nemotron::testing
