// Prefill GEMM throughput (TFLOP/s = 2 * rows * out * in / time), next to cuBLAS's BF16 GEMM
// of the same shape measured in the same run (cublasGemmEx, BF16 in and out, fp32 compute: the
// device's dense reference; our FP8 / NVFP4 rows decode to BF16 and do the same tensor work):
//   1. dense linear (linear_cuda's GEMM path, gemm_core.cuh): Nano in_proj [10304, 2688],
//      out_proj [2688, 4096], lm_head [131072, 2688]; T = 512 / 2048 / 8192; BF16 / FP8 /
//      NVFP4 weights, BF16 out.
//   2. routed experts at Nano shapes (128 experts, k = 6, uniformly random routing; up
//      [1856, 2688] + relu² on token rows, down [2688, 1856] on pair rows), T = 2048: "grouped"
//      = expert_gemv_cuda with a workspace (auto row tile; also forced 64 / 128), "gemv" =
//      expert_gemv_cuda without a workspace (one pass over the expert per pair); cuBLAS = one
//      dense [T*k, out, in] GEMM (the same FLOPs, no routing). Every expert has its own copy.
//   3. the GEMV / batch / grouped crossover on the Nano up projection (NVFP4), T*k = 48 .. 6144
//      (kExpertGroupedMinPairsPerExpert: the batch path hands over to the grouped GEMM at
//      T*k >= 12 E = 1536 pairs, T = 256).
// Times: CUDA graphs of `launches` calls, median of 9 replays (bench_util.h). Weights of the
// dense shapes may be partly L2-resident across launches (the GEMM is compute-bound there).
//   usage: bench_gemm_cuda [--quick]   (--quick: T = 2048 only, NVFP4 only for sections 1-2)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "bench_util.h"

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/linear_internal.cuh"
#include "kernels/linear_cuda.h"
#include "kernels/moe_cuda.h"
#include "linear_test_util.h"

namespace {

using nemotron::kernels::ExpertGemvArgs;
using nemotron::kernels::LinearCudaArgs;
using nemotron::kernels::OutType;
using nemotron::kernels::WeightFormat;
namespace nk = nemotron::kernels;

struct DevMem {
  void* p = nullptr;
  explicit DevMem(std::size_t n) { CHECK(cudaMalloc(&p, n ? n : 16)); }
  DevMem(const void* h, std::size_t n) : DevMem(n) { CHECK(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice)); }
  ~DevMem() { cudaFree(p); }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
};

std::vector<uint16_t> random_x(int64_t n) {
  std::vector<uint16_t> x(static_cast<std::size_t>(n));
  uint64_t s = 1234;
  for (auto& v : x) v = nk::float_to_bf16(static_cast<float>(nemotron::testing::splitmix(s) % 2001) / 1000.0f - 1.0f);
  return x;
}

double tflops(double flops, double ms) { return flops / (ms * 1e-3) / 1e12; }

int launches_for(double flops) { return flops > 2e12 ? 2 : flops > 2e11 ? 5 : 20; }

// cuBLAS BF16 GEMM Y [rows, out] = X [rows, in] W^T (row-major), fp32 compute; milliseconds.
double cublas_ms(cublasHandle_t h, cudaStream_t st, int n, const void* w, const void* x, void* y, int64_t rows,
                 int64_t out, int64_t in) {
  const float one = 1.0f, zero = 0.0f;
  if (cublasSetStream(h, st) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasSetStream failed");
  return nemotron::bench::median_launch_ms(st, n, [&](int) {
    // Column-major view: Y^T [out, rows] = W [in, out]^T X^T [in, rows].
    const cublasStatus_t r = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(rows),
                                          static_cast<int>(in), &one, w, CUDA_R_16BF, static_cast<int>(in), x,
                                          CUDA_R_16BF, static_cast<int>(in), &zero, y, CUDA_R_16BF,
                                          static_cast<int>(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (r != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasGemmEx failed: " + std::to_string(r));
  });
}

void bench_dense(bool quick, cublasHandle_t cb, cudaStream_t st) {
  struct Shape {
    const char* name;
    int64_t out, in;
  };
  const Shape shapes[] = {{"in_proj", 10304, 2688}, {"out_proj", 2688, 4096}, {"lm_head", 131072, 2688}};
  std::vector<int64_t> Ts = quick ? std::vector<int64_t>{2048} : std::vector<int64_t>{512, 2048, 8192};
  std::vector<WeightFormat> fmts = quick ? std::vector<WeightFormat>{WeightFormat::NVFP4}
                                         : std::vector<WeightFormat>{WeightFormat::Dense, WeightFormat::FP8,
                                                                     WeightFormat::NVFP4};
  std::printf("## Dense prefill GEMM (BF16 out), TFLOP/s\n\n| shape | format | T | ours | cuBLAS BF16 | ours / cuBLAS |\n"
              "|---|---|---|---|---|---|\n");
  const auto x = random_x(8192 * 4096);
  DevMem dx(x.data(), x.size() * 2), dy(static_cast<std::size_t>(8192) * 131072 * 2);
  for (const auto& s : shapes) {
    const auto wb = nemotron::testing::make_weight(WeightFormat::Dense, s.out, s.in, 7);
    DevMem dwb(wb.data.data(), wb.data.size());
    std::vector<double> ref_ms;
    for (int64_t T : Ts) {
      const double flops = 2.0 * static_cast<double>(T) * static_cast<double>(s.out) * static_cast<double>(s.in);
      ref_ms.push_back(cublas_ms(cb, st, launches_for(flops), dwb.p, dx.p, dy.p, T, s.out, s.in));
    }
    for (auto f : fmts) {
      const auto hw = nemotron::testing::make_weight(f, s.out, s.in, 7);
      DevMem dw(hw.data.data(), hw.data.size()), ds(hw.scales.data(), hw.scales.size());
      for (std::size_t ti = 0; ti < Ts.size(); ++ti) {
        const int64_t T = Ts[ti];
        LinearCudaArgs a;
        a.w = hw.w;
        a.w.data = dw.p;
        a.w.block_scale = f == WeightFormat::NVFP4 ? static_cast<const uint8_t*>(ds.p) : nullptr;
        a.x = static_cast<const uint16_t*>(dx.p);
        a.T = T;
        a.y = dy.p;
        const double flops = 2.0 * static_cast<double>(T) * static_cast<double>(s.out) * static_cast<double>(s.in);
        const int n = launches_for(flops);
        const double ms = nemotron::bench::median_launch_ms(st, n, [&](int) { nk::cuda::launch_linear_gemm(a, st); });
        std::printf("| %s [%lld, %lld] | %s | %lld | %.1f | %.1f | %.0f%% |\n", s.name, static_cast<long long>(s.out),
                    static_cast<long long>(s.in), nk::weight_format_name(f), static_cast<long long>(T),
                    tflops(flops, ms), tflops(flops, ref_ms[ti]), 100.0 * ref_ms[ti] / ms);
        std::fflush(stdout);
      }
    }
  }
  std::printf("\n");
}

// E device copies of one random expert (identical bytes, distinct memory: no L2 sharing).
struct ExpertSet {
  std::vector<std::unique_ptr<DevMem>> w, s;
  std::unique_ptr<DevMem> data, scales, scale;
  nk::ExpertTable table;
  ExpertSet(WeightFormat f, int64_t E, int64_t out, int64_t in) {
    const auto hw = nemotron::testing::make_weight(f, out, in, 3);
    std::vector<const void*> dp;
    std::vector<const uint8_t*> sp;
    std::vector<float> sc(static_cast<std::size_t>(E), hw.w.scale);
    for (int64_t e = 0; e < E; ++e) {
      w.push_back(std::make_unique<DevMem>(hw.data.data(), hw.data.size()));
      dp.push_back(w.back()->p);
      s.push_back(std::make_unique<DevMem>(hw.scales.data(), hw.scales.size()));
      sp.push_back(static_cast<const uint8_t*>(s.back()->p));
    }
    data = std::make_unique<DevMem>(dp.data(), dp.size() * sizeof(void*));
    scales = std::make_unique<DevMem>(sp.data(), sp.size() * sizeof(void*));
    scale = std::make_unique<DevMem>(sc.data(), sc.size() * sizeof(float));
    table = {f, E, out, in, static_cast<const void* const*>(data->p),
             f == WeightFormat::NVFP4 ? static_cast<const uint8_t* const*>(scales->p) : nullptr,
             static_cast<const float*>(scale->p)};
  }
};

std::vector<int32_t> random_ids(int64_t n, int64_t E, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(nemotron::testing::splitmix(seed) % static_cast<uint64_t>(E));
  return ids;
}

void bench_experts(bool quick, cublasHandle_t cb, cudaStream_t st) {
  constexpr int64_t E = 128, k = 6, T = 2048, N = T * k, I = 1856, H = 2688;
  std::printf("## Routed experts, Nano shapes (E = 128, k = 6, T = 2048, random routing), TFLOP/s\n\n"
              "| projection | format | gemv (per pair) | grouped bm=64 | grouped bm=128 | grouped (auto) | "
              "cuBLAS BF16 dense [T*k] | auto / cuBLAS |\n|---|---|---|---|---|---|---|---|\n");
  const auto ids = random_ids(N, E, 99);
  DevMem did(ids.data(), ids.size() * 4);
  const auto x = random_x(N * H);
  DevMem dx(x.data(), x.size() * 2), dy(static_cast<std::size_t>(N * H) * 2);
  const int64_t ws_new = nk::expert_gemv_workspace_bytes(T, k, E);
  DevMem wsn(static_cast<std::size_t>(ws_new));
  const double flops = 2.0 * N * static_cast<double>(I) * static_cast<double>(H);
  double ref_ms[2];
  {
    const auto wb = nemotron::testing::make_weight(WeightFormat::Dense, I, H, 3);
    DevMem dwb(wb.data.data(), wb.data.size());
    ref_ms[0] = cublas_ms(cb, st, 10, dwb.p, dx.p, dy.p, N, I, H);  // up: [N, 1856] = [N, 2688] W^T
    ref_ms[1] = cublas_ms(cb, st, 10, dwb.p, dx.p, dy.p, N, H, I);  // down: the same bytes as [2688, 1856]
  }
  std::vector<WeightFormat> fmts = quick ? std::vector<WeightFormat>{WeightFormat::NVFP4}
                                         : std::vector<WeightFormat>{WeightFormat::NVFP4, WeightFormat::FP8,
                                                                     WeightFormat::Dense};
  for (auto f : fmts) {
    ExpertSet ex(f, E, I, H);  // [1856, 2688]; the same bytes serve as [2688, 1856] for down
    for (int down = 0; down < 2; ++down) {
      ExpertGemvArgs a;
      a.w = ex.table;
      if (down) std::swap(a.w.out, a.w.in);
      a.ids = static_cast<const int32_t*>(did.p);
      a.T = T;
      a.k = k;
      a.x = static_cast<const uint16_t*>(dx.p);
      a.x_per_slot = down != 0;
      a.relu2 = down == 0;
      a.y = static_cast<uint16_t*>(dy.p);
      const double gemv = nemotron::bench::median_launch_ms(st, 1, [&](int) { nk::expert_gemv_cuda(a, st); });
      ExpertGemvArgs g = a;
      g.workspace = wsn.p;
      g.workspace_bytes = ws_new;
      double t[3];
      const int bms[3] = {64, 128, 0};
      for (int i = 0; i < 3; ++i)
        t[i] = nemotron::bench::median_launch_ms(st, 10, [&](int) { nk::cuda::launch_expert_grouped(g, st, bms[i]); });
      const double aut = nemotron::bench::median_launch_ms(st, 10, [&](int) { nk::expert_gemv_cuda(g, st); });
      std::printf("| %s | %s | %.1f | %.1f | %.1f | %.1f (%.0f us) | %.1f | %.0f%% |\n",
                  down ? "down [2688, 1856]" : "up [1856, 2688]", nk::weight_format_name(f), tflops(flops, gemv),
                  tflops(flops, t[0]), tflops(flops, t[1]), tflops(flops, aut), aut * 1e3,
                  tflops(flops, ref_ms[down]), 100.0 * ref_ms[down] / aut);
      std::fflush(stdout);
    }
  }
  std::printf("\n");
}

void bench_crossover(cudaStream_t st) {
  constexpr int64_t E = 128, k = 6, I = 1856, H = 2688;
  std::printf("## GEMV vs batch vs grouped, Nano up projection NVFP4 (us per call; auto = expert_gemv_cuda with a "
              "workspace)\n\n| T | T*k | gemv | batch | grouped | auto |\n|---|---|---|---|---|---|\n");
  ExpertSet ex(WeightFormat::NVFP4, E, I, H);
  for (int64_t T : {8, 11, 16, 32, 64, 128, 192, 256, 384, 512, 768, 1024}) {
    const auto ids = random_ids(T * k, E, 5 + static_cast<uint64_t>(T));
    DevMem did(ids.data(), ids.size() * 4);
    const auto x = random_x(T * H);
    DevMem dx(x.data(), x.size() * 2), dy(static_cast<std::size_t>(T * k * I) * 2);
    const int64_t wsb = nk::expert_gemv_workspace_bytes(T, k, E);
    DevMem ws(static_cast<std::size_t>(wsb));
    ExpertGemvArgs a;
    a.w = ex.table;
    a.ids = static_cast<const int32_t*>(did.p);
    a.T = T;
    a.k = k;
    a.x = static_cast<const uint16_t*>(dx.p);
    a.relu2 = true;
    a.y = static_cast<uint16_t*>(dy.p);
    const double gemv = nemotron::bench::median_launch_ms(st, 20, [&](int) { nk::expert_gemv_cuda(a, st); });
    a.workspace = ws.p;
    a.workspace_bytes = wsb;
    const double grp = nemotron::bench::median_launch_ms(st, 20, [&](int) { nk::cuda::launch_expert_grouped(a, st, 0); });
    const double bat = nemotron::bench::median_launch_ms(st, 20, [&](int) {
      if (!nk::cuda::launch_expert_batch(a, st)) throw std::runtime_error("the batch path declined");
    });
    const double aut = nemotron::bench::median_launch_ms(st, 20, [&](int) { nk::expert_gemv_cuda(a, st); });
    std::printf("| %lld | %lld | %.1f | %.1f | %.1f | %.1f |\n", static_cast<long long>(T), static_cast<long long>(T * k),
                gemv * 1e3, bat * 1e3, grp * 1e3, aut * 1e3);
    std::fflush(stdout);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  nemotron::bench::print_device_header();
  cudaStream_t st;
  CHECK(cudaStreamCreate(&st));
  cublasHandle_t cb;
  if (cublasCreate(&cb) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "error: cublasCreate failed\n");
    return 1;
  }
  try {
    bench_experts(quick, cb, st);
    bench_crossover(st);
    bench_dense(quick, cb, st);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  cublasDestroy(cb);
  CHECK(cudaStreamDestroy(st));
  return 0;
}
