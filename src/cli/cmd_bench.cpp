// nemotron bench: single-stream decode and prefill speed of a model on the GPU, against the
// bytes the engine reads per token (model/accounting.h) and the copy bandwidth measured on
// the same device in the same run. A benchmark, never a test.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "kernels/device_info.h"
#include "model/accounting.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

namespace nemotron::cli {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Deterministic pseudo-text ids (no tokenizer needed), avoiding the reserved ids below 1000.
std::vector<int32_t> synthetic_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  uint32_t x = seed * 2654435761u + 12345u;
  const int64_t lo = std::min<int64_t>(1000, vocab / 2);
  for (auto& id : ids) {
    x = x * 1664525u + 1013904223u;
    id = static_cast<int32_t>(lo + (x >> 8) % static_cast<uint32_t>(vocab - lo));
  }
  return ids;
}

int run_bench(int argc, char** argv) {
  CLI::App app{"Benchmark single-stream decode (at several context depths), prefill and time to first token on "
               "the GPU; reports achieved GB/s from the engine's bytes per token and % of the copy bandwidth "
               "measured in the same run."};
  std::string model_dir, depths_text = "0,4096,32768", prefill_text = "512,2048,8192";
  int64_t decode_tokens = 64, chunk = 2048;
  bool eager = true, profile = false;
  app.add_option("--model", model_dir, "Model directory")->required();
  app.add_option("--depths", depths_text, "Context depths for decode, comma-separated");
  app.add_option("--prefill", prefill_text, "Prompt lengths for prefill, comma-separated");
  app.add_option("--decode-tokens", decode_tokens, "Decode steps timed per depth")->check(CLI::PositiveNumber);
  app.add_option("--chunk", chunk, "Prefill chunk (rows per forward call)")->check(CLI::PositiveNumber);
  app.add_flag("--eager,!--no-eager", eager,
               "Also time decode without the CUDA graph (kernels launched one by one), after the graph rows");
  app.add_flag("--profile", profile,
               "Then time every op of a profiled prefill (the first --prefill length) and of eager decode "
               "steps at the first depth, and print where the time goes");
  CLI11_PARSE(app, argc, argv);
  if (!model::cuda_backend_available()) throw Error("bench: no CUDA device (or no CUDA backend in this build)");
  std::vector<int64_t> depths, prefills;
  for (int32_t v : parse_ids(depths_text, "--depths")) depths.push_back(v);
  for (int32_t v : parse_ids(prefill_text, "--prefill")) prefills.push_back(v);

  kernels::DeviceInfo dev;
  std::string err;
  if (!kernels::cuda_device_info(0, &dev, &err)) throw Error("bench: " + err);
  double copy_gbps = 0;
  if (!kernels::cuda_measure_copy_bandwidth(0, size_t{1} << 30, 20, &copy_gbps, &err)) throw Error("bench: " + err);

  auto t0 = Clock::now();
  const model::Model m = model::Model::load(model_dir);
  const double load_s = seconds_since(t0);
  const auto acc = model::account(m);
  const int64_t V = m.config.vocab_size;
  model::CudaModelOptions o;
  o.max_seqs = 1;
  o.max_step_tokens = chunk;
  o.kv_tokens = std::max(*std::max_element(depths.begin(), depths.end()) + 2 * decode_tokens + 2,
                         *std::max_element(prefills.begin(), prefills.end())) + 64;
  model::CudaModel gpu(m, o);

  std::printf("device      %s (sm_%d%d, %d SMs), copy bandwidth %.0f GB/s (read+write, measured now)\n",
              dev.name.c_str(), dev.sm_major, dev.sm_minor, dev.multiprocessors, copy_gbps);
  std::printf("model       %s (%s), %.3f GB read per token at depth 0\n", model_dir.c_str(),
              m.quant.quant_algo.empty() ? "BF16" : m.quant.quant_algo.c_str(),
              static_cast<double>(acc.weight_bytes_per_token + acc.state_bytes_per_token) / 1e9);
  std::printf("load        mmap + validate %.2f s; upload %.2f GB in %.2f s (%.1f GB/s)\n\n", load_s,
              static_cast<double>(gpu.weight_bytes()) / 1e9, gpu.upload_seconds(),
              static_cast<double>(gpu.weight_bytes()) / 1e9 / std::max(gpu.upload_seconds(), 1e-9));

  // Prefill `ids` in chunks on a fresh slot; returns seconds until the last logits are on the host.
  auto prefill = [&](int slot, const std::vector<int32_t>& ids) {
    const auto t = Clock::now();
    for (int64_t s = 0; s < static_cast<int64_t>(ids.size()); s += chunk)
      gpu.forward({{slot, ids.data() + s, std::min<int64_t>(chunk, static_cast<int64_t>(ids.size()) - s), false}});
    return seconds_since(t);
  };

  std::printf("%-28s %10s %10s %10s %10s\n", "prefill (one sequence)", "tokens", "seconds", "tok/s", "TTFT ms");
  {
    const int warm = gpu.acquire_slot();  // warm-up: kernels loaded, allocator settled
    prefill(warm, synthetic_ids(std::min<int64_t>(chunk, 256), V, 7));
    gpu.release_slot(warm);
  }
  for (int64_t p : prefills) {
    const int slot = gpu.acquire_slot();
    const double s = prefill(slot, synthetic_ids(p, V, static_cast<uint32_t>(p)));
    std::printf("%-28s %10lld %10.3f %10.0f %10.1f\n", "", static_cast<long long>(p), s, static_cast<double>(p) / s,
                s * 1e3);
    gpu.release_slot(slot);
  }

  std::printf("\n%-12s %-6s %10s %12s %12s %10s %12s\n", "decode depth", "mode", "tok/s", "GB/token", "GB/s",
              "% of copy", "roofline t/s");
  for (int64_t d : depths) {
    const int slot = gpu.acquire_slot();
    if (d > 0) prefill(slot, synthetic_ids(d, V, static_cast<uint32_t>(d) + 1));
    int32_t tok = 1000;
    // Greedy steps: the argmax runs on the device, only the token id comes back. The graph
    // rows first (the warm-up step captures the graph), then the eager ones continue the
    // same sequence (decode_tokens + 1 positions deeper).
    for (const bool graph : {true, false}) {
      if (!graph && !eager) break;
      gpu.set_cuda_graphs(graph);
      tok = gpu.forward_greedy({{slot, &tok, 1, false}})[0];  // warm-up step
      const auto t = Clock::now();
      for (int64_t i = 0; i < decode_tokens; ++i) tok = gpu.forward_greedy({{slot, &tok, 1, false}})[0];
      const double s = seconds_since(t);
      const double tps = static_cast<double>(decode_tokens) / s;
      const double bytes = static_cast<double>(acc.weight_bytes_per_token + acc.state_bytes_per_token) +
                           static_cast<double>(acc.kv_bytes_per_token_per_position) * static_cast<double>(d);  // BF16 KV
      std::printf("%-12lld %-6s %10.1f %12.3f %12.0f %9.1f%% %12.0f\n", static_cast<long long>(d),
                  graph ? "graph" : "eager", tps, bytes / 1e9, tps * bytes / 1e9, 100.0 * tps * bytes / 1e9 / copy_gbps,
                  copy_gbps * 1e9 / bytes);
    }
    gpu.set_cuda_graphs(true);
    gpu.release_slot(slot);
  }
  if (profile) {
    // Per-op tables (CudaModel::set_profiling): ms per forward call, share, calls per call and
    // the GB/s of the op's linear weights.
    auto print_profile = [&](const char* title, int64_t steps) {
      const auto ops = gpu.profile();
      double total = 0;
      for (const auto& op : ops) total += op.ms;
      std::printf("\n%s: %.3f ms per call\n%-20s %10s %8s %8s %10s\n", title, total / static_cast<double>(steps),
                  "op", "ms/call", "share", "calls", "GB/s");
      for (const auto& op : ops)
        std::printf("%-20s %10.4f %7.1f%% %8.1f %10.0f\n", op.op.c_str(), op.ms / static_cast<double>(steps),
                    100.0 * op.ms / total, static_cast<double>(op.calls) / static_cast<double>(steps),
                    op.weight_bytes > 0 ? op.weight_bytes / (op.ms * 1e6) : 0.0);
    };
    if (!prefills.empty()) {
      const int slot = gpu.acquire_slot();
      const auto ids = synthetic_ids(prefills[0], V, 11);
      gpu.set_profiling(true);
      prefill(slot, ids);
      gpu.set_profiling(false);
      char title[96];
      std::snprintf(title, sizeof title, "profile: prefill of %lld tokens in chunks of %lld",
                    static_cast<long long>(prefills[0]), static_cast<long long>(chunk));
      print_profile(title, (prefills[0] + chunk - 1) / chunk);
      gpu.release_slot(slot);
    }
    {
      const int slot = gpu.acquire_slot();
      const int64_t d = depths.empty() ? 0 : depths[0];
      if (d > 0) prefill(slot, synthetic_ids(d, V, 13));
      int32_t tok = 1000;
      gpu.set_profiling(true);
      for (int64_t i = 0; i < decode_tokens; ++i) tok = gpu.forward_greedy({{slot, &tok, 1, false}})[0];
      gpu.set_profiling(false);
      char title[96];
      std::snprintf(title, sizeof title, "profile: eager decode step at depth %lld", static_cast<long long>(d));
      print_profile(title, decode_tokens);
      gpu.release_slot(slot);
    }
  }
  std::printf("\ndecode graph (B = 1): %lld nodes, %.1f MiB of device memory at instantiation\n",
              static_cast<long long>(gpu.graph_nodes()), static_cast<double>(gpu.graph_device_bytes()) / 1048576.0);
  std::printf("\nGB/token = weights + SSM/conv state read+write + BF16 KV read at that depth (engine accounting);\n"
              "roofline t/s = copy bandwidth / GB per token. Decode steps are greedy with the argmax on the\n"
              "device; graph = the step replayed as one CUDA graph, eager = its kernels launched one by one.\n");
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("bench", "GPU decode / prefill / TTFT / load benchmark against the bandwidth roofline", run_bench)
}  // namespace nemotron::cli
