// Decode GEMV bandwidth on the real Nemotron 3 shapes: bytes of stored weight (+ block scales)
// read per launch over the time per launch, against the device's measured copy bandwidth.
// Each shape is replicated over enough device copies (>= 512 MiB together) that the 50 MB L2
// cannot serve repeated launches; 50 launches (rotating copies) are captured in a CUDA graph
// and replayed; the median of 9 replays is reported.
//   usage: bench_gemv_cuda [T ...]     (default T = 1 and 8)
#include <cuda_runtime.h>

#include "bench_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/device_info.h"
#include "kernels/linear_cuda.h"
#include "linear_test_util.h"

namespace {

using nemotron::kernels::LinearCudaArgs;
using nemotron::kernels::OutType;
using nemotron::kernels::WeightFormat;


struct Shape {
  const char* name;
  int64_t out, in;
  OutType yt;
};

double bench(const Shape& s, const nemotron::testing::HostWeight& hw, int64_t T) {
  const WeightFormat f = hw.w.format;
  const int64_t bytes = hw.w.stored_bytes();
  const int copies = static_cast<int>(std::clamp<int64_t>((int64_t{512} << 20) / bytes + 1, 2, 64));
  std::vector<void*> wd(copies), sd(copies, nullptr);
  for (int i = 0; i < copies; ++i) {
    CHECK(cudaMalloc(&wd[i], hw.data.size()));
    CHECK(cudaMemcpy(wd[i], hw.data.data(), hw.data.size(), cudaMemcpyHostToDevice));
    if (!hw.scales.empty()) {
      CHECK(cudaMalloc(&sd[i], hw.scales.size()));
      CHECK(cudaMemcpy(sd[i], hw.scales.data(), hw.scales.size(), cudaMemcpyHostToDevice));
    }
  }
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
    a.w.data = wd[i];
    a.w.block_scale = static_cast<const uint8_t*>(sd[i]);
    a.x = static_cast<const uint16_t*>(x);
    a.T = T;
    a.y = y;
    a.y_type = s.yt;
    return a;
  };
  for (int i = 0; i < copies; ++i) nemotron::kernels::linear_cuda(args(i), st);  // warm-up
  const double t = nemotron::bench::median_launch_ms(
                       st, 50, [&](int i) { nemotron::kernels::linear_cuda(args(i % copies), st); }) *
                   1e-3;
  CHECK(cudaStreamDestroy(st));
  for (int i = 0; i < copies; ++i) {
    CHECK(cudaFree(wd[i]));
    if (sd[i]) CHECK(cudaFree(sd[i]));
  }
  CHECK(cudaFree(x));
  CHECK(cudaFree(y));
  std::printf("| %-26s | %5lld x %5lld | %-5s | %d | %8.2f | %7.1f | %7.0f |", s.name, static_cast<long long>(s.out),
              static_cast<long long>(s.in), nemotron::kernels::weight_format_name(f), static_cast<int>(T),
              bytes / 1e6, t * 1e6, bytes / t / 1e9);
  return bytes / t / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> Ts;
  for (int i = 1; i < argc; ++i) Ts.push_back(std::atoll(argv[i]));
  if (Ts.empty()) Ts = {1, 8};
  const double copy = nemotron::bench::print_device_header();
  const Shape shapes[] = {{"nano.in_proj", 10304, 2688, OutType::BF16},
                          {"nano.out_proj", 2688, 4096, OutType::BF16},
                          {"nano.expert_up", 1856, 2688, OutType::BF16},
                          {"nano.expert_down", 2688, 1856, OutType::BF16},
                          {"nano.lm_head (f32 out)", 131072, 2688, OutType::F32},
                          {"super.in_proj", 18560, 4096, OutType::BF16},
                          {"super.latent_expert", 2688, 1024, OutType::BF16}};
  std::printf("| shape | out x in | format | T | MB | us | GB/s | %% of copy |\n|---|---|---|---|---|---|---|---|\n");
  for (const auto& s : shapes)
    for (auto f : {WeightFormat::Dense, WeightFormat::FP8, WeightFormat::NVFP4}) {
      const auto hw = nemotron::testing::make_weight(f, s.out, s.in, 1234);
      for (int64_t T : Ts) {
        const double gbps = bench(s, hw, T);
        std::printf(" %5.1f%% |\n", 100.0 * gbps / copy);
      }
    }
  return 0;
}
