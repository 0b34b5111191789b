// Paged attention decode bandwidth (Nemotron 3 Nano/Super shape: 32 q heads, 2 kv heads,
// head_dim 128, page size 16): bytes of K and V read per launch over the time per launch,
// against the device's measured copy bandwidth (read + write counted). The cache is replicated
// over enough copies (>= 512 MiB together, like several layers) that the L2 cannot serve
// repeated launches; 50 launches (rotating copies) are captured in a CUDA graph (this also
// checks that the split-K path's stream-ordered allocation captures) and replayed; median of 9.
// Each decode case runs the CUDA-core kernel and the tensor-core decode kernel
// (PagedAttentionArgs::tensor_cores, attention_decode.cu) on the same cache, side by side, and
// for FP8 the tensor-core kernel's direct path too (PagedAttentionArgs::fp8_direct).
// Then prefill chunks (one sequence, `rows` new rows ending at `context`), where attention is
// compute-bound: the CUDA-core kernel (paged_attention_cuda) against the tensor-core one
// (paged_attention_runs_cuda), in us and TFLOP/s (4 * q_heads * head_dim * sum over rows of the
// positions attended: QK^T and PV, causal).
//   usage: bench_attention_cuda [--tensor-only | --decode-only]
// (--tensor-only: the prefill table's tensor-core column alone, for A/B runs of that kernel;
// --decode-only: the decode table alone)
#include <cuda_runtime.h>

#include "bench_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention_cuda.h"
#include "kernels/device_info.h"
#include "kernels/numeric.h"

namespace {

using nemotron::kernels::KvDType;


constexpr int64_t kQHeads = 32, kKvHeads = 2, kDim = 128, kPage = 16;

// Returns the time per launch in seconds. batch sequences of `ctx` cached positions; rows
// queries per sequence at the last positions.
// The kernel a case runs: paged_attention_cuda on the CUDA cores or on the tensor cores
// (decode kernel), or paged_attention_runs_cuda (every sequence's rows as one run).
enum class Kernel { Cores, DecodeTensorCores, DecodeFp8Direct, Runs };

double bench(int64_t batch, int64_t ctx, int64_t rows, KvDType dt, int64_t splits, double* kv_bytes,
             Kernel kernel = Kernel::Cores) {
  const int64_t pages_per_seq = (ctx + kPage - 1) / kPage, num_pages = batch * pages_per_seq;
  const std::size_t elem = dt == KvDType::BF16 ? 2 : 1;
  const std::size_t cache_bytes = static_cast<std::size_t>(num_pages * kPage * kKvHeads * kDim) * elem;
  const int copies = static_cast<int>(std::clamp<int64_t>((int64_t{512} << 20) / (2 * cache_bytes) + 1, 2, 64));
  std::mt19937 rng(7);
  std::vector<uint8_t> fill(cache_bytes);
  for (std::size_t i = 0; i < fill.size(); ++i)
    fill[i] = elem == 2 && (i & 1) ? static_cast<uint8_t>(0x3C + (rng() & 1)) : static_cast<uint8_t>(rng() & 0x77);
  std::vector<void*> kd(copies), vd(copies);
  for (int i = 0; i < copies; ++i) {
    CHECK(cudaMalloc(&kd[i], cache_bytes));
    CHECK(cudaMalloc(&vd[i], cache_bytes));
    CHECK(cudaMemcpy(kd[i], fill.data(), cache_bytes, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(vd[i], fill.data(), cache_bytes, cudaMemcpyHostToDevice));
  }
  std::vector<int32_t> order(static_cast<std::size_t>(num_pages));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> qseq, qpos;
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t r = 0; r < rows; ++r) {
      qseq.push_back(static_cast<int32_t>(s));
      qpos.push_back(static_cast<int32_t>(ctx - rows + r));
    }
  const int64_t T = batch * rows;
  std::vector<uint16_t> qh(static_cast<std::size_t>(T * kQHeads * kDim));
  for (std::size_t i = 0; i < qh.size(); ++i)
    qh[i] = nemotron::kernels::float_to_bf16(0.01f * static_cast<float>(i % 97) - 0.4f);
  int32_t *dbt = nullptr, *dseq = nullptr, *dpos = nullptr;
  uint16_t *dq = nullptr, *dout = nullptr;
  CHECK(cudaMalloc(&dbt, order.size() * 4));
  CHECK(cudaMalloc(&dseq, qseq.size() * 4));
  CHECK(cudaMalloc(&dpos, qpos.size() * 4));
  CHECK(cudaMalloc(&dq, qh.size() * 2));
  CHECK(cudaMalloc(&dout, qh.size() * 2));
  CHECK(cudaMemcpy(dbt, order.data(), order.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dseq, qseq.data(), qseq.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dpos, qpos.data(), qpos.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dq, qh.data(), qh.size() * 2, cudaMemcpyHostToDevice));
  cudaStream_t st;
  CHECK(cudaStreamCreate(&st));
  auto run = [&](int i) {
    nemotron::kernels::PagedAttentionArgs a;
    a.q = dq;
    a.T = T;
    a.q_heads = kQHeads;
    a.query_seq = dseq;
    a.query_pos = dpos;
    a.block_tables = dbt;
    a.max_pages = pages_per_seq;
    a.cache.k = kd[i];
    a.cache.v = vd[i];
    a.cache.dtype = dt;
    a.cache.num_pages = num_pages;
    a.cache.page_size = kPage;
    a.cache.kv_heads = kKvHeads;
    a.cache.head_dim = kDim;
    a.cache.k_scale = a.cache.v_scale = 0.01f;
    a.out = dout;
    a.num_splits = splits;
    if (kernel != Kernel::Runs) {
      a.tensor_cores = kernel == Kernel::Cores ? 0 : 1;
      a.fp8_direct = kernel == Kernel::DecodeFp8Direct ? 1 : 0;
      nemotron::kernels::paged_attention_cuda(a, st);
      return;
    }
    std::vector<nemotron::kernels::AttentionRun> runs;
    for (int64_t s = 0; s < batch; ++s) runs.push_back({s * rows, rows});
    nemotron::kernels::paged_attention_runs_cuda(a, runs.data(), static_cast<int64_t>(runs.size()), st);
  };
  for (int i = 0; i < copies; ++i) run(i);  // warm-up
  CHECK(cudaStreamSynchronize(st));
  const double ms = nemotron::bench::median_launch_ms(st, 50, [&](int i) { run(i % copies); });
  CHECK(cudaStreamDestroy(st));
  for (int i = 0; i < copies; ++i) {
    CHECK(cudaFree(kd[i]));
    CHECK(cudaFree(vd[i]));
  }
  for (void* p : {static_cast<void*>(dbt), static_cast<void*>(dseq), static_cast<void*>(dpos),
                  static_cast<void*>(dq), static_cast<void*>(dout)})
    CHECK(cudaFree(p));
  *kv_bytes = 2.0 * static_cast<double>(batch * ctx * kKvHeads * kDim) * static_cast<double>(elem);
  return ms * 1e-3;
}

}  // namespace

int main(int argc, char** argv) {
  const bool tensor_only = argc > 1 && std::string(argv[1]) == "--tensor-only";
  const bool decode_only = argc > 1 && std::string(argv[1]) == "--decode-only";
  const double copy = nemotron::bench::print_device_header();
  if (!tensor_only) {
    std::printf("decode, 32 q / 2 kv heads, head_dim 128, page 16\n\n");
    std::printf("| kv | context | batch | splits | KV MB | CUDA cores us | GB/s | %% of copy | tensor cores us | GB/s | "
                "%% of copy | fp8 direct us | %% of copy |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (KvDType dt : {KvDType::BF16, KvDType::FP8_E4M3})
      for (int64_t ctx : {4096, 32768, 131072})
        for (int64_t batch : {1, 16})
          for (int64_t splits : {0, 1}) {
            if (splits == 1 && ctx > 32768) continue;  // one block per (row, head chunk) walks it all
            double bytes = 0;
            const double t = bench(batch, ctx, 1, dt, splits, &bytes, Kernel::Cores);
            const double u = bench(batch, ctx, 1, dt, splits, &bytes, Kernel::DecodeTensorCores);
            char direct[48] = "- | -";
            if (dt == KvDType::FP8_E4M3) {
              const double w = bench(batch, ctx, 1, dt, splits, &bytes, Kernel::DecodeFp8Direct);
              std::snprintf(direct, sizeof direct, "%.1f | %.1f%%", w * 1e6, 100.0 * bytes / w / 1e9 / copy);
            }
            std::printf("| %s | %lld | %lld | %s | %.1f | %.1f | %.0f | %.1f%% | %.1f | %.0f | %.1f%% | %s |\n",
                        dt == KvDType::BF16 ? "bf16" : "fp8", static_cast<long long>(ctx),
                        static_cast<long long>(batch), splits == 1 ? "1" : "auto", bytes / 1e6, t * 1e6,
                        bytes / t / 1e9, 100.0 * bytes / t / 1e9 / copy, u * 1e6, bytes / u / 1e9,
                        100.0 * bytes / u / 1e9 / copy, direct);
            std::fflush(stdout);
          }
  }
  if (decode_only) return 0;
  std::printf("\nprefill chunk of one sequence: rows new rows ending at the context\n\n");
  std::printf("| kv | context | rows | CUDA cores us | TFLOP/s | tensor cores us | TFLOP/s | speed-up |\n"
              "|---|---|---|---|---|---|---|---|\n");
  for (KvDType dt : {KvDType::BF16, KvDType::FP8_E4M3})
    for (int64_t ctx : {2048, 8192, 32768})
      for (int64_t rows : {int64_t{512}, int64_t{2048}}) {
        if (rows > ctx) continue;
        double bytes = 0;
        const double a = tensor_only ? 0.0 : bench(1, ctx, rows, dt, 0, &bytes, Kernel::Cores);
        const double b = bench(1, ctx, rows, dt, 0, &bytes, Kernel::Runs);
        const double attended = static_cast<double>(rows) * static_cast<double>(ctx - rows) +
                                static_cast<double>(rows) * static_cast<double>(rows + 1) / 2;
        const double flop = 4.0 * kQHeads * kDim * attended;
        // The CUDA-core columns and the speed-up ("-" with --tensor-only).
        char cores[48] = "- | -", speedup[16] = "-";
        if (!tensor_only) {
          std::snprintf(cores, sizeof cores, "%.1f | %.1f", a * 1e6, flop / a / 1e12);
          std::snprintf(speedup, sizeof speedup, "%.2fx", a / b);
        }
        std::printf("| %s | %lld | %lld | %s | %.1f | %.1f | %s |\n", dt == KvDType::BF16 ? "bf16" : "fp8",
                    static_cast<long long>(ctx), static_cast<long long>(rows), cores, b * 1e6, flop / b / 1e12, speedup);
      }
  return 0;
}
