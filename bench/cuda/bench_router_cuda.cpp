// Small decode ops in isolation: microseconds per launch of the MoE router top-k (Nano 128/6,
// Super 512/22), the decode router gate, RMSNorm and an empty-kernel floor, each from a CUDA
// graph of 200 back-to-back launches (so that host launch cost is excluded).
//   build-gpu/bench/bench_router_cuda
#include <cstdio>
#include <random>
#include <vector>

#include "bench_util.h"
#include "kernels/elementwise_cuda.h"
#include "kernels/moe_cuda.h"
#include "kernels/norm_cuda.h"

using namespace nemotron;

int main() {
  bench::print_device_header();
  cudaStream_t st;
  CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto device = [&](std::size_t bytes) {
    void* p = nullptr;
    CHECK(cudaMalloc(&p, bytes));
    return p;
  };
  std::printf("| op | shape | rows | us per launch |\n|---|---|---|---|\n");
  const double floor_us = 1e3 * bench::median_launch_ms(st, 200, [&](int) { kernels::device_wait_cuda(0, st); });
  std::printf("| empty kernel (floor) | - | - | %.2f |\n", floor_us);
  struct R {
    int64_t E, k;
    const char* name;
  };
  for (const R r : {R{128, 6, "Nano"}, R{512, 22, "Super"}}) {
    for (int64_t T : {1, 8}) {
      std::vector<float> lg(static_cast<std::size_t>(T * r.E)), bias(static_cast<std::size_t>(r.E));
      for (auto& v : lg) v = nd(rng);
      for (auto& v : bias) v = 0.1f * nd(rng);
      auto* d_lg = static_cast<float*>(device(lg.size() * 4));
      auto* d_b = static_cast<float*>(device(bias.size() * 4));
      auto* d_ids = static_cast<int32_t*>(device(static_cast<std::size_t>(T * r.k) * 4));
      auto* d_w = static_cast<float*>(device(static_cast<std::size_t>(T * r.k) * 4));
      CHECK(cudaMemcpy(d_lg, lg.data(), lg.size() * 4, cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(d_b, bias.data(), bias.size() * 4, cudaMemcpyHostToDevice));
      const kernels::RouterParams p{r.E, r.k, 1, 1, true, 2.5f};
      const double us = 1e3 * bench::median_launch_ms(st, 200, [&](int) {
        kernels::route_topk_cuda(d_lg, d_b, p, T, d_ids, d_w, st);
      });
      std::printf("| route_topk_cuda | %s E=%lld k=%lld | %lld | %.2f |\n", r.name, static_cast<long long>(r.E),
                  static_cast<long long>(r.k), static_cast<long long>(T), us);
      const int64_t H = r.E == 128 ? 2688 : 4096;
      auto* d_x = static_cast<uint16_t*>(device(static_cast<std::size_t>(T * H) * 2));
      auto* d_g = static_cast<uint16_t*>(device(static_cast<std::size_t>(r.E * H) * 2));
      CHECK(cudaMemset(d_x, 0x3c, static_cast<std::size_t>(T * H) * 2));
      CHECK(cudaMemset(d_g, 0x3c, static_cast<std::size_t>(r.E * H) * 2));
      const double gus = 1e3 * bench::median_launch_ms(st, 200, [&](int) {
        kernels::gate_logits_bf16_cuda(d_x, d_g, T, r.E, H, d_lg, st);
      });
      std::printf("| gate_logits_bf16_cuda | %s %lldx%lld | %lld | %.2f |\n", r.name, static_cast<long long>(r.E),
                  static_cast<long long>(H), static_cast<long long>(T), gus);
      auto* d_res = static_cast<float*>(device(static_cast<std::size_t>(T * H) * 4));
      auto* d_u = static_cast<uint16_t*>(device(static_cast<std::size_t>(T * H) * 2));
      CHECK(cudaMemset(d_res, 0, static_cast<std::size_t>(T * H) * 4));
      const double nus = 1e3 * bench::median_launch_ms(st, 200, [&](int) {
        kernels::add2_rmsnorm_f32_cuda(d_res, d_x, d_x, d_g, T, H, 1e-5f, d_u, nullptr, st);
      });
      std::printf("| add2_rmsnorm_f32_cuda | H=%lld | %lld | %.2f |\n", static_cast<long long>(H),
                  static_cast<long long>(T), nus);
    }
  }
  return 0;
}
