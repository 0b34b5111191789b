// sample_cuda in isolation: microseconds per call for V = 131072 and 1, 8, 64, 256 rows (each row
// its own logits), per parameter mix, from a CUDA graph of back-to-back calls (host launch cost
// excluded), and the logits' read bandwidth (rows * V * 4 bytes per call). Two logit shapes:
// "lm" (normal, sd 2.5, plus 20 boosted tokens: a peaked, LM-like row) and "flat" (uniform in
// [0, 1): the worst case for the top_p select and the Gumbel pass, most of V is kept).
//   build/bench/bench_sampling_cuda
#include <cstdio>
#include <random>
#include <vector>

#include "bench_util.h"
#include "kernels/elementwise_cuda.h"
#include "kernels/sampling_cuda.h"

using namespace nemotron;

int main() {
  bench::print_device_header();
  cudaStream_t st;
  CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  const int64_t V = 131072, max_rows = 256, words = (V + 31) / 32;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 2.5f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  auto device = [&](std::size_t bytes) {
    void* p = nullptr;
    CHECK(cudaMalloc(&p, bytes));
    return p;
  };
  auto* d_logits = static_cast<float*>(device(static_cast<std::size_t>(max_rows * V) * 4));
  auto* d_rows = static_cast<kernels::SampleRow*>(device(max_rows * sizeof(kernels::SampleRow)));
  auto* d_counts = static_cast<int32_t*>(device(static_cast<std::size_t>(max_rows * V) * 4));
  auto* d_seen = static_cast<uint32_t*>(device(static_cast<std::size_t>(max_rows * words) * 4));
  auto* d_token = static_cast<int32_t*>(device(max_rows * 4));
  auto* d_lp = static_cast<float*>(device(max_rows * 4));
  auto* d_top_ids = static_cast<int32_t*>(device(max_rows * kernels::kMaxTopLogprobs * 4));
  auto* d_top_lp = static_cast<float*>(device(max_rows * kernels::kMaxTopLogprobs * 4));
  // Penalty state: a 500-token prompt and 100 output tokens per slot.
  {
    std::vector<int32_t> counts(static_cast<std::size_t>(max_rows * V), 0);
    std::vector<uint32_t> seen(static_cast<std::size_t>(max_rows * words), 0);
    for (int64_t s = 0; s < max_rows; ++s)
      for (int k = 0; k < 600; ++k) {
        const int64_t t = rng() % V;
        seen[s * words + t / 32] |= 1u << (t % 32);
        if (k >= 500) counts[s * V + t]++;
      }
    CHECK(cudaMemcpy(d_counts, counts.data(), counts.size() * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(d_seen, seen.data(), seen.size() * 4, cudaMemcpyHostToDevice));
  }
  kernels::sample_workspace_bytes(max_rows, V);

  struct Mix {
    const char* name;
    kernels::SamplingParams p;
    bool pen;
  };
  std::vector<Mix> mixes;
  auto add = [&](const char* name, float t, float top_p, int top_k, float min_p, int logprobs, bool pen) {
    kernels::SamplingParams p;
    p.temperature = t;
    p.top_p = top_p;
    p.top_k = top_k;
    p.min_p = min_p;
    p.logprobs = logprobs;
    if (pen) {  // (presence, not frequency: the graph's repeated calls grow the counts of what they sample)
      p.repetition_penalty = 1.1f;
      p.presence_penalty = 0.2f;
    }
    mixes.push_back({name, p, pen});
  };
  add("greedy", 0.0f, 1.0f, -1, 0.0f, -1, false);
  add("t=0.7 top_p=0.95", 0.7f, 0.95f, -1, 0.0f, -1, false);
  add("t=1 top_k=50", 1.0f, 1.0f, 50, 0.0f, -1, false);
  add("t=1 min_p=0.05", 1.0f, 1.0f, -1, 0.05f, -1, false);
  add("t=0.7 top_p=0.95 + rep/presence penalties", 0.7f, 0.95f, -1, 0.0f, -1, true);
  add("t=0.7 top_p=0.95 + logprobs 5", 0.7f, 0.95f, -1, 0.0f, 5, false);
  add("t=1 (no filter)", 1.0f, 1.0f, -1, 0.0f, -1, false);

  const double floor_us = 1e3 * bench::median_launch_ms(st, 200, [&](int) { kernels::device_wait_cuda(0, st); });
  std::printf("empty kernel (floor): %.2f us\n\n", floor_us);
  std::printf("| logits | mix | rows | us per call | GB/s (logits read) |\n|---|---|---|---|---|\n");
  for (const char* shape : {"lm", "flat"}) {
    std::vector<float> h(static_cast<std::size_t>(max_rows * V));
    for (int64_t r = 0; r < max_rows; ++r) {
      float* row = h.data() + r * V;
      if (shape[0] == 'l') {
        for (int64_t i = 0; i < V; ++i) row[i] = nd(rng);
        for (int k = 0; k < 20; ++k) row[rng() % V] += 12.0f;
      } else {
        for (int64_t i = 0; i < V; ++i) row[i] = ud(rng);
      }
    }
    CHECK(cudaMemcpy(d_logits, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    for (const Mix& m : mixes) {
      for (int64_t rows : {1, 8, 64, 256}) {
        std::vector<kernels::SampleRow> hr;
        for (int64_t r = 0; r < rows; ++r)
          hr.push_back(kernels::make_sample_row(m.p, static_cast<int32_t>(r), m.pen ? static_cast<int32_t>(r) : -1,
                                                1000 + r, 7));
        CHECK(cudaMemcpy(d_rows, hr.data(), hr.size() * sizeof(hr[0]), cudaMemcpyHostToDevice));
        kernels::SampleCudaArgs a;
        a.logits = d_logits;
        a.V = V;
        a.rows = d_rows;
        a.n_rows = rows;
        a.counts = d_counts;
        a.seen = d_seen;
        a.penalty_slots = max_rows;
        a.token = d_token;
        a.logprob = d_lp;
        a.top_ids = d_top_ids;
        a.top_logprobs = d_top_lp;
        // Penalized calls update the counts: harmless for timing (a few tokens per call).
        const double us = 1e3 * bench::median_launch_ms(st, 50, [&](int) { kernels::sample_cuda(a, st); });
        const double gbs = static_cast<double>(rows * V * 4) / (us * 1e-6) / 1e9;
        std::printf("| %s | %s | %lld | %.2f | %.0f |\n", shape, m.name, static_cast<long long>(rows), us, gbs);
      }
    }
  }
  return 0;
}
