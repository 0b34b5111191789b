// Decode GEMV bandwidth on the real Nemotron 3 shapes: bytes of stored weight (+ block scales)
// read per launch over the time per launch, against the device's measured copy bandwidth, for
// both GEMV kernels: "rows" (LinearPath::GemvWarpRow, one warp per output row on the CUDA
// cores) and "tiles" (the default: 16-row tiles on the tensor cores, x in shared memory).
// Each shape is replicated over enough device copies (>= 512 MiB together) that the 50 MB L2
// cannot serve repeated launches; 50 launches (rotating copies) are captured in a CUDA graph
// and replayed; the median of 9 replays is reported.
// Then the routed-expert GEMV (expert_gemv_cuda, Nano: 128 NVFP4 experts, k = 6, experts
// rotating over launches so that the L2 cannot serve them), both kernels.
//   usage: bench_gemv_cuda [T ...]     (default T = 1 2 4 8)
#include <cuda_runtime.h>

#include "bench_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/device_info.h"
#include "kernels/linear_cuda.h"
#include "kernels/moe_cuda.h"
#include "linear_test_util.h"

namespace {

using nemotron::kernels::LinearCudaArgs;
using nemotron::kernels::LinearPath;
using nemotron::kernels::OutType;
using nemotron::kernels::WeightFormat;

struct Shape {
  const char* name;
  int64_t out, in;
  OutType yt;
};

struct Copies {
  std::vector<void*> w, s;
  explicit Copies(const nemotron::testing::HostWeight& hw, int64_t min_total) {
    const int64_t bytes = hw.w.stored_bytes();
    const int n = static_cast<int>(std::clamp<int64_t>(min_total / bytes + 1, 2, 64));
    w.assign(n, nullptr);
    s.assign(n, nullptr);
    for (int i = 0; i < n; ++i) {
      CHECK(cudaMalloc(&w[i], hw.data.size()));
      CHECK(cudaMemcpy(w[i], hw.data.data(), hw.data.size(), cudaMemcpyHostToDevice));
      if (!hw.scales.empty()) {
        CHECK(cudaMalloc(&s[i], hw.scales.size()));
        CHECK(cudaMemcpy(s[i], hw.scales.data(), hw.scales.size(), cudaMemcpyHostToDevice));
      }
    }
  }
  ~Copies() {
    for (std::size_t i = 0; i < w.size(); ++i) {
      cudaFree(w[i]);
      if (s[i]) cudaFree(s[i]);
    }
  }
  int size() const { return static_cast<int>(w.size()); }
};

// Seconds per launch.
double bench_linear(const Shape& s, const nemotron::testing::HostWeight& hw, const Copies& c, int64_t T,
                    LinearPath path) {
  std::vector<uint16_t> xh(static_cast<std::size_t>(T * s.in));
  for (std::size_t i = 0; i < xh.size(); ++i) xh[i] = nemotron::kernels::float_to_bf16(0.01f * static_cast<float>(i % 97) - 0.4f);
  void *x = nullptr, *y = nullptr;
  CHECK(cudaMalloc(&x, xh.size() * 2));
  CHECK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMalloc(&y, static_cast<std::size_t>(T * s.out) * 4));
  cudaStream_t st;
  CHECK(cudaStreamCreate(&st));
  auto args = [&](int i) {
    LinearCudaArgs a;
    a.w = hw.w;
    a.w.data = c.w[i];
    a.w.block_scale = static_cast<const uint8_t*>(c.s[i]);
    a.x = static_cast<const uint16_t*>(x);
    a.T = T;
    a.y = y;
    a.y_type = s.yt;
    a.path = path;
    return a;
  };
  for (int i = 0; i < c.size(); ++i) nemotron::kernels::linear_cuda(args(i), st);  // warm-up
  const double t = nemotron::bench::median_launch_ms(
                       st, 50, [&](int i) { nemotron::kernels::linear_cuda(args(i % c.size()), st); }) *
                   1e-3;
  CHECK(cudaStreamDestroy(st));
  CHECK(cudaFree(x));
  CHECK(cudaFree(y));
  return t;
}

// Nano routed experts: E NVFP4 experts [out, in], T tokens x k slots; launch i uses experts
// (i * T * k + j) % E for pair j. Seconds per launch; *bytes = weight bytes read per launch.
double bench_experts(int64_t out, int64_t in, int64_t T, int64_t k, bool relu2, bool per_slot, bool warp_rows,
                     double* bytes) {
  const int64_t E = 128, pairs = T * k;
  const auto hw = nemotron::testing::make_weight(WeightFormat::NVFP4, out, in, 77);
  std::vector<void*> w(E), s(E);
  for (int64_t e = 0; e < E; ++e) {
    CHECK(cudaMalloc(&w[e], hw.data.size()));
    CHECK(cudaMemcpy(w[e], hw.data.data(), hw.data.size(), cudaMemcpyHostToDevice));
    CHECK(cudaMalloc(&s[e], hw.scales.size()));
    CHECK(cudaMemcpy(s[e], hw.scales.data(), hw.scales.size(), cudaMemcpyHostToDevice));
  }
  std::vector<float> sc(E, hw.w.scale);
  const int launches = 50;
  std::vector<int32_t> ids(static_cast<std::size_t>(launches * pairs));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i % E);
  void *dw = nullptr, *ds = nullptr, *dsc = nullptr, *dids = nullptr, *x = nullptr, *y = nullptr;
  CHECK(cudaMalloc(&dw, E * sizeof(void*)));
  CHECK(cudaMalloc(&ds, E * sizeof(void*)));
  CHECK(cudaMalloc(&dsc, E * sizeof(float)));
  CHECK(cudaMalloc(&dids, ids.size() * 4));
  CHECK(cudaMemcpy(dw, w.data(), E * sizeof(void*), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(ds, s.data(), E * sizeof(void*), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dsc, sc.data(), E * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  const int64_t xrows = per_slot ? pairs : T;
  std::vector<uint16_t> xh(static_cast<std::size_t>(xrows * in));
  for (std::size_t i = 0; i < xh.size(); ++i) xh[i] = nemotron::kernels::float_to_bf16(0.01f * static_cast<float>(i % 89) - 0.4f);
  CHECK(cudaMalloc(&x, xh.size() * 2));
  CHECK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMalloc(&y, static_cast<std::size_t>(pairs * out) * 2));
  cudaStream_t st;
  CHECK(cudaStreamCreate(&st));
  auto run = [&](int i) {
    nemotron::kernels::ExpertGemvArgs a;
    a.w = {WeightFormat::NVFP4, E, out, in, static_cast<const void* const*>(dw), static_cast<const uint8_t* const*>(ds),
           static_cast<const float*>(dsc)};
    a.ids = static_cast<const int32_t*>(dids) + (i % launches) * pairs;
    a.T = T;
    a.k = k;
    a.x = static_cast<const uint16_t*>(x);
    a.x_per_slot = per_slot;
    a.relu2 = relu2;
    a.y = static_cast<uint16_t*>(y);
    a.warp_rows = warp_rows;
    nemotron::kernels::expert_gemv_cuda(a, st);
  };
  for (int i = 0; i < launches; ++i) run(i);
  const double t = nemotron::bench::median_launch_ms(st, launches, run) * 1e-3;
  CHECK(cudaStreamDestroy(st));
  for (int64_t e = 0; e < E; ++e) {
    CHECK(cudaFree(w[e]));
    CHECK(cudaFree(s[e]));
  }
  for (void* p : {dw, ds, dsc, dids, x, y}) CHECK(cudaFree(p));
  *bytes = static_cast<double>(pairs * hw.w.stored_bytes());
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> Ts;
  for (int i = 1; i < argc; ++i) Ts.push_back(std::atoll(argv[i]));
  if (Ts.empty()) Ts = {1, 2, 4, 8};
  const double copy = nemotron::bench::print_device_header();
  const Shape shapes[] = {{"nano.in_proj", 10304, 2688, OutType::BF16},
                          {"nano.out_proj", 2688, 4096, OutType::BF16},
                          {"nano.expert_up", 1856, 2688, OutType::BF16},
                          {"nano.expert_down", 2688, 1856, OutType::BF16},
                          {"nano.lm_head (f32 out)", 131072, 2688, OutType::F32},
                          {"super.in_proj", 18560, 4096, OutType::BF16},
                          {"super.latent_expert", 2688, 1024, OutType::BF16}};
  std::printf("| shape | out x in | format | T | MB | rows us | rows GB/s | rows %% of copy | tiles us | tiles GB/s | "
              "tiles %% of copy |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& s : shapes)
    for (auto f : {WeightFormat::Dense, WeightFormat::FP8, WeightFormat::NVFP4}) {
      const auto hw = nemotron::testing::make_weight(f, s.out, s.in, 1234);
      const Copies c(hw, int64_t{512} << 20);
      const double bytes = static_cast<double>(hw.w.stored_bytes());
      for (int64_t T : Ts) {
        const double tr = bench_linear(s, hw, c, T, LinearPath::GemvWarpRow);
        const double tt = bench_linear(s, hw, c, T, LinearPath::Gemv);
        std::printf("| %-22s | %6lld x %5lld | %-5s | %d | %7.2f | %7.1f | %5.0f | %5.1f%% | %7.1f | %5.0f | %5.1f%% |\n",
                    s.name, static_cast<long long>(s.out), static_cast<long long>(s.in),
                    nemotron::kernels::weight_format_name(f), static_cast<int>(T), bytes / 1e6, tr * 1e6,
                    bytes / tr / 1e9, 100.0 * bytes / tr / 1e9 / copy, tt * 1e6, bytes / tt / 1e9,
                    100.0 * bytes / tt / 1e9 / copy);
      }
    }
  std::printf("\nrouted experts (expert_gemv_cuda), Nano NVFP4, 128 experts, k = 6\n\n");
  std::printf("| projection | T | MB | rows us | rows GB/s | rows %% | tiles us | tiles GB/s | tiles %% |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t T : {1, 4})
    for (int up = 1; up >= 0; --up) {
      double bytes = 0;
      const int64_t out = up ? 1856 : 2688, in = up ? 2688 : 1856;
      const double tr = bench_experts(out, in, T, 6, up, !up, true, &bytes);
      const double tt = bench_experts(out, in, T, 6, up, !up, false, &bytes);
      std::printf("| %s | %d | %.2f | %.1f | %.0f | %.1f%% | %.1f | %.0f | %.1f%% |\n",
                  up ? "expert_up 1856x2688 + relu2" : "expert_down 2688x1856", static_cast<int>(T), bytes / 1e6,
                  tr * 1e6, bytes / tr / 1e9, 100.0 * bytes / tr / 1e9 / copy, tt * 1e6, bytes / tt / 1e9,
                  100.0 * bytes / tt / 1e9 / copy);
    }
  return 0;
}
