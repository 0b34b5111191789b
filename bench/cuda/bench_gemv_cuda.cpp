// Decode GEMV bandwidth on the real Nemotron 3 shapes: bytes of stored weight (+ block scales)
// read per launch over the time per launch, against the device's measured copy bandwidth, for
// both GEMV kernels: "rows" (LinearPath::GemvWarpRow, one warp per output row on the CUDA
// cores) and "tiles" (the default: 16-row tiles on the tensor cores, x in shared memory).
// Each shape is replicated over enough device copies (>= 512 MiB together) that the 50 MB L2
// cannot serve repeated launches; 50 launches (rotating copies) are captured in a CUDA graph
// and replayed; the median of 9 replays is reported.
// Then the routed-expert GEMV (expert_gemv_cuda, Nano: 128 NVFP4 experts, k = 6, experts
// rotating over launches so that the L2 cannot serve them), both per-pair kernels.
// Then the routed-expert projection by path (moe_cuda.h) at Nano (128 experts, k = 6) and Super
// latent (512, k = 22) expert shapes, NVFP4, router-like random routing (k distinct experts per
// token, new ids every launch): per-pair GEMV, batch path, grouped GEMM, and expert_gemv_cuda's
// own choice with a workspace (what the model runs), in us per call and as the bytes of the
// distinct experts a call selects over its time (the bytes the batch path must read; the
// per-pair GEMV reads more at T > 1). At T <= 4 a later launch may find some of its experts
// still in L2 (the 50 MB hold ~18 Nano experts), which flatters those rows a little. Then the
// layer's up + down pair as the model launches them, per batch layout.
// With --few-rows: the GEMM path at 9..64 rows (decode batches, verify steps) without and with
// the split-K workspace, on the dense decode shapes.
//   usage: bench_gemv_cuda [T ...]            (default T = 1 2 4 8)
//          bench_gemv_cuda --experts          (only the routed-expert tables)
//          bench_gemv_cuda --few-rows [T ...] (default T = 16 32 64)
#include <cuda_runtime.h>

#include "bench_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/linear_internal.cuh"
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
                    LinearPath path, void* ws = nullptr, int64_t ws_bytes = 0) {
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
    a.workspace = ws;
    a.workspace_bytes = ws_bytes;
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

// E device copies of one random NVFP4 expert [out, in] (identical bytes, distinct memory: no L2
// sharing between experts); the same bytes serve as [in, out] for the other projection.
struct ExpertCopies {
  std::vector<void*> w, s;
  void *dw = nullptr, *ds = nullptr, *dsc = nullptr;
  int64_t E, bytes;  // bytes: stored weight + block scales of one expert
  ExpertCopies(int64_t experts, int64_t out, int64_t in) : E(experts) {
    const auto hw = nemotron::testing::make_weight(WeightFormat::NVFP4, out, in, 78);
    bytes = hw.w.stored_bytes();
    w.assign(static_cast<std::size_t>(E), nullptr);
    s.assign(static_cast<std::size_t>(E), nullptr);
    for (int64_t e = 0; e < E; ++e) {
      CHECK(cudaMalloc(&w[e], hw.data.size()));
      CHECK(cudaMemcpy(w[e], hw.data.data(), hw.data.size(), cudaMemcpyHostToDevice));
      CHECK(cudaMalloc(&s[e], hw.scales.size()));
      CHECK(cudaMemcpy(s[e], hw.scales.data(), hw.scales.size(), cudaMemcpyHostToDevice));
    }
    const std::vector<float> sc(static_cast<std::size_t>(E), hw.w.scale);
    CHECK(cudaMalloc(&dw, E * sizeof(void*)));
    CHECK(cudaMalloc(&ds, E * sizeof(void*)));
    CHECK(cudaMalloc(&dsc, E * sizeof(float)));
    CHECK(cudaMemcpy(dw, w.data(), E * sizeof(void*), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(ds, s.data(), E * sizeof(void*), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dsc, sc.data(), E * sizeof(float), cudaMemcpyHostToDevice));
  }
  ~ExpertCopies() {
    for (std::size_t e = 0; e < w.size(); ++e) {
      cudaFree(w[e]);
      cudaFree(s[e]);
    }
    for (void* p : {dw, ds, dsc}) cudaFree(p);
  }
  nemotron::kernels::ExpertTable table(int64_t out, int64_t in) const {
    return {WeightFormat::NVFP4, E, out, in, static_cast<const void* const*>(dw), static_cast<const uint8_t* const*>(ds),
            static_cast<const float*>(dsc)};
  }
};

// `launches` routings of T tokens, k distinct random experts of E per token each ([launches, T,
// k]); *distinct: the mean number of distinct experts a routing selects.
std::vector<int32_t> random_routing(int64_t E, int64_t T, int64_t k, int launches, uint64_t seed, double* distinct) {
  std::vector<int32_t> ids(static_cast<std::size_t>(launches * T * k));
  *distinct = 0;
  for (int l = 0; l < launches; ++l) {
    std::vector<char> used(static_cast<std::size_t>(E), 0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        int32_t* slot = &ids[static_cast<std::size_t>((l * T + t) * k + j)];
        do {
          *slot = static_cast<int32_t>(nemotron::testing::splitmix(seed) % static_cast<uint64_t>(E));
        } while (std::find(slot - j, slot, *slot) != slot);  // distinct inside the token
        used[static_cast<std::size_t>(*slot)] = 1;
      }
    *distinct += static_cast<double>(std::count(used.begin(), used.end(), 1));
  }
  *distinct /= launches;
  return ids;
}

// One projection at T rows: `launches` routings (k distinct random experts per token each), one
// per launch of the graph. Prints one table row.
void bench_expert_projection(const char* name, const ExpertCopies& ex, int64_t out, int64_t in, int64_t T, int64_t k,
                             bool up, double copy) {
  namespace nk = nemotron::kernels;
  const int launches = 20;
  const int64_t N = T * k, E = ex.E;
  double distinct = 0;
  const std::vector<int32_t> ids = random_routing(E, T, k, launches, 4242 + static_cast<uint64_t>(T), &distinct);
  const double bytes = distinct * static_cast<double>(ex.bytes);
  void *dids = nullptr, *x = nullptr, *y = nullptr, *ws = nullptr;
  CHECK(cudaMalloc(&dids, ids.size() * 4));
  CHECK(cudaMemcpy(dids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  const int64_t xrows = up ? T : N;
  std::vector<uint16_t> xh(static_cast<std::size_t>(xrows * in));
  for (std::size_t i = 0; i < xh.size(); ++i) xh[i] = nk::float_to_bf16(0.01f * static_cast<float>(i % 89) - 0.4f);
  CHECK(cudaMalloc(&x, xh.size() * 2));
  CHECK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMalloc(&y, static_cast<std::size_t>(N * out) * 2));
  const int64_t ws_bytes = nk::expert_gemv_workspace_bytes(T, k, E);
  CHECK(cudaMalloc(&ws, static_cast<std::size_t>(ws_bytes)));
  cudaStream_t st;
  CHECK(cudaStreamCreate(&st));
  auto args = [&](int i, bool with_ws) {
    nk::ExpertGemvArgs a;
    a.w = ex.table(out, in);
    a.ids = static_cast<const int32_t*>(dids) + (i % launches) * N;
    a.T = T;
    a.k = k;
    a.x = static_cast<const uint16_t*>(x);
    a.x_per_slot = !up;
    a.relu2 = up;
    a.y = static_cast<uint16_t*>(y);
    if (with_ws) {
      a.workspace = ws;
      a.workspace_bytes = ws_bytes;
    }
    return a;
  };
  auto time = [&](const std::function<void(int)>& launch) {
    for (int i = 0; i < launches; ++i) launch(i);  // warm-up (attributes, first touch)
    CHECK(cudaStreamSynchronize(st));
    return nemotron::bench::median_launch_ms(st, launches, launch) * 1e3;  // us per call
  };
  const double pp = time([&](int i) { nk::expert_gemv_cuda(args(i, false), st); });
  const double batch = time([&](int i) {
    if (!nk::cuda::launch_expert_batch(args(i, true), st)) {
      std::fprintf(stderr, "batch path declined\n");
      std::exit(1);
    }
  });
  const double grouped = time([&](int i) { nk::cuda::launch_expert_grouped(args(i, true), st, 0); });
  const double aut = time([&](int i) { nk::expert_gemv_cuda(args(i, true), st); });
  const auto path = nk::expert_gemv_path(T, k, E, true);
  const char* pname = path == nk::ExpertGemvPath::Batch ? "batch" : path == nk::ExpertGemvPath::Grouped ? "grouped" : "per-pair";
  auto gbs = [&](double us) { return bytes / (us * 1e-6) / 1e9; };
  std::printf("| %s | %d | %d | %.1f | %.1f | %.1f (%.0f GB/s) | %.1f (%.0f GB/s, %.1f%%) | %.1f (%.0f GB/s) | %.1f %s | "
              "%.2fx |\n",
              name, static_cast<int>(T), static_cast<int>(N), distinct, bytes / 1e6, pp, gbs(pp), batch, gbs(batch),
              100.0 * gbs(batch) / copy, grouped, gbs(grouped), aut, pname, pp / batch);
  std::fflush(stdout);
  CHECK(cudaStreamDestroy(st));
  for (void* p : {dids, x, y, ws}) CHECK(cudaFree(p));
}

// The MoE layer's routed pair as the model runs it (cuda_block_moe.cpp): the up projection
// (+ relu2) buckets the pairs into the workspace, then the down projection on its output reuses
// the buckets and reads them and its first weights before its PDL wait (ids_settled,
// reuse_buckets), so its loads overlap the up projection's tail, which one projection timed
// alone does not show. Up and down are distinct copies (the down projection finds nothing of
// the up projection's experts in L2). us per up + down, for each batch layout in turn, twice.
void bench_expert_layer(const char* name, int64_t hidden, int64_t inter, int64_t E, int64_t k, double copy) {
  namespace nk = nemotron::kernels;
  using Layout = nk::ExpertGemvArgs::BatchLayout;
  const ExpertCopies up_ex(E, inter, hidden), down_ex(E, hidden, inter);
  const int launches = 20;
  std::printf("\n%s routed experts, up + down as the model runs them (us per layer; GB/s of the distinct experts' "
              "bytes)\n\n| T | experts | MB | path | registers | ring | split K | registers | ring | split K |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n", name);
  for (int64_t T : {2, 4, 8, 16, 32, 64}) {
    const int64_t N = T * k;
    double distinct = 0;
    const std::vector<int32_t> ids = random_routing(E, T, k, launches, 777 + static_cast<uint64_t>(T), &distinct);
    const double bytes = distinct * static_cast<double>(up_ex.bytes + down_ex.bytes);
    void *dids = nullptr, *x = nullptr, *h = nullptr, *y = nullptr, *ws = nullptr;
    CHECK(cudaMalloc(&dids, ids.size() * 4));
    CHECK(cudaMemcpy(dids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    std::vector<uint16_t> xh(static_cast<std::size_t>(T * hidden));
    for (std::size_t i = 0; i < xh.size(); ++i) xh[i] = nk::float_to_bf16(0.01f * static_cast<float>(i % 89) - 0.4f);
    CHECK(cudaMalloc(&x, xh.size() * 2));
    CHECK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMalloc(&h, static_cast<std::size_t>(N * inter) * 2));
    CHECK(cudaMalloc(&y, static_cast<std::size_t>(N * hidden) * 2));
    const int64_t ws_bytes = nk::expert_gemv_workspace_bytes(T, k, E);
    CHECK(cudaMalloc(&ws, static_cast<std::size_t>(ws_bytes)));
    cudaStream_t st;
    CHECK(cudaStreamCreate(&st));
    nk::ExpertGemvPath path = nk::ExpertGemvPath::PerPair;
    auto layer = [&](int i, Layout layout) {
      nk::ExpertGemvArgs a;
      a.w = up_ex.table(inter, hidden);
      a.ids = static_cast<const int32_t*>(dids) + (i % launches) * N;
      a.T = T;
      a.k = k;
      a.x = static_cast<const uint16_t*>(x);
      a.relu2 = true;
      a.y = static_cast<uint16_t*>(h);
      a.workspace = ws;
      a.workspace_bytes = ws_bytes;
      a.batch_layout = layout;
      path = nk::expert_gemv_cuda(a, st);
      a.w = down_ex.table(hidden, inter);
      a.x = static_cast<const uint16_t*>(h);
      a.x_per_slot = true;
      a.relu2 = false;
      a.y = static_cast<uint16_t*>(y);
      a.ids_settled = true;
      a.reuse_buckets = path == nk::ExpertGemvPath::Batch;
      nk::expert_gemv_cuda(a, st);
    };
    double us[6];
    const Layout order[3] = {Layout::WarpTile, Layout::WarpTileRing, Layout::SplitK};
    for (int r = 0; r < 6; ++r) {
      const Layout lay = order[r % 3];
      for (int i = 0; i < launches; ++i) layer(i, lay);  // warm-up (attributes, first touch)
      CHECK(cudaStreamSynchronize(st));
      us[r] = nemotron::bench::median_launch_ms(st, launches, [&](int i) { layer(i, lay); }) * 1e3;
    }
    const char* pname = path == nk::ExpertGemvPath::Batch     ? "batch"
                        : path == nk::ExpertGemvPath::Grouped ? "grouped"
                                                              : "per-pair";
    std::printf("| %d | %.1f | %.1f | %s |", static_cast<int>(T), distinct, bytes / 1e6, pname);
    for (double u : us) std::printf(" %.1f (%.1f%%) |", u, 100.0 * bytes / (u * 1e-6) / 1e9 / copy);
    std::printf("\n");
    std::fflush(stdout);
    CHECK(cudaStreamDestroy(st));
    for (void* p : {dids, x, h, y, ws}) CHECK(cudaFree(p));
  }
}

void bench_expert_paths(double copy) {
  std::printf("\nrouted-expert projection by path (NVFP4, random router-like routing; GB/s = bytes of the distinct "
              "experts selected / time; auto = expert_gemv_cuda with a workspace)\n\n");
  std::printf("| projection | T | pairs | experts | MB | per-pair us | batch us | grouped us | auto us | "
              "per-pair / batch |\n|---|---|---|---|---|---|---|---|---|---|\n");
  const int64_t Ts[] = {1, 2, 4, 8, 32, 64};
  {
    const ExpertCopies nano(128, 1856, 2688);
    for (int64_t T : Ts) bench_expert_projection("nano up [1856, 2688] + relu2", nano, 1856, 2688, T, 6, true, copy);
    for (int64_t T : Ts) bench_expert_projection("nano down [2688, 1856]", nano, 2688, 1856, T, 6, false, copy);
  }
  {
    const ExpertCopies super(512, 2688, 1024);
    for (int64_t T : Ts) bench_expert_projection("super up [2688, 1024] + relu2", super, 2688, 1024, T, 22, true, copy);
    for (int64_t T : Ts) bench_expert_projection("super down [1024, 2688]", super, 1024, 2688, T, 22, false, copy);
  }
  bench_expert_layer("Nano (128 experts [1856, 2688], k = 6)", 2688, 1856, 128, 6, copy);
  bench_expert_layer("Super latent (512 experts [2688, 1024], k = 22)", 1024, 2688, 512, 22, copy);
}

}  // namespace

// The GEMM at few rows, whole K per tile vs split K (the model's path from 9 rows on).
void bench_few_rows(const std::vector<int64_t>& Ts, double copy) {
  const Shape shapes[] = {{"nano.in_proj", 10304, 2688, OutType::BF16},
                          {"nano.out_proj", 2688, 4096, OutType::BF16},
                          {"nano.shared_up", 3712, 2688, OutType::BF16},
                          {"nano.shared_down", 2688, 3712, OutType::BF16},
                          {"nano.router (f32 out)", 128, 2688, OutType::F32},
                          {"nano.q", 4096, 2688, OutType::BF16},
                          {"super.in_proj", 18560, 4096, OutType::BF16}};
  int dev = 0, sms = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t ws_bytes = nemotron::kernels::linear_split_workspace_bytes(sms);
  void* ws = nullptr;
  CHECK(cudaMalloc(&ws, static_cast<std::size_t>(ws_bytes)));
  CHECK(cudaMemset(ws, 0, static_cast<std::size_t>(ws_bytes)));
  std::printf("\nGEMM path at few rows: whole K per 64 x 128 tile vs split K (workspace %.1f MB)\n\n", ws_bytes / 1e6);
  std::printf("| shape | out x in | format | T | MB | gemm us | gemm %% of copy | split-K us | split-K GB/s | "
              "split-K %% of copy | speed-up |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& s : shapes)
    for (auto f : {WeightFormat::Dense, WeightFormat::NVFP4}) {
      const auto hw = nemotron::testing::make_weight(f, s.out, s.in, 1234);
      const Copies c(hw, int64_t{512} << 20);
      const double bytes = static_cast<double>(hw.w.stored_bytes());
      for (int64_t T : Ts) {
        const double tg = bench_linear(s, hw, c, T, LinearPath::Gemm);
        const double ts = bench_linear(s, hw, c, T, LinearPath::Gemm, ws, ws_bytes);
        std::printf("| %-22s | %6lld x %5lld | %-5s | %d | %7.2f | %7.1f | %5.1f%% | %7.1f | %5.0f | %5.1f%% | %.2fx |\n",
                    s.name, static_cast<long long>(s.out), static_cast<long long>(s.in),
                    nemotron::kernels::weight_format_name(f), static_cast<int>(T), bytes / 1e6, tg * 1e6,
                    100.0 * bytes / tg / 1e9 / copy, ts * 1e6, bytes / ts / 1e9, 100.0 * bytes / ts / 1e9 / copy,
                    tg / ts);
      }
    }
  CHECK(cudaFree(ws));
}

int main(int argc, char** argv) {
  std::vector<int64_t> Ts;
  const bool experts_only = argc > 1 && std::strcmp(argv[1], "--experts") == 0;
  const bool few_rows = argc > 1 && std::strcmp(argv[1], "--few-rows") == 0;
  for (int i = experts_only || few_rows ? 2 : 1; i < argc; ++i) Ts.push_back(std::atoll(argv[i]));
  if (Ts.empty()) Ts = few_rows ? std::vector<int64_t>{16, 32, 64} : std::vector<int64_t>{1, 2, 4, 8};
  const double copy = nemotron::bench::print_device_header();
  if (experts_only) {
    bench_expert_paths(copy);
    return 0;
  }
  if (few_rows) {
    bench_few_rows(Ts, copy);
    return 0;
  }
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
  bench_expert_paths(copy);
  return 0;
}
