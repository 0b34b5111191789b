// Device MoE: route_topk_cuda against route_topk_cpu (ids must match exactly, weights within
// 1e-6 relative), then the routed-expert GEMV reading those ids on the device (up with fused
// relu², down per slot) and the weighted combine, each against the CPU computation on the same
// BF16 inputs (linear_cpu per selected expert; tolerances as in test_linear: 1e-5 of the
// absolute dot sum, x2|a| after the square, + one BF16 rounding 2^-8 |ref|).
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "expert_test_util.h"
#include "kernels/moe_cuda.h"
#include "kernels/moe_router.h"
#include "linear_test_util.h"

namespace nemotron::testing {
namespace {

using kernels::RouterParams;

// coarse: logits on a grid of 0.25 and no bias, so that many experts tie (lowest ids first).
void check_router(const char* name, const RouterParams& p, int64_t T, uint64_t seed, bool coarse = false) {
  Rng rng(seed);
  std::vector<float> logits(static_cast<std::size_t>(T * p.experts)), bias(static_cast<std::size_t>(p.experts));
  for (auto& v : logits) v = coarse ? std::round(rng.normal(1.0f) * 4.0f) / 4.0f : rng.normal(2.0f);
  for (auto& v : bias) v = coarse ? 0.0f : rng.uniform(-0.2f, 0.2f);
  DeviceBuffer<float> dl(logits), db(bias), dw(static_cast<std::size_t>(T * p.top_k));
  DeviceBuffer<int32_t> di(static_cast<std::size_t>(T * p.top_k));
  dw.poison();
  di.poison();
  kernels::route_topk_cuda(dl.get(), db.get(), p, T, di.get(), dw.get(), nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<int32_t> rid(di.size());
  std::vector<float> rw(dw.size());
  for (int64_t t = 0; t < T; ++t)
    kernels::route_topk_cpu(logits.data() + t * p.experts, bias.data(), p, rid.data() + t * p.top_k,
                            rw.data() + t * p.top_k);
  const auto gid = di.download();
  EXPECT_EQ(gid, rid) << name << ": expert ids differ";
  EXPECT_EQ(report(std::string("router ") + name + " weights", dw.download(), rw, uniform_tol(rw.size(), 0.0f, rw, 1e-6f)), 0u);
}

TEST(MoeCuda, RouterNanoSuperGrouped) {
  ASSERT_TRUE(have_device());
  check_router("nano E=128 k=6", RouterParams{128, 6, 1, 1, true, 2.5f}, 7, 31);
  check_router("super E=512 k=22", RouterParams{512, 22, 1, 1, true, 5.0f}, 5, 32);
  check_router("grouped E=256 k=8 g=8/4", RouterParams{256, 8, 8, 4, true, 2.5f}, 6, 33);
  check_router("no-norm E=64 k=4", RouterParams{64, 4, 1, 1, false, 1.0f}, 3, 34);
  // The block-per-token kernel (E > 128, ungrouped) and the warp kernel, with many ties.
  check_router("ties E=512 k=22", RouterParams{512, 22, 1, 1, true, 5.0f}, 9, 35, true);
  check_router("ties E=1000 k=40", RouterParams{1000, 40, 1, 1, true, 1.0f}, 4, 36, true);
  check_router("ties E=128 k=6", RouterParams{128, 6, 1, 1, true, 2.5f}, 9, 37, true);
  check_router("E=300 k=64", RouterParams{300, 64, 1, 1, false, 1.0f}, 3, 38);
  // The rank kernel (ungrouped, E <= 256): expert counts that are not multiples of 32 or 4, the
  // fixtures' 16 experts, k = E, a single expert, many ties at k = 64, and a prefill-sized T.
  check_router("rank E=200 k=9", RouterParams{200, 9, 1, 1, true, 2.5f}, 5, 39);
  check_router("rank E=16 k=4", RouterParams{16, 4, 1, 1, true, 1.0f}, 11, 40);
  check_router("rank E=37 k=37", RouterParams{37, 37, 1, 1, true, 1.0f}, 3, 41, true);
  check_router("rank E=1 k=1", RouterParams{1, 1, 1, 1, true, 1.0f}, 2, 42);
  check_router("rank ties E=256 k=64", RouterParams{256, 64, 1, 1, true, 1.0f}, 6, 43, true);
  check_router("rank nano T=300", RouterParams{128, 6, 1, 1, true, 2.5f}, 300, 44);
  // The warp kernel (grouped) with many ties.
  check_router("ties grouped E=128 k=6 g=4/2", RouterParams{128, 6, 4, 2, true, 2.5f}, 9, 45, true);
}

TEST(MoeCuda, RoutedExpertsFromDeviceIds) {
  ASSERT_TRUE(have_device());
  const int64_t E = 8, T = 2, k = 6, H = 2688, I = 1856;  // Nano expert shapes, 8 experts
  const RouterParams p{E, k, 1, 1, true, 2.5f};
  Rng rng(41);
  std::vector<float> logits(static_cast<std::size_t>(T * E));
  for (auto& v : logits) v = rng.normal(2.0f);
  DeviceBuffer<float> dl(logits), dgw(static_cast<std::size_t>(T * k));
  DeviceBuffer<int32_t> dids(static_cast<std::size_t>(T * k));
  kernels::route_topk_cuda(dl.get(), nullptr, p, T, dids.get(), dgw.get(), nullptr);

  std::vector<HostWeight> up, down;
  std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> bufs;
  std::vector<const void*> upd, downd;
  std::vector<const uint8_t*> ups, downs;
  std::vector<float> upsc, downsc;
  for (int64_t e = 0; e < E; ++e) {
    up.push_back(make_weight(kernels::WeightFormat::NVFP4, I, H, 100 + e));
    down.push_back(make_weight(kernels::WeightFormat::NVFP4, H, I, 200 + e));
    for (auto* hw : {&up.back(), &down.back()}) {
      bufs.push_back(std::make_unique<DeviceBuffer<uint8_t>>(hw->data));
      bufs.push_back(std::make_unique<DeviceBuffer<uint8_t>>(hw->scales));
    }
    upd.push_back(bufs[bufs.size() - 4]->get());
    ups.push_back(bufs[bufs.size() - 3]->get());
    downd.push_back(bufs[bufs.size() - 2]->get());
    downs.push_back(bufs[bufs.size() - 1]->get());
    upsc.push_back(up.back().w.scale);
    downsc.push_back(down.back().w.scale);
  }
  DeviceBuffer<const void*> d_upd(upd), d_downd(downd);
  DeviceBuffer<const uint8_t*> d_ups(ups), d_downs(downs);
  DeviceBuffer<float> d_upsc(upsc), d_downsc(downsc);
  std::vector<float> xf;
  const auto xb = rng.bf16(static_cast<std::size_t>(T * H), 1.0f, &xf);
  DeviceBuffer<uint16_t> dx(xb), dh(static_cast<std::size_t>(T * k * I)), dy(static_cast<std::size_t>(T * k * H)),
      dout(static_cast<std::size_t>(T * H));
  dh.poison();
  dy.poison();
  dout.poison();

  kernels::ExpertGemvArgs a;
  a.w = {kernels::WeightFormat::NVFP4, E, I, H, d_upd.get(), d_ups.get(), d_upsc.get()};
  a.ids = dids.get();
  a.T = T;
  a.k = k;
  a.x = dx.get();
  a.relu2 = true;
  a.y = dh.get();
  kernels::expert_gemv_cuda(a, nullptr);
  a.w = {kernels::WeightFormat::NVFP4, E, H, I, d_downd.get(), d_downs.get(), d_downsc.get()};
  a.x = dh.get();
  a.x_per_slot = true;
  a.relu2 = false;
  a.y = dy.get();
  kernels::expert_gemv_cuda(a, nullptr);
  kernels::moe_combine_cuda(dy.get(), dgw.get(), T, k, H, dout.get(), nullptr);
  CUDA_OK(cudaDeviceSynchronize());

  const auto ids = dids.download();
  const auto gw = dgw.download();
  const auto h_gpu = bf16_to_f32(dh.download());
  const auto y_gpu = bf16_to_f32(dy.download());
  std::vector<float> h_ref(h_gpu.size()), h_tol(h_gpu.size()), y_ref(y_gpu.size()), y_tol(y_gpu.size());
  std::vector<float> row(static_cast<std::size_t>(H));
  for (int64_t i = 0; i < T * k; ++i) {
    const int32_t e = ids[i];
    ASSERT_TRUE(e >= 0 && e < E);
    for (int64_t r = 0; r < I; ++r) {  // up + relu² on the token's row
      kernels::dequantize_row(up[e].w, r, row.data());
      double s = 0, sa = 0;
      for (int64_t c = 0; c < H; ++c) {
        s += static_cast<double>(row[c]) * xf[(i / k) * H + c];
        sa += std::fabs(static_cast<double>(row[c]) * xf[(i / k) * H + c]);
      }
      const float av = static_cast<float>(s);
      h_ref[i * I + r] = av > 0 ? av * av : 0.0f;
      h_tol[i * I + r] = 2.0f * std::fabs(av) * 1e-5f * static_cast<float>(sa) + std::ldexp(h_ref[i * I + r], -8) + 1e-30f;
    }
    for (int64_t r = 0; r < H; ++r) {  // down on the pair's (GPU) row
      kernels::dequantize_row(down[e].w, r, row.data());
      double s = 0, sa = 0;
      for (int64_t c = 0; c < I; ++c) {
        s += static_cast<double>(row[c]) * h_gpu[i * I + c];
        sa += std::fabs(static_cast<double>(row[c]) * h_gpu[i * I + c]);
      }
      y_ref[i * H + r] = static_cast<float>(s);
      y_tol[i * H + r] = 1e-5f * static_cast<float>(sa) + std::ldexp(std::fabs(y_ref[i * H + r]), -8) + 1e-30f;
    }
  }
  EXPECT_EQ(report("expert up+relu2 NVFP4 [1856,2688] T=2 k=6", h_gpu, h_ref, h_tol), 0u);
  EXPECT_EQ(report("expert down NVFP4 [2688,1856] per slot", y_gpu, y_ref, y_tol), 0u);
  std::vector<float> o_ref(static_cast<std::size_t>(T * H)), o_tol(o_ref.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < H; ++c) {
      float acc = 0, sa = 0;
      for (int64_t s = 0; s < k; ++s) {
        acc += gw[t * k + s] * y_gpu[(t * k + s) * H + c];
        sa += std::fabs(gw[t * k + s] * y_gpu[(t * k + s) * H + c]);
      }
      o_ref[t * H + c] = acc;
      o_tol[t * H + c] = 1e-6f * sa + std::ldexp(std::fabs(acc), -8) + 1e-30f;
    }
  EXPECT_EQ(report("moe combine T=2 k=6 D=2688", bf16_to_f32(dout.download()), o_ref, o_tol), 0u);

  // An id outside [0, E) is never dereferenced: its output row is NaN.
  std::vector<int32_t> bad(static_cast<std::size_t>(T * k), 1);
  bad[3] = 99;
  dids.upload(bad);
  a.w = {kernels::WeightFormat::NVFP4, E, I, H, d_upd.get(), d_ups.get(), d_upsc.get()};
  a.x = dx.get();
  a.x_per_slot = false;
  a.y = dh.get();
  kernels::expert_gemv_cuda(a, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto hb = bf16_to_f32(dh.download());
  for (int64_t r = 0; r < I; ++r) ASSERT_TRUE(std::isnan(hb[3 * I + r]));
  for (int64_t r = 0; r < I; ++r) ASSERT_TRUE(std::isfinite(hb[2 * I + r]));
}

// expert_gemv_cuda for every format on both kernels (tensor-core tiles, warp per row), shapes
// with rows not a multiple of 16 and K not a multiple of 128, up- (token row, relu²) and
// down-style (pair row) inputs, ids given directly (including repeats and one bad id -> NaN row).
void check_experts(kernels::WeightFormat f, int64_t E, int64_t out, int64_t in, int64_t T, int64_t k, bool per_slot,
                   bool relu2, bool warp_rows, uint64_t seed) {
  Rng rng(seed);
  const auto ex = make_experts(f, E, out, in, seed, 100);
  const std::vector<HostWeight>& hw = ex->hw;
  std::vector<int32_t> ids(static_cast<std::size_t>(T * k));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 5 + seed) % E);
  const std::size_t bad = ids.size() / 2;
  ids[bad] = static_cast<int32_t>(E);  // out of range
  DeviceBuffer<int32_t> d_ids(ids);
  const int64_t xrows = per_slot ? T * k : T;
  std::vector<float> xf;
  const auto xb = rng.bf16(static_cast<std::size_t>(xrows * in), 1.0f, &xf);
  DeviceBuffer<uint16_t> dx(xb), dy(static_cast<std::size_t>(T * k * out));
  dy.poison();
  kernels::ExpertGemvArgs a;
  a.w = ex->table;
  a.ids = d_ids.get();
  a.T = T;
  a.k = k;
  a.x = dx.get();
  a.x_per_slot = per_slot;
  a.relu2 = relu2;
  a.y = dy.get();
  a.warp_rows = warp_rows;
  ASSERT_NO_THROW(kernels::expert_gemv_cuda(a, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = bf16_to_f32(dy.download());
  std::vector<float> ref(got.size()), tol(got.size()), row(static_cast<std::size_t>(in));
  for (int64_t i = 0; i < T * k; ++i) {
    if (i == static_cast<int64_t>(bad)) {
      for (int64_t r = 0; r < out; ++r) ASSERT_TRUE(std::isnan(got[i * out + r])) << "bad id row " << r;
      continue;
    }
    const float* xr = xf.data() + (per_slot ? i : i / k) * in;
    for (int64_t r = 0; r < out; ++r) {
      kernels::dequantize_row(hw[ids[i]].w, r, row.data());
      double s = 0, sa = 0;
      for (int64_t c = 0; c < in; ++c) {
        s += static_cast<double>(row[c]) * xr[c];
        sa += std::fabs(static_cast<double>(row[c]) * xr[c]);
      }
      const float av = static_cast<float>(s);
      const float v = relu2 ? (av > 0 ? av * av : 0.0f) : av;
      const float d = 1e-5f * static_cast<float>(sa);
      ref[i * out + r] = v;
      tol[i * out + r] = (relu2 ? 2.0f * std::fabs(av) * d + d * d : d) + std::ldexp(std::fabs(v), -8) + 1e-30f;
    }
  }
  for (std::size_t b = bad * out; b < (bad + 1) * out; ++b) ref[b] = tol[b] = 0.0f;
  std::vector<float> g2 = got;
  for (std::size_t b = bad * out; b < (bad + 1) * out; ++b) g2[b] = 0.0f;
  EXPECT_EQ(report(std::string("experts ") + kernels::weight_format_name(f) + " [" + std::to_string(out) + "," +
                       std::to_string(in) + "] T=" + std::to_string(T) + " k=" + std::to_string(k) +
                       (per_slot ? " per-slot" : "") + (relu2 ? " relu2" : "") + (warp_rows ? " warp-rows" : " tiles"),
                   g2, ref, tol),
            0u);
}

TEST(MoeCuda, RoutedExpertsEveryFormatAndPath) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 1;
  for (auto f : {kernels::WeightFormat::Dense, kernels::WeightFormat::FP8, kernels::WeightFormat::NVFP4})
    for (bool warp_rows : {false, true}) {
      check_experts(f, 5, 37, 1856, 2, 3, false, true, warp_rows, seed++);
      check_experts(f, 5, 300, 96, 3, 2, true, false, warp_rows, seed++);
      check_experts(f, 4, 17, 224, 1, 6, false, false, warp_rows, seed++);
    }
  // Nano expert shapes, one token, k = 6 (the decode case).
  check_experts(kernels::WeightFormat::NVFP4, 8, 1856, 2688, 1, 6, false, true, false, seed++);
  check_experts(kernels::WeightFormat::NVFP4, 8, 2688, 1856, 1, 6, true, false, false, seed++);
}

// ExpertGemvArgs::ids_settled (the down projection reads the ids and issues its first weight
// loads before its PDL wait): on a stream and in a replayed graph, with new routing every
// time (router -> up -> down back to back, as in a step), the down rows equal those of a down
// call that waits first, bit for bit; a bad id still gives a NaN row.
TEST(MoeCuda, SettledIdsDownEqualsWaitingDown) {
  ASSERT_TRUE(have_device());
  const int64_t E = 8, T = 1, k = 6, H = 2688, I = 1856;
  const RouterParams p{E, k, 1, 1, true, 2.5f};
  const auto up = make_experts(kernels::WeightFormat::NVFP4, E, I, H, 7, 100);
  const auto down = make_experts(kernels::WeightFormat::NVFP4, E, H, I, 8, 100);
  Rng rng(43);
  DeviceBuffer<uint16_t> dx(rng.bf16(static_cast<std::size_t>(T * H), 1.0f, nullptr));
  DeviceBuffer<float> dl(static_cast<std::size_t>(T * E)), dgw(static_cast<std::size_t>(T * k));
  DeviceBuffer<int32_t> dids(static_cast<std::size_t>(T * k));
  DeviceBuffer<uint16_t> dh(static_cast<std::size_t>(T * k * I)), dy(static_cast<std::size_t>(T * k * H)),
      dref(static_cast<std::size_t>(T * k * H));
  cudaStream_t st = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  const auto [ua, da0] = expert_pair_args(*up, *down, dids.get(), T, k, dx.get(), dh.get(), dy.get());
  kernels::ExpertGemvArgs da = da0;
  da.ids_settled = true;
  kernels::ExpertGemvArgs ra = da;
  ra.y = dref.get();
  ra.ids_settled = false;
  auto step = [&] {  // router -> up -> down (settled)
    kernels::route_topk_cuda(dl.get(), nullptr, p, T, dids.get(), dgw.get(), st);
    kernels::expert_gemv_cuda(ua, st);
    kernels::expert_gemv_cuda(da, st);
  };
  auto check = [&](const std::string& what) {
    kernels::expert_gemv_cuda(ra, st);  // the waiting down on the same ids and h
    CUDA_OK(cudaStreamSynchronize(st));
    const auto a = dy.download(), b = dref.download();
    EXPECT_EQ(a, b) << what;
  };
  std::vector<float> logits(static_cast<std::size_t>(T * E));
  auto new_routing = [&] {
    for (auto& v : logits) v = rng.normal(2.0f);
    CUDA_OK(cudaMemcpyAsync(dl.get(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice, st));
  };
  for (int rep = 0; rep < 4; ++rep) {
    new_routing();
    step();
    check("stream, rep " + std::to_string(rep));
  }
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  step();
  CUDA_OK(cudaStreamEndCapture(st, &g));
  CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
  for (int rep = 0; rep < 8; ++rep) {
    new_routing();
    CUDA_OK(cudaGraphLaunch(ge, st));
    check("graph replay " + std::to_string(rep));
  }
  CUDA_OK(cudaGraphExecDestroy(ge));
  CUDA_OK(cudaGraphDestroy(g));
  // A bad id read before the wait: the pair's row is NaN, the others are computed.
  std::vector<int32_t> bad(static_cast<std::size_t>(T * k), 1);
  bad[2] = 99;
  dids.upload(bad);
  kernels::expert_gemv_cuda(ua, st);
  kernels::expert_gemv_cuda(da, st);
  CUDA_OK(cudaStreamSynchronize(st));
  const auto yb = bf16_to_f32(dy.download());
  for (int64_t r = 0; r < H; ++r) ASSERT_TRUE(std::isnan(yb[2 * H + r])) << "row " << r;
  for (int64_t r = 0; r < H; ++r) ASSERT_TRUE(std::isfinite(yb[1 * H + r])) << "row " << r;
  CUDA_OK(cudaStreamDestroy(st));
}

// router_logits_f32_cuda against fp32 sums over the same BF16 gate and fp32 rows
// (1e-5 of the absolute dot sum), including a row count that is not a multiple of 8.
TEST(MoeCuda, RouterLogitsFromF32Rows) {
  ASSERT_TRUE(have_device());
  Rng rng(31);
  for (int64_t E : {16, 128, 512})
    for (int64_t T : {1, 13}) {
      const int64_t H = 256;
      std::vector<float> x(static_cast<std::size_t>(T * H)), wf;
      for (auto& v : x) v = rng.normal(1.0f);
      const auto wb = rng.bf16(static_cast<std::size_t>(E * H), 0.1f, &wf);
      DeviceBuffer<float> dx(x), dl(static_cast<std::size_t>(T * E));
      DeviceBuffer<uint16_t> dw(wb);
      dl.poison();
      kernels::router_logits_f32_cuda(dx.get(), dw.get(), T, E, H, dl.get(), nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> ref(static_cast<std::size_t>(T * E)), tol(ref.size());
      for (int64_t t = 0; t < T; ++t)
        for (int64_t e = 0; e < E; ++e) {
          double s = 0, a = 0;
          for (int64_t i = 0; i < H; ++i) {
            s += static_cast<double>(x[t * H + i]) * wf[e * H + i];
            a += std::fabs(static_cast<double>(x[t * H + i]) * wf[e * H + i]);
          }
          ref[t * E + e] = static_cast<float>(s);
          tol[t * E + e] = static_cast<float>(1e-5 * a + 1e-7);
        }
      EXPECT_EQ(report("router_logits_f32 E=" + std::to_string(E) + " T=" + std::to_string(T), dl.download(), ref, tol),
                0u);
    }
  EXPECT_THROW(kernels::router_logits_f32_cuda(nullptr, nullptr, 1, 16, 255, nullptr, nullptr), Error);
}

TEST(MoeCuda, RejectsBadArguments) {
  EXPECT_THROW(kernels::route_topk_cuda(nullptr, nullptr, RouterParams{2048, 6, 1, 1, true, 1.0f}, 1, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(kernels::route_topk_cuda(nullptr, nullptr, RouterParams{128, 6, 3, 1, true, 1.0f}, 1, nullptr, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace nemotron::testing
