// The fused Mamba-2 decode step (mamba_decode_fused_cuda: conv update, SSM state update, gated
// norm) in isolation, at the Mamba shapes of Nano (64 heads) and Super (128 heads), for B
// sequences: us per launch, the bytes one launch moves (each sequence's SSM state read and
// written, its conv windows read and written, its in_proj row read, its output row written)
// and that rate as a share of the copy bandwidth measured in the same run. Each launch of the
// timed graph (at least 20) takes its own set of B slots, the launches cycling over at least
// 512 MiB of state, so that a small B reads its state from DRAM as a decode step does.
//   build-gpu/bench/bench_mamba_cuda [--state float32|bfloat16|float16] [--batch 1,8,64,256]
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kernels/mamba_cuda.h"
#include "kernels/numeric.h"

using namespace nemotron;

namespace {

struct Shape {
  const char* name;
  int64_t heads, head_dim, state_dim, groups, K;
};

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    const long long x = std::strtoll(p, &end, 10);
    if (end == p || x < 1 || x > 4096) {
      std::fprintf(stderr, "--batch: expected a comma-separated list of 1..4096, got '%s'\n", s);
      std::exit(2);
    }
    v.push_back(x);
    p = *end == ',' ? end + 1 : end;
  }
  return v;
}

void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  CHECK(cudaMalloc(&p, bytes));
  return p;
}

std::vector<uint16_t> random_bf16(std::size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = kernels::float_to_bf16(nd(rng));
  return v;
}

template <class T>
T* upload(const std::vector<T>& v) {
  auto* d = static_cast<T*>(device_alloc(v.size() * sizeof(T)));
  CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  kernels::StateDType sdt = kernels::StateDType::F32;
  std::vector<int64_t> batches = {1, 8, 64, 256};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--state" && i + 1 < argc) {
      if (!kernels::parse_state_dtype(argv[++i], sdt)) {
        std::fprintf(stderr, "--state: expected float32, bfloat16 or float16, got '%s'\n", argv[i]);
        return 2;
      }
    } else if (a == "--batch" && i + 1 < argc) {
      batches = parse_list(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_mamba_cuda [--state float32|bfloat16|float16] [--batch 1,8,64,256]\n");
      return 2;
    }
  }
  const double copy = bench::print_device_header();
  std::printf("state %s\n\n", kernels::state_dtype_name(sdt));
  std::printf("| shape | B | us per launch | MB per launch | GB/s | %% of copy |\n|---|---|---|---|---|---|\n");
  cudaStream_t st;
  CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  std::mt19937 rng(7);
  constexpr int kMinLaunches = 20;
  for (const Shape s : {Shape{"Nano", 64, 64, 128, 8, 4}, Shape{"Super", 128, 64, 128, 8, 4}}) {
    if (!kernels::mamba_decode_fused_supported(s.heads, s.head_dim, s.state_dim, s.groups, s.K)) {
      std::printf("| %s | - | unsupported on this device | | | |\n", s.name);
      continue;
    }
    const int64_t di = s.heads * s.head_dim, C = di + 2 * s.groups * s.state_dim, W = di + C + s.heads;
    const int64_t state_bytes = di * s.state_dim * kernels::state_dtype_bytes(sdt);
    const int64_t conv_bytes = (s.K - 1) * C * 4;
    // Per-model weights.
    auto* conv_w = upload(random_bf16(static_cast<std::size_t>(C * s.K), 0.3f, rng));
    auto* conv_b = upload(random_bf16(static_cast<std::size_t>(C), 0.1f, rng));
    auto* norm_w = upload(random_bf16(static_cast<std::size_t>(di), 1.0f, rng));
    std::vector<float> dt_bias(static_cast<std::size_t>(s.heads)), A(dt_bias.size()), D(dt_bias.size());
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    for (std::size_t h = 0; h < dt_bias.size(); ++h) {
      dt_bias[h] = -2.0f + ud(rng);
      A[h] = -1.0f - 8.0f * ud(rng);
      D[h] = ud(rng);
    }
    auto* d_dt_bias = upload(dt_bias);
    auto* d_A = upload(A);
    auto* d_D = upload(D);
    for (const int64_t B : batches) {
      // Slot sets: enough that the graph's launches (one set each, at least kMinLaunches of
      // them) cycle over >= 512 MiB of state, far beyond the L2 cache.
      const int64_t set_bytes = B * (state_bytes + conv_bytes);
      const int64_t sets = std::max<int64_t>(1, ((int64_t{512} << 20) + set_bytes - 1) / set_bytes);
      const int launches = static_cast<int>(std::max<int64_t>(kMinLaunches, sets));
      const int64_t slots = sets * B;
      void* state = device_alloc(static_cast<std::size_t>(slots * state_bytes));
      auto* conv_state = static_cast<float*>(device_alloc(static_cast<std::size_t>(slots * conv_bytes)));
      CHECK(cudaMemset(state, 0, static_cast<std::size_t>(slots * state_bytes)));
      CHECK(cudaMemset(conv_state, 0, static_cast<std::size_t>(slots * conv_bytes)));
      std::vector<int32_t> slot_ids(static_cast<std::size_t>(slots));
      for (int64_t i = 0; i < slots; ++i) slot_ids[static_cast<std::size_t>(i)] = static_cast<int32_t>(i);
      auto* d_slots = upload(slot_ids);
      auto* in_proj = upload(random_bf16(static_cast<std::size_t>(B * W), 1.0f, rng));
      auto* row_pos = upload(std::vector<int32_t>(static_cast<std::size_t>(B), 100));
      auto* out = static_cast<uint16_t*>(device_alloc(static_cast<std::size_t>(B * di * 2)));
      kernels::MambaDecodeArgs a;
      a.state = state;
      a.state_dtype = sdt;
      a.state_stochastic = true;
      a.state_layer = 3;
      a.row_pos = row_pos;
      a.in_proj = in_proj;
      a.in_stride = W;
      a.conv_state = conv_state;
      a.conv_w = conv_w;
      a.conv_b = conv_b;
      a.dt_bias = d_dt_bias;
      a.A = d_A;
      a.D = d_D;
      a.norm_w = norm_w;
      a.rows = B;
      a.heads = s.heads;
      a.head_dim = s.head_dim;
      a.state_dim = s.state_dim;
      a.groups = s.groups;
      a.K = s.K;
      a.out = out;
      const double ms = bench::median_launch_ms(st, launches, [&](int i) {
        kernels::MambaDecodeArgs ai = a;
        ai.slot = d_slots + (i % sets) * B;
        kernels::mamba_decode_fused_cuda(ai, st);
      });
      const double bytes = static_cast<double>(B) * (2.0 * state_bytes + 2.0 * conv_bytes + 2.0 * W + 2.0 * di);
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      std::printf("| %s | %lld | %.2f | %.2f | %.0f | %.1f%% |\n", s.name, static_cast<long long>(B), 1e3 * ms,
                  bytes / 1e6, gbs, 100.0 * gbs / copy);
      for (void* p : {state, static_cast<void*>(conv_state), static_cast<void*>(d_slots), static_cast<void*>(in_proj),
                      static_cast<void*>(row_pos), static_cast<void*>(out)})
        CHECK(cudaFree(p));
    }
    for (void* p : {static_cast<void*>(conv_w), static_cast<void*>(conv_b), static_cast<void*>(norm_w),
                    static_cast<void*>(d_dt_bias), static_cast<void*>(d_A), static_cast<void*>(d_D)})
      CHECK(cudaFree(p));
  }
  return 0;
}
