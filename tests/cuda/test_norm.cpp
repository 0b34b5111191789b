// add_rmsnorm_cuda (vector and scalar paths), embed_cuda, gated_rmsnorm_cuda against the CPU references
// (rmsnorm_cpu, dequantize_row / plain copy, relu² as in cpu_forward, gated_rmsnorm_cpu) on the
// same BF16-rounded inputs. Tolerances: the residual add and the gathers are exact (tol 0);
// normalized BF16 outputs may differ by one BF16 rounding of a value whose fp32 inputs differ
// by a few ulps: 2^-7 |ref| + 1e-6.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/moe_cuda.h"
#include "kernels/norm.h"
#include "kernels/norm_cuda.h"

namespace nemotron::testing {
namespace {

std::vector<float> bf16_tol(const std::vector<float>& ref) { return uniform_tol(ref.size(), 1e-6f, ref, 1.0f / 128); }

TEST(NormCuda, AddRmsnorm) {
  ASSERT_TRUE(have_device());
  Rng rng(11);
  for (int64_t H : {2688, 4096, 8192, 1000})
    for (int64_t T : {1, 5, 33})
      for (bool with_y : {true, false}) {
        std::vector<float> x(static_cast<std::size_t>(T * H)), yf, wf;
        for (auto& v : x) v = rng.normal(2.0f);
        const auto yb = rng.bf16(x.size(), 1.0f, &yf);
        auto wb = rng.bf16(static_cast<std::size_t>(H), 0.3f, &wf);
        for (std::size_t i = 0; i < wb.size(); ++i) {
          wb[i] = kernels::float_to_bf16(1.0f + wf[i]);
          wf[i] = kernels::bf16_to_float(wb[i]);
        }
        DeviceBuffer<float> dx(x);
        DeviceBuffer<uint16_t> dy(yb), dw(wb), du(x.size());
        du.poison();
        kernels::add_rmsnorm_cuda(dx.get(), with_y ? dy.get() : nullptr, dw.get(), T, H, 1e-5f, du.get(), nullptr);
        CUDA_OK(cudaDeviceSynchronize());
        std::vector<float> xr = x, ur(x.size());
        if (with_y)
          for (std::size_t i = 0; i < x.size(); ++i) xr[i] += yf[i];
        kernels::rmsnorm_cpu(xr.data(), wf.data(), T, H, 1e-5f, ur.data());
        const std::string what = "add_rmsnorm H=" + std::to_string(H) + " T=" + std::to_string(T) + (with_y ? "" : " no-add");
        EXPECT_EQ(report(what + " x", dx.download(), xr, std::vector<float>(x.size(), 0.0f)), 0u);
        EXPECT_EQ(report(what + " u", bf16_to_f32(du.download()), ur, bf16_tol(ur)), 0u);
      }
}

// add_rmsnorm_f32_cuda: the BF16 rows as add_rmsnorm_cuda, the fp32 rows within a few ulps
// of rmsnorm_cpu (fp32 vs double sum of squares: 1e-5 relative). rmsnorm_strided_cuda: the
// BF16 rows into every other half-row of a [T, 2H] buffer, the other halves untouched.
TEST(NormCuda, AddRmsnormF32AndStrided) {
  ASSERT_TRUE(have_device());
  Rng rng(21);
  for (int64_t H : {128, 2688})
    for (int64_t T : {1, 7}) {
      std::vector<float> x(static_cast<std::size_t>(T * H)), yf, wf;
      for (auto& v : x) v = rng.normal(2.0f);
      const auto yb = rng.bf16(x.size(), 1.0f, &yf);
      const auto wb = rng.bf16(static_cast<std::size_t>(H), 1.0f, &wf);
      DeviceBuffer<float> dx(x), duf(x.size());
      DeviceBuffer<uint16_t> dy(yb), dw(wb), du(x.size()), dcat(x.size() * 2);
      du.poison();
      duf.poison();
      dcat.poison();
      kernels::add_rmsnorm_f32_cuda(dx.get(), dy.get(), dw.get(), T, H, 1e-5f, du.get(), duf.get(), nullptr);
      kernels::rmsnorm_strided_cuda(dx.get(), dw.get(), T, H, 1e-5f, dcat.get() + H, 2 * H, nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> xr = x, ur(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) xr[i] += yf[i];
      kernels::rmsnorm_cpu(xr.data(), wf.data(), T, H, 1e-5f, ur.data());
      const std::string what = "add_rmsnorm_f32 H=" + std::to_string(H) + " T=" + std::to_string(T);
      EXPECT_EQ(report(what + " x", dx.download(), xr, std::vector<float>(x.size(), 0.0f)), 0u);
      EXPECT_EQ(report(what + " u", bf16_to_f32(du.download()), ur, bf16_tol(ur)), 0u);
      EXPECT_EQ(report(what + " uf", duf.download(), ur, uniform_tol(ur.size(), 1e-6f, ur, 1e-5f)), 0u);
      const auto cat = dcat.download();
      std::vector<float> right(x.size());
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < H; ++i) {
          right[t * H + i] = kernels::bf16_to_float(cat[t * 2 * H + H + i]);
          EXPECT_EQ(cat[t * 2 * H + i], 0xFFFF) << "left half written at row " << t;
        }
      EXPECT_EQ(report(what + " strided", right, ur, bf16_tol(ur)), 0u);
    }
  EXPECT_THROW(kernels::rmsnorm_strided_cuda(nullptr, nullptr, 1, 128, 1e-5f, nullptr, 64, nullptr), Error);
}

// The scalar path (H not a multiple of 4, or rows not 16-byte aligned) against the CPU
// reference, with and without the add; the vector path is covered above (H % 4 == 0).
TEST(NormCuda, AddRmsnormScalarPath) {
  ASSERT_TRUE(have_device());
  Rng rng(31);
  for (const int64_t H : {int64_t{1001}, int64_t{2688}})
    for (const int64_t T : {int64_t{1}, int64_t{6}}) {
      const std::size_t n = static_cast<std::size_t>(T * H);
      std::vector<float> x(n), yf, wf;
      for (auto& v : x) v = rng.normal(2.0f);
      const auto yb = rng.bf16(n, 1.0f, &yf);
      const auto wb = rng.bf16(static_cast<std::size_t>(H), 1.0f, &wf);
      // One extra leading element: x + 1 is 4 but not 16-byte aligned.
      std::vector<float> xpad(n + 1, 0.0f);
      std::copy(x.begin(), x.end(), xpad.begin() + 1);
      DeviceBuffer<float> dx(xpad), duf(n);
      DeviceBuffer<uint16_t> dy(yb), dw(wb), du(n);
      du.poison();
      duf.poison();
      kernels::add_rmsnorm_f32_cuda(dx.get() + 1, dy.get(), dw.get(), T, H, 1e-5f, du.get(), duf.get(), nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> xr = x, ur(n);
      for (std::size_t i = 0; i < n; ++i) xr[i] += yf[i];
      kernels::rmsnorm_cpu(xr.data(), wf.data(), T, H, 1e-5f, ur.data());
      const auto got_x = dx.download();
      const std::string what = "scalar add_rmsnorm H=" + std::to_string(H) + " T=" + std::to_string(T);
      EXPECT_EQ(report(what + " x", std::vector<float>(got_x.begin() + 1, got_x.end()), xr, std::vector<float>(n, 0.0f)),
                0u);
      EXPECT_EQ(report(what + " u", bf16_to_f32(du.download()), ur, bf16_tol(ur)), 0u);
      EXPECT_EQ(report(what + " uf", duf.download(), ur, uniform_tol(n, 1e-6f, ur, 1e-5f)), 0u);
    }
}

// combine_add2_rmsnorm_f32_cuda (the MoE combine folded into the next norm) equals
// moe_combine_cuda followed by add2_rmsnorm_f32_cuda bit for bit (residual, BF16 and fp32 rows),
// with and without the shared-expert addend, on the vector and the scalar path (H = 1001).
TEST(NormCuda, CombineFoldedIntoNormEqualsTwoKernels) {
  ASSERT_TRUE(have_device());
  Rng rng(32);
  for (const int64_t H : {int64_t{2688}, int64_t{8192}, int64_t{96}, int64_t{1001}})
    for (const int64_t T : {int64_t{1}, int64_t{5}})
      for (const int64_t k : {int64_t{6}, int64_t{1}, int64_t{22}})
        for (const bool shared : {true, false}) {
          const std::size_t n = static_cast<std::size_t>(T * H);
          std::vector<float> x(n), rw(static_cast<std::size_t>(T * k));
          for (auto& v : x) v = rng.normal(2.0f);
          for (auto& v : rw) v = rng.uniform(0.0f, 1.0f);
          const auto yk = rng.bf16(n * static_cast<std::size_t>(k), 1.0f, nullptr);
          const auto y2 = rng.bf16(n, 1.0f, nullptr), w = rng.bf16(static_cast<std::size_t>(H), 1.0f, nullptr);
          DeviceBuffer<float> x1(x), x2(x), uf1(n), uf2(n), drw(rw);
          DeviceBuffer<uint16_t> dyk(yk), dy2(y2), dw(w), y(n), u1(n), u2(n);
          const uint16_t* add2 = shared ? dy2.get() : nullptr;
          kernels::moe_combine_cuda(dyk.get(), drw.get(), T, k, H, y.get(), nullptr);
          kernels::add2_rmsnorm_f32_cuda(x1.get(), y.get(), add2, dw.get(), T, H, 1e-5f, u1.get(), uf1.get(), nullptr);
          kernels::combine_add2_rmsnorm_f32_cuda(x2.get(), dyk.get(), drw.get(), k, add2, dw.get(), T, H, 1e-5f,
                                                 u2.get(), uf2.get(), nullptr);
          CUDA_OK(cudaDeviceSynchronize());
          const std::string what = "H=" + std::to_string(H) + " T=" + std::to_string(T) + " k=" + std::to_string(k) +
                                   (shared ? " +shared" : "");
          const auto a1 = x1.download(), a2 = x2.download(), f1 = uf1.download(), f2 = uf2.download();
          EXPECT_EQ(0, std::memcmp(a1.data(), a2.data(), n * 4)) << what << ": residual";
          EXPECT_EQ(0, std::memcmp(f1.data(), f2.data(), n * 4)) << what << ": fp32 normed rows";
          EXPECT_EQ(u1.download(), u2.download()) << what << ": BF16 normed rows";
        }
  EXPECT_THROW(kernels::combine_add2_rmsnorm_f32_cuda(nullptr, nullptr, nullptr, 6, nullptr, nullptr, 1, 8, 1e-5f,
                                                      nullptr, nullptr, nullptr),
               Error);
}

TEST(NormCuda, EmbedGatherAndBadId) {
  ASSERT_TRUE(have_device());
  Rng rng(12);
  const int64_t V = 1000, H = 2688;
  std::vector<float> tf;
  const auto table = rng.bf16(static_cast<std::size_t>(V * H), 1.0f, &tf);
  const std::vector<int32_t> ids = {0, 999, 17, 17, 512, -1, 1000};
  DeviceBuffer<uint16_t> dt(table);
  DeviceBuffer<int32_t> di(ids);
  DeviceBuffer<float> dx(ids.size() * H);
  dx.poison();
  kernels::embed_cuda(di.get(), dt.get(), V, H, static_cast<int64_t>(ids.size()), dx.get(), nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = dx.download();
  const std::size_t good = 5 * H;  // the first five ids are valid
  std::vector<float> ref(good);
  for (std::size_t t = 0; t < 5; ++t)
    for (int64_t i = 0; i < H; ++i) ref[t * H + i] = tf[ids[t] * H + i];
  EXPECT_EQ(report("embed V=1000 H=2688", std::vector<float>(got.begin(), got.begin() + good), ref,
                   std::vector<float>(good, 0.0f)),
            0u);
  for (std::size_t i = good; i < got.size(); ++i) ASSERT_TRUE(std::isnan(got[i])) << "bad id row not NaN at " << i;
}

TEST(NormCuda, GatedRmsnorm) {
  ASSERT_TRUE(have_device());
  Rng rng(14);
  struct C { int64_t D, group, z_stride, T; };
  // Nano: d_inner 4096, 8 groups; Super: 8192, 8 groups; z read from the in_proj output row.
  for (const C c : {C{4096, 512, 10304, 3}, C{8192, 1024, 18560, 2}, C{96, 32, 96, 7}}) {
    std::vector<float> y(static_cast<std::size_t>(c.T * c.D)), zf, wf;
    for (auto& v : y) v = rng.normal(1.0f);
    const auto zb = rng.bf16(static_cast<std::size_t>(c.T * c.z_stride), 2.0f, &zf);
    const auto wb = rng.bf16(static_cast<std::size_t>(c.D), 1.0f, &wf);
    DeviceBuffer<float> dy(y);
    DeviceBuffer<uint16_t> dz(zb), dw(wb), dout(y.size());
    dout.poison();
    kernels::gated_rmsnorm_cuda(dy.get(), dz.get(), c.z_stride, dw.get(), c.T, c.D, c.group, 1e-5f, dout.get(), nullptr);
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> z(y.size()), ref(y.size());
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t i = 0; i < c.D; ++i) z[t * c.D + i] = zf[t * c.z_stride + i];
    kernels::gated_rmsnorm_cpu(y.data(), z.data(), wf.data(), c.T, c.D, c.group, 1e-5f, ref.data());
    EXPECT_EQ(report("gated_rmsnorm D=" + std::to_string(c.D) + " group=" + std::to_string(c.group),
                     bf16_to_f32(dout.download()), ref, bf16_tol(ref)),
              0u);
  }
}

TEST(NormCuda, RejectsBadArguments) {
  EXPECT_THROW(kernels::gated_rmsnorm_cuda(nullptr, nullptr, 10, nullptr, 1, 10, 3, 1e-5f, nullptr, nullptr), Error);
  EXPECT_THROW(kernels::add_rmsnorm_cuda(nullptr, nullptr, nullptr, 1, 0, 1e-5f, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace nemotron::testing
