// Mamba-2 varlen prefill kernels against the CPU references (causal_conv1d_silu_cpu and
// ssm_scan_cpu run per sequence on the same BF16-rounded inputs), for sequences of lengths
// 1, 37, 300, 1000 in scattered state slots with nonzero starting states; fixture (Hm 8, P 16,
// N 16, G 2), Nano (64, 64, 128, 8) and Super (128, 64, 128, 8) dims; both scan algorithms.
// Also: prefill split in two calls == one call, == one decode step per row (decode kernels).
// Tolerances (SSM): a magnitude state |S| ~ decay |S| + |dt x B| is carried beside the reference;
// state: carried 2e-6 ((1 + |dt A|) decay |S| + |dt x B|) + 1e-7 per step (as test_mamba.cpp:
// exp(dt A) turns an ulp of dt into |dt A| ulps) + 1e-6 |S|; y: 1e-5 (sum_n |S C| + |D x|) + the
// state tolerance through C. The chunked scan adds 2e-5 (1 + |s|) of the magnitudes, s the
// in-chunk cumsum of dt A: exp(s_i - s_j) of two rounded cumsums is off by ulp(|s|) in the exponent;
// and its y adds 2.5e-3 of the magnitudes: TF32 products (each operand rounded to 2^-11, the
// decayed C.B rounded again as an operand), its state (3xTF32) stays within the fp32 bound.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/mamba.h"
#include "kernels/mamba_cuda.h"
#include "util/parallel.h"

namespace nemotron::testing {
namespace {

struct Dims {
  const char* name;
  int64_t heads, P, N, G;
  int64_t di() const { return heads * P; }
  int64_t GN() const { return G * N; }
  int64_t C() const { return di() + 2 * GN(); }
  int64_t in_proj() const { return 2 * di() + 2 * GN() + heads; }  // z | xBC | dt
};
const Dims kFixture{"fixture", 8, 16, 16, 2}, kNano{"nano", 64, 64, 128, 8}, kSuper{"super", 128, 64, 128, 8};
constexpr int64_t kNumSlots = 6, K = 4, Q = 128;
const std::vector<int64_t> kLens = {1, 37, 300, 1000};
const std::vector<int32_t> kSlots = {2, 0, 5, 3};

std::vector<int32_t> offsets(const std::vector<int64_t>& lens) {
  std::vector<int32_t> cu(lens.size() + 1, 0);
  for (std::size_t b = 0; b < lens.size(); ++b) cu[b + 1] = cu[b] + static_cast<int32_t>(lens[b]);
  return cu;
}

// Rows [from[b], from[b] + cnt[b]) of each sequence b, packed in sequence order (a "call").
struct Part {
  std::vector<int64_t> from, cnt;
};
Part whole(const std::vector<int64_t>& lens) { return {std::vector<int64_t>(lens.size(), 0), lens}; }

// Gathers `width` columns starting at `col` of each packed row of `src` (row stride `stride`).
template <typename T>
std::vector<T> pack(const std::vector<T>& src, int64_t stride, const std::vector<int32_t>& cu, const Part& part) {
  std::vector<T> out;
  for (std::size_t b = 0; b < part.cnt.size(); ++b)
    for (int64_t t = 0; t < part.cnt[b]; ++t) {
      const auto* r = src.data() + (cu[b] + part.from[b] + t) * stride;
      out.insert(out.end(), r, r + stride);
    }
  return out;
}

// ---------------------------------------------------------------- conv

struct ConvProblem {
  Dims d;
  std::vector<int32_t> cu;
  std::vector<uint16_t> zx, wb, bb;  // in_proj rows [rows, in_proj]; w [C, K]; bias [C]
  std::vector<float> zf, wf, bf, state0;
};

ConvProblem make_conv(const Dims& d, uint64_t seed) {
  Rng rng(seed);
  ConvProblem p{d, offsets(kLens), {}, {}, {}, {}, {}, {}, {}};
  p.zx = rng.bf16(static_cast<std::size_t>(p.cu.back() * d.in_proj()), 1.0f, &p.zf);
  p.wb = rng.bf16(static_cast<std::size_t>(d.C() * K), 0.5f, &p.wf);
  p.bb = rng.bf16(static_cast<std::size_t>(d.C()), 0.5f, &p.bf);
  p.state0.resize(static_cast<std::size_t>(kNumSlots * (K - 1) * d.C()));
  for (auto& v : p.state0) v = rng.normal(1.0f);
  return p;
}

// One conv prefill call over `part`; returns out rows (packed).
std::vector<float> gpu_conv(const ConvProblem& p, const Part& part, DeviceBuffer<float>& dstate) {
  const auto zx = pack(p.zx, p.d.in_proj(), p.cu, part);
  const auto cu = offsets(part.cnt);
  const int64_t rows = cu.back();
  DeviceBuffer<uint16_t> dzx(zx.empty() ? std::vector<uint16_t>(1) : zx), dw(p.wb), dbias(p.bb);
  DeviceBuffer<int32_t> dslot(kSlots), dcu(cu);
  DeviceBuffer<float> dout(static_cast<std::size_t>(std::max<int64_t>(rows, 1) * p.d.C()));
  dout.poison();
  kernels::ConvPrefillArgs a;
  a.xbc = dzx.get() + p.d.di();
  a.xbc_stride = p.d.in_proj();
  a.state = dstate.get();
  a.slot = dslot.get();
  a.cu_rows = dcu.get();
  a.w = dw.get();
  a.bias = dbias.get();
  a.B = static_cast<int64_t>(part.cnt.size());
  a.rows = rows;
  a.C = p.d.C();
  a.K = K;
  a.out = dout.get();
  kernels::conv1d_prefill_silu_cuda(a, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto out = dout.download();
  out.resize(static_cast<std::size_t>(rows * p.d.C()));
  return out;
}

TEST(MambaPrefill, ConvAgainstCpu) {
  ASSERT_TRUE(have_device());
  for (const Dims& d : {kFixture, kNano, kSuper}) {
    const ConvProblem p = make_conv(d, 31);
    const int64_t C = d.C();
    DeviceBuffer<float> dstate(p.state0);
    const auto got = gpu_conv(p, whole(kLens), dstate);
    std::vector<float> state = p.state0, ref(got.size()), tol(got.size());
    for (std::size_t b = 0; b < kLens.size(); ++b) {
      const int64_t T = kLens[b], r0 = p.cu[b];
      std::vector<float> x(static_cast<std::size_t>(T * C));
      for (int64_t t = 0; t < T; ++t)
        std::copy_n(p.zf.data() + (r0 + t) * d.in_proj() + d.di(), C, x.data() + t * C);
      float* st = state.data() + kSlots[b] * (K - 1) * C;
      for (int64_t t = 0; t < T; ++t)  // tolerance: 1e-5 of the sum of absolute terms
        for (int64_t c = 0; c < C; ++c) {
          double s = std::fabs(p.bf[c]);
          for (int64_t k = 0; k < K; ++k) {
            const int64_t j = t - (K - 1) + k;
            s += std::fabs(p.wf[c * K + k] * (j < 0 ? st[(K - 1 + j) * C + c] : x[j * C + c]));
          }
          tol[(r0 + t) * C + c] = 1e-5f * static_cast<float>(s) + 1e-6f;
        }
      kernels::causal_conv1d_silu_cpu(x.data(), st, p.wf.data(), p.bf.data(), T, C, K, ref.data() + r0 * C);
    }
    const std::string what = std::string("conv_prefill ") + d.name;
    EXPECT_EQ(report(what + " out", got, ref, tol), 0u);
    EXPECT_EQ(report(what + " state", dstate.download(), state, std::vector<float>(state.size(), 0.0f)), 0u);
  }
}

// Split into two calls (sequence 0 empty in the second) == one call (bitwise: same arithmetic
// per row); one decode step per row with conv1d_update_silu_cuda: same state, out within 1e-6.
TEST(MambaPrefill, ConvSplitAndDecode) {
  ASSERT_TRUE(have_device());
  for (const Dims& d : {kFixture, kNano}) {
    const ConvProblem p = make_conv(d, 32);
    const int64_t C = d.C(), rows = p.cu.back();
    DeviceBuffer<float> full_state(p.state0), split_state(p.state0), dec_state(p.state0);
    const auto full = gpu_conv(p, whole(kLens), full_state);
    const Part p1{{0, 0, 0, 0}, {1, 20, 150, 2}}, p2{{1, 20, 150, 2}, {0, 17, 150, 998}};
    const auto o1 = gpu_conv(p, p1, split_state), o2 = gpu_conv(p, p2, split_state);
    std::vector<float> split(full.size()), dec(full.size());
    const auto cu1 = offsets(p1.cnt), cu2 = offsets(p2.cnt);
    for (std::size_t b = 0; b < kLens.size(); ++b) {
      std::copy_n(o1.data() + cu1[b] * C, p1.cnt[b] * C, split.data() + p.cu[b] * C);
      std::copy_n(o2.data() + cu2[b] * C, p2.cnt[b] * C, split.data() + (p.cu[b] + p2.from[b]) * C);
    }
    DeviceBuffer<uint16_t> dw(p.wb), dbias(p.bb);
    DeviceBuffer<float> dout(kLens.size() * static_cast<std::size_t>(C));
    for (int64_t t = 0; t < kLens.back(); ++t) {
      std::vector<int32_t> slots;
      Part step;
      for (std::size_t b = 0; b < kLens.size(); ++b) {
        step.from.push_back(t);
        step.cnt.push_back(kLens[b] > t ? 1 : 0);
        if (kLens[b] > t) slots.push_back(kSlots[b]);
      }
      DeviceBuffer<uint16_t> dzx(pack(p.zx, d.in_proj(), p.cu, step));
      DeviceBuffer<int32_t> dslot(slots);
      kernels::ConvUpdateArgs a;
      a.xbc = dzx.get() + d.di();
      a.xbc_stride = d.in_proj();
      a.state = dec_state.get();
      a.slot = dslot.get();
      a.w = dw.get();
      a.bias = dbias.get();
      a.B = static_cast<int64_t>(slots.size());
      a.C = C;
      a.K = K;
      a.out = dout.get();
      kernels::conv1d_update_silu_cuda(a, nullptr);
      const auto o = dout.download();
      for (std::size_t b = 0, i = 0; b < kLens.size(); ++b)
        if (kLens[b] > t) std::copy_n(o.data() + (i++) * C, C, dec.data() + (p.cu[b] + t) * C);
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::string what = std::string("conv_prefill ") + d.name;
    const std::vector<float> zero(full.size(), 0.0f);
    EXPECT_EQ(report(what + " split vs full out", split, full, zero), 0u);
    EXPECT_EQ(report(what + " decode vs full out", dec, full, uniform_tol(full.size(), 1e-6f, full, 1e-6f)), 0u);
    const auto fs = full_state.download();
    const std::vector<float> zs(fs.size(), 0.0f);
    EXPECT_EQ(report(what + " split vs full state", split_state.download(), fs, zs), 0u);
    EXPECT_EQ(report(what + " decode vs full state", dec_state.download(), fs, zs), 0u);
    EXPECT_EQ(static_cast<int64_t>(full.size()), rows * C);
  }
}

// ---------------------------------------------------------------- scan

struct ScanProblem {
  Dims d;
  std::vector<int64_t> lens;
  std::vector<int32_t> cu;
  std::vector<float> xbc;    // [rows, C] fp32 (the conv output)
  std::vector<uint16_t> zx;  // [rows, in_proj] BF16; dt_raw = its last `heads` columns
  std::vector<float> zf, dt_bias, A, D, state0;
  float dt_min = 0.0f, dt_max = INFINITY;
};

ScanProblem make_scan(const Dims& d, const std::vector<int64_t>& lens, uint64_t seed, bool clamp) {
  Rng rng(seed);
  ScanProblem p{d, lens, offsets(lens), {}, {}, {}, {}, {}, {}, {}};
  const int64_t rows = p.cu.back(), ip = d.in_proj();
  p.xbc.resize(static_cast<std::size_t>(rows * d.C()));
  for (auto& v : p.xbc) v = rng.normal(1.0f);
  p.zx = rng.bf16(static_cast<std::size_t>(rows * ip), 1.0f, &p.zf);
  for (int64_t h = 0; h < d.heads; ++h) {
    p.dt_bias.push_back(rng.uniform(-1.0f, 0.5f));
    p.A.push_back(-std::exp(rng.uniform(-1.0f, 2.5f)));
    p.D.push_back(rng.normal(1.0f));
  }
  // softplus(dt_raw + dt_bias) spread over [1e-3, 1]: the sum uniform in [-6.9, 0.54].
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < d.heads; ++h) {
      const std::size_t i = static_cast<std::size_t>(r * ip + ip - d.heads + h);
      p.zx[i] = kernels::float_to_bf16(rng.uniform(-6.9f, 0.54f) - p.dt_bias[h]);
      p.zf[i] = kernels::bf16_to_float(p.zx[i]);
    }
  p.state0.resize(static_cast<std::size_t>(kNumSlots * d.heads * d.P * d.N));
  for (auto& v : p.state0) v = rng.normal(0.5f);
  if (clamp) p.dt_min = 0.01f, p.dt_max = 0.5f;
  return p;
}

std::vector<float> gpu_scan(const ScanProblem& p, const Part& part, DeviceBuffer<float>& dstate, int algo) {
  const auto xbc = pack(p.xbc, p.d.C(), p.cu, part);
  const auto zx = pack(p.zx, p.d.in_proj(), p.cu, part);
  const auto cu = offsets(part.cnt);
  const int64_t rows = cu.back(), HP = p.d.di();
  DeviceBuffer<float> dxbc(xbc.empty() ? std::vector<float>(4) : xbc), ddtb(p.dt_bias), dA(p.A), dD(p.D);
  DeviceBuffer<uint16_t> dzx(zx.empty() ? std::vector<uint16_t>(1) : zx);
  DeviceBuffer<int32_t> dslot(kSlots), dcu(cu);
  DeviceBuffer<float> dy(static_cast<std::size_t>(std::max<int64_t>(rows, 1) * HP));
  dy.poison();
  kernels::SsmScanArgs a;
  a.xbc = dxbc.get();
  a.xbc_stride = p.d.C();
  a.dt_raw = dzx.get() + (p.d.in_proj() - p.d.heads);
  a.dt_stride = p.d.in_proj();
  a.dt_bias = ddtb.get();
  a.A = dA.get();
  a.D = dD.get();
  a.state = dstate.get();
  a.slot = dslot.get();
  a.cu_rows = dcu.get();
  a.B = static_cast<int64_t>(part.cnt.size());
  a.rows = rows;
  a.heads = p.d.heads;
  a.head_dim = p.d.P;
  a.state_dim = p.d.N;
  a.groups = p.d.G;
  a.dt_min = p.dt_min;
  a.dt_max = p.dt_max;
  a.y = dy.get();
  a.algo = algo;
  kernels::ssm_scan_cuda(a, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto y = dy.download();
  y.resize(static_cast<std::size_t>(rows * HP));
  return y;
}

// Scatter a call's packed y rows back to the problem's row positions.
void unpack(const ScanProblem& p, const Part& part, const std::vector<float>& y, std::vector<float>& full) {
  const int64_t HP = p.d.di();
  const auto cu = offsets(part.cnt);
  for (std::size_t b = 0; b < part.cnt.size(); ++b)
    std::copy_n(y.data() + cu[b] * HP, part.cnt[b] * HP, full.data() + (p.cu[b] + part.from[b]) * HP);
}

struct ScanRef {
  std::vector<float> y, state;          // ssm_scan_cpu per sequence
  std::vector<float> ytol[2], stol[2];  // [0] sequential, [1] chunked (see the header comment)
};

ScanRef cpu_scan(const ScanProblem& p) {
  const Dims& d = p.d;
  const int64_t HP = d.di(), GN = d.GN(), C = d.C(), ip = d.in_proj(), PN = d.P * d.N, hpg = d.heads / d.G;
  ScanRef r;
  r.y.resize(static_cast<std::size_t>(p.cu.back() * HP));
  r.state = p.state0;
  for (int k = 0; k < 2; ++k) {
    r.ytol[k].resize(r.y.size());
    r.stol[k].resize(r.state.size());
  }
  const kernels::SsmDims dims{d.heads, d.P, d.N, d.G};
  for (std::size_t b = 0; b < p.lens.size(); ++b) {
    const int64_t T = p.lens[b], r0 = p.cu[b];
    std::vector<float> x(static_cast<std::size_t>(T * HP)), Bm(static_cast<std::size_t>(T * GN)), Cm(Bm.size()),
        dtr(static_cast<std::size_t>(T * d.heads));
    for (int64_t t = 0; t < T; ++t) {
      const float* row = p.xbc.data() + (r0 + t) * C;
      std::copy_n(row, HP, x.data() + t * HP);
      std::copy_n(row + HP, GN, Bm.data() + t * GN);
      std::copy_n(row + HP + GN, GN, Cm.data() + t * GN);
      std::copy_n(p.zf.data() + (r0 + t) * ip + ip - d.heads, d.heads, dtr.data() + t * d.heads);
    }
    float* S = r.state.data() + kSlots[b] * d.heads * PN;
    // Magnitudes and tolerances, per head (before the reference overwrites S).
    parallel_for(static_cast<std::size_t>(d.heads), [&](std::size_t h0, std::size_t h1) {
      for (int64_t h = static_cast<int64_t>(h0); h < static_cast<int64_t>(h1); ++h) {
        const int64_t g = h / hpg;
        std::vector<float> mag(PN), st(PN);
        for (int64_t i = 0; i < PN; ++i) mag[i] = std::fabs(S[h * PN + i]), st[i] = 0.0f;
        float s = 0.0f, smax = 0.0f;  // in-chunk cumsum of dt*A, its largest |.| so far
        for (int64_t t = 0; t < T; ++t) {
          float dt = dtr[t * d.heads + h] + p.dt_bias[h];
          dt = dt > 20.0f ? dt : std::log1p(std::exp(dt));
          dt = std::min(std::max(dt, p.dt_min), p.dt_max);
          const float decay = std::exp(dt * p.A[h]), da = std::fabs(dt * p.A[h]);
          s = (t % Q == 0 ? 0.0f : s) + dt * p.A[h];
          smax = std::max(smax, std::fabs(s));
          const float* Bt = Bm.data() + t * GN + g * d.N;
          const float* Ct = Cm.data() + t * GN + g * d.N;
          for (int64_t pp = 0; pp < d.P; ++pp) {
            const float xp = x[t * HP + h * d.P + pp];
            double ym = std::fabs(p.D[h] * xp), ys = 0.0;
            for (int64_t n = 0; n < d.N; ++n) {
              const int64_t i = pp * d.N + n;
              const float term = std::fabs(dt * xp * Bt[n]);
              st[i] = decay * st[i] + 2e-6f * ((1.0f + da) * decay * mag[i] + term) + 1e-7f;
              mag[i] = decay * mag[i] + term;
              ym += mag[i] * std::fabs(Ct[n]);
              ys += st[i] * std::fabs(Ct[n]);
            }
            const std::size_t yi = static_cast<std::size_t>((r0 + t) * HP + h * d.P + pp);
            r.ytol[0][yi] = 1e-5f * static_cast<float>(ym) + static_cast<float>(ys) + 1e-6f;
            r.ytol[1][yi] = r.ytol[0][yi] + (2e-5f * (1.0f + smax) + 2.5e-3f) * static_cast<float>(ym);
          }
        }
        for (int64_t i = 0; i < PN; ++i) {
          const std::size_t si = static_cast<std::size_t>(kSlots[b] * d.heads * PN + h * PN + i);
          r.stol[0][si] = st[i] + 1e-6f * mag[i];
          r.stol[1][si] = r.stol[0][si] + 2e-5f * (1.0f + smax) * mag[i];
        }
      }
    });
    kernels::ssm_scan_cpu(x.data(), dtr.data(), Bm.data(), Cm.data(), p.dt_bias.data(), p.A.data(), p.D.data(), dims,
                          p.dt_min, p.dt_max, T, S, r.y.data() + r0 * HP);
  }
  return r;
}

std::vector<float> add(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> s(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) s[i] = a[i] + b[i];
  return s;
}

TEST(MambaPrefill, ScanAgainstCpu) {
  ASSERT_TRUE(have_device());
  for (const Dims& d : {kFixture, kNano, kSuper}) {
    const ScanProblem p = make_scan(d, kLens, 41, d.heads == kFixture.heads);
    const ScanRef ref = cpu_scan(p);
    std::vector<float> ys[2];
    for (int algo = 1; algo <= 2; ++algo) {
      DeviceBuffer<float> dstate(p.state0);
      ys[algo - 1] = gpu_scan(p, whole(kLens), dstate, algo);
      const std::string what =
          std::string("ssm_scan ") + d.name + (algo == 1 ? " sequential" : " chunked") + (p.dt_max < 1 ? " clamp" : "");
      EXPECT_EQ(report(what + " y", ys[algo - 1], ref.y, ref.ytol[algo - 1]), 0u);
      EXPECT_EQ(report(what + " state", dstate.download(), ref.state, ref.stol[algo - 1]), 0u);
    }
    EXPECT_EQ(report(std::string("ssm_scan ") + d.name + " chunked vs sequential y", ys[1], ys[0],
                     add(ref.ytol[0], ref.ytol[1])),
              0u);
  }
}

// Two calls (sequence 0 empty in the second, chunk boundaries moved) == one call, and == one
// decode step per row with ssm_state_update_cuda; sequential split is bitwise.
TEST(MambaPrefill, ScanSplitAndDecode) {
  ASSERT_TRUE(have_device());
  for (const Dims& d : {kFixture, kNano}) {
    const ScanProblem p = make_scan(d, kLens, 42, false);
    const ScanRef ref = cpu_scan(p);
    const int64_t HP = d.di();
    const Part p1{{0, 0, 0, 0}, {1, 20, 150, 200}}, p2{{1, 20, 150, 200}, {0, 17, 150, 800}};
    std::vector<float> full_y[2], full_s[2];
    for (int algo = 1; algo <= 2; ++algo) {
      DeviceBuffer<float> full_state(p.state0), split_state(p.state0);
      full_y[algo - 1] = gpu_scan(p, whole(kLens), full_state, algo);
      full_s[algo - 1] = full_state.download();
      std::vector<float> split(full_y[algo - 1].size());
      unpack(p, p1, gpu_scan(p, p1, split_state, algo), split);
      unpack(p, p2, gpu_scan(p, p2, split_state, algo), split);
      const std::string what = std::string("ssm_scan ") + d.name + (algo == 1 ? " sequential" : " chunked");
      const bool exact = algo == 1;
      const auto yt = exact ? std::vector<float>(split.size(), 0.0f) : add(ref.ytol[1], ref.ytol[1]);
      const auto st = exact ? std::vector<float>(ref.state.size(), 0.0f) : add(ref.stol[1], ref.stol[1]);
      EXPECT_EQ(report(what + " split vs full y", split, full_y[algo - 1], yt), 0u);
      EXPECT_EQ(report(what + " split vs full state", split_state.download(), full_s[algo - 1], st), 0u);
    }
    // Decode: one ssm_state_update_cuda call per time step over the sequences still running.
    DeviceBuffer<float> dec_state(p.state0), ddtb(p.dt_bias), dA(p.A), dD(p.D);
    DeviceBuffer<float> dy(kLens.size() * static_cast<std::size_t>(HP));
    std::vector<float> dec(full_y[0].size());
    for (int64_t t = 0; t < kLens.back(); ++t) {
      std::vector<int32_t> slots;
      Part step;
      for (std::size_t b = 0; b < kLens.size(); ++b) {
        step.from.push_back(t);
        step.cnt.push_back(kLens[b] > t ? 1 : 0);
        if (kLens[b] > t) slots.push_back(kSlots[b]);
      }
      DeviceBuffer<float> dxbc(pack(p.xbc, d.C(), p.cu, step));
      DeviceBuffer<uint16_t> dzx(pack(p.zx, d.in_proj(), p.cu, step));
      DeviceBuffer<int32_t> dslot(slots);
      kernels::SsmUpdateArgs a;
      a.xbc = dxbc.get();
      a.xbc_stride = d.C();
      a.dt_raw = dzx.get() + (d.in_proj() - d.heads);
      a.dt_stride = d.in_proj();
      a.dt_bias = ddtb.get();
      a.A = dA.get();
      a.D = dD.get();
      a.state = dec_state.get();
      a.slot = dslot.get();
      a.B = static_cast<int64_t>(slots.size());
      a.heads = d.heads;
      a.head_dim = d.P;
      a.state_dim = d.N;
      a.groups = d.G;
      a.y = dy.get();
      kernels::ssm_state_update_cuda(a, nullptr);
      const auto o = dy.download();
      for (std::size_t b = 0, i = 0; b < kLens.size(); ++b)
        if (kLens[b] > t) std::copy_n(o.data() + (i++) * HP, HP, dec.data() + (p.cu[b] + t) * HP);
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto ds = dec_state.download();
    for (int algo = 1; algo <= 2; ++algo) {
      const std::string what = std::string("ssm_scan ") + d.name + (algo == 1 ? " sequential" : " chunked");
      EXPECT_EQ(report(what + " decode vs full y", dec, full_y[algo - 1], add(ref.ytol[0], ref.ytol[algo - 1])), 0u);
      EXPECT_EQ(report(what + " decode vs full state", ds, full_s[algo - 1], add(ref.stol[0], ref.stol[algo - 1])), 0u);
    }
  }
}

// One Nano layer's conv + scan over a 2048-token sequence: prints the time per call of each
// kernel and checks the chunked and sequential scans agree (within their CPU tolerances).
TEST(MambaPrefill, TimingNano2048) {
  ASSERT_TRUE(have_device());
  const Dims d = kNano;
  const std::vector<int64_t> lens = {2048};
  const ScanProblem p = make_scan(d, lens, 43, false);
  const ScanRef ref = cpu_scan(p);
  const int64_t rows = 2048, HP = d.di(), C = d.C();
  DeviceBuffer<float> dxbc(p.xbc), ddtb(p.dt_bias), dA(p.A), dD(p.D), dy(static_cast<std::size_t>(rows * HP));
  DeviceBuffer<uint16_t> dzx(p.zx);
  DeviceBuffer<int32_t> dslot(std::vector<int32_t>{kSlots[0]}), dcu(std::vector<int32_t>{0, 2048});
  Rng rng(44);
  std::vector<float> wf, bf;
  DeviceBuffer<uint16_t> dw(rng.bf16(static_cast<std::size_t>(C * K), 0.5f, &wf)), db(rng.bf16(C, 0.5f, &bf));
  DeviceBuffer<float> dconv_state(static_cast<std::size_t>(kNumSlots * (K - 1) * C)), dconv_out(p.xbc.size());
  dconv_state.upload(std::vector<float>(dconv_state.size(), 0.25f));
  kernels::ConvPrefillArgs ca;
  ca.xbc = dzx.get() + d.di();
  ca.xbc_stride = d.in_proj();
  ca.state = dconv_state.get();
  ca.slot = dslot.get();
  ca.cu_rows = dcu.get();
  ca.w = dw.get();
  ca.bias = db.get();
  ca.B = 1;
  ca.rows = rows;
  ca.C = C;
  ca.out = dconv_out.get();
  std::vector<float> y[2], s[2];
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  auto time_it = [&](const char* name, auto&& fn) {
    fn();
    CUDA_OK(cudaEventRecord(e0));
    constexpr int kIters = 10;
    for (int i = 0; i < kIters; ++i) fn();
    CUDA_OK(cudaEventRecord(e1));
    CUDA_OK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    std::printf("[ timing  ] nano 2048 tokens, one layer: %-28s %8.1f us\n", name, 1000.0f * ms / kIters);
  };
  time_it("conv1d_prefill_silu", [&] { kernels::conv1d_prefill_silu_cuda(ca, nullptr); });
  for (int algo = 1; algo <= 2; ++algo) {
    DeviceBuffer<float> dstate(p.state0);
    kernels::SsmScanArgs a;
    a.xbc = dxbc.get();
    a.xbc_stride = C;
    a.dt_raw = dzx.get() + (d.in_proj() - d.heads);
    a.dt_stride = d.in_proj();
    a.dt_bias = ddtb.get();
    a.A = dA.get();
    a.D = dD.get();
    a.state = dstate.get();
    a.slot = dslot.get();
    a.cu_rows = dcu.get();
    a.B = 1;
    a.rows = rows;
    a.heads = d.heads;
    a.head_dim = d.P;
    a.state_dim = d.N;
    a.groups = d.G;
    a.y = dy.get();
    a.algo = algo;
    kernels::ssm_scan_cuda(a, nullptr);  // the checked run, from the initial state
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    y[algo - 1] = dy.download();
    s[algo - 1] = dstate.download();
    time_it(algo == 1 ? "ssm_scan sequential" : "ssm_scan chunked", [&] { kernels::ssm_scan_cuda(a, nullptr); });
    if (algo == 2) {  // as the model calls it: algo 0 with its step workspace (no allocation per call)
      const int64_t bytes = kernels::ssm_scan_workspace_bytes(rows, d.heads, d.P, d.N);
      DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(bytes));
      a.algo = 0;
      a.workspace = ws.get();
      a.workspace_bytes = bytes;
      if (kernels::ssm_scan_chunked_default())
        time_it("ssm_scan algo 0, workspace", [&] { kernels::ssm_scan_cuda(a, nullptr); });
      a.algo = 2;
      time_it("ssm_scan chunked, workspace", [&] { kernels::ssm_scan_cuda(a, nullptr); });
    }
  }
  CUDA_OK(cudaEventDestroy(e0));
  CUDA_OK(cudaEventDestroy(e1));
  // Sequence 0 (the only one) lives in slot kSlots[0], as in cpu_scan.
  std::vector<float> ref_state = ref.state, tol0 = ref.stol[0], tol1 = ref.stol[1];
  const std::size_t n = static_cast<std::size_t>(d.heads * d.P * d.N), off = kSlots[0] * n;
  auto slice = [&](const std::vector<float>& v) { return std::vector<float>(v.begin() + off, v.begin() + off + n); };
  EXPECT_EQ(report("nano 2048 sequential y", y[0], ref.y, ref.ytol[0]), 0u);
  EXPECT_EQ(report("nano 2048 chunked y", y[1], ref.y, ref.ytol[1]), 0u);
  EXPECT_EQ(report("nano 2048 sequential state", slice(s[0]), slice(ref_state), slice(tol0)), 0u);
  EXPECT_EQ(report("nano 2048 chunked state", slice(s[1]), slice(ref_state), slice(tol1)), 0u);
}

TEST(MambaPrefill, RejectsBadArguments) {
  kernels::SsmScanArgs a;
  a.B = 1;
  a.rows = 4;
  a.heads = 8;
  a.head_dim = 16;
  a.state_dim = 24;  // not a supported state size
  a.groups = 2;
  EXPECT_THROW(kernels::ssm_scan_cuda(a, nullptr), Error);
  a.state_dim = 16;
  a.groups = 3;  // does not divide heads
  EXPECT_THROW(kernels::ssm_scan_cuda(a, nullptr), Error);
  kernels::ConvPrefillArgs c;
  c.B = 1;
  c.rows = 4;
  c.C = 8;
  c.xbc_stride = 8;
  c.K = 9;  // > 8
  EXPECT_THROW(kernels::conv1d_prefill_silu_cuda(c, nullptr), Error);
  c.K = 4;
  c.xbc_stride = 4;  // < C
  EXPECT_THROW(kernels::conv1d_prefill_silu_cuda(c, nullptr), Error);
}

}  // namespace
}  // namespace nemotron::testing
