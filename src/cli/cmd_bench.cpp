// nemotron bench: decode and prefill speed of a model on the GPU, against the bytes the engine
// reads (model/accounting.h) and the copy bandwidth measured on the same device in the same
// run: single-stream decode at several context depths, prefill and time to first token, and
// (--batch) decode steps of B sequences at once. Every number also goes to --json FILE.
// A benchmark, never a test.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>

#include "cli/args.h"
#include "cli/bench_speculation.h"
#include "cli/command.h"
#include "model/step_bytes.h"
#include "kernels/device_info.h"
#include "model/accounting.h"
#include "model/cuda/cuda_model.h"
#include "model/ssm_state_flags.h"
#include "model/parallel/parallel_flags.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::cli {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kBatchProfileSteps = 4;  // --profile --batch: eager steps profiled at the largest B
constexpr int64_t kMixedSteps = 8;         // --mixed-prompt: steps timed per (B, P)
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// "0,4096,32768" -> values; "" or "none" -> no values (that section is skipped).
std::vector<int64_t> parse_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  if (text.empty() || text == "none") return out;
  for (int32_t v : parse_ids(text, what)) out.push_back(v);
  return out;
}

int64_t max_of(const std::vector<int64_t>& v) { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }

// --mixed-prompt items: "P" (one new sequence of P prompt rows) or "NxP" (N new sequences of P
// rows each, as a server's step that prefills several short prompts).
struct MixedPrompt {
  int64_t n = 1, p = 0;
  int64_t rows() const { return n * p; }
  std::string name() const { return n == 1 ? std::to_string(p) : std::to_string(n) + "x" + std::to_string(p); }
};
std::vector<MixedPrompt> parse_mixed(const std::string& text) {
  std::vector<MixedPrompt> out;
  if (text.empty() || text == "none") return out;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t end = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, end - at);
    const std::size_t x = item.find('x');
    MixedPrompt m;
    const auto num = [&](const std::string& v) {
      if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
        throw Error("--mixed-prompt: '" + item + "' is not P or NxP (positive integers)");
      return static_cast<int64_t>(std::stoll(v));
    };
    if (x == std::string::npos) {
      m.p = num(item);
    } else {
      m.n = num(item.substr(0, x));
      m.p = num(item.substr(x + 1));
    }
    if (m.n < 1 || m.p < 1) throw Error("--mixed-prompt: '" + item + "': N and P must be at least 1");
    out.push_back(m);
    at = end + 1;
  }
  return out;
}

int run_bench(int argc, char** argv) {
  CLI::App app{"Benchmark decode on the GPU: single-stream at several context depths, prefill and time to first "
               "token, and (--batch) decode steps of B sequences at once; reports achieved GB/s from the engine's "
               "bytes per token or step and % of the copy bandwidth measured in the same run."};
  std::string model_dir, depths_text = "0,4096,32768", prefill_text = "512,2048,8192", batch_text, mixed_text,
      json_out;
  int64_t decode_tokens = 64, chunk = 2048, batch_prompt = 128, batch_steps = 32, batch_warmup = 3;
  bool eager = true, profile = false, depth_walk = false;
  app.add_option("--model", model_dir, "Model directory")->required();
  app.add_option("--depths", depths_text, "Context depths for single-stream decode, comma-separated ('' = none)");
  app.add_flag("--depth-walk", depth_walk,
               "Decode every depth on one sequence: each depth is prefilled on top of the previous one and its "
               "decode steps (ascending depths; 128K,512K,1M then costs one 1M-token prefill), the prefill time of "
               "each stretch printed");
  app.add_option("--prefill", prefill_text, "Prompt lengths for prefill, comma-separated ('' = none)");
  app.add_option("--decode-tokens", decode_tokens, "Decode steps timed per depth")->check(CLI::PositiveNumber);
  app.add_option("--chunk", chunk, "Prefill chunk (rows per forward call)")->check(CLI::PositiveNumber);
  app.add_flag("--eager,!--no-eager", eager,
               "Also time decode without the CUDA graph (kernels launched one by one), after the graph rows");
  app.add_option("--batch", batch_text,
                 "Batch sizes B for batched decode, comma-separated (e.g. 1,2,4,8,16,32,64): B sequences, each "
                 "prefilled with its own --batch-prompt tokens, then timed greedy steps of one token each");
  app.add_option("--mixed-prompt", mixed_text,
                 "With --batch: prompt rows P, comma-separated, of a new sequence added to each of "
                 + std::to_string(kMixedSteps) + " more steps beside the B decode rows (as a server's steps that "
                 "prefill while others decode), or NxP: P rows of each of N new sequences (e.g. 4x128); prints the "
                 "mixed step's time next to the decode step's");
  app.add_option("--batch-prompt", batch_prompt, "Prompt tokens of each batched sequence")->check(CLI::PositiveNumber);
  app.add_option("--batch-steps", batch_steps, "Decode steps timed per batch size")->check(CLI::PositiveNumber);
  app.add_option("--batch-warmup", batch_warmup,
                 "Untimed decode steps per batch size before the timed ones (the first captures the graph)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--profile", profile,
               "Then time every op of a profiled prefill (the first --prefill length) and of eager decode "
               "steps at the first depth (and with --batch, of decode steps at the largest B), and print where "
               "the time goes; with --speculative-tokens, every run's ops per generated token (CUDA)");
  app.add_option("--json", json_out, "Also write every number (settings, device, each table) to this JSON file");
  std::string spec_text, spec_accept = "real", spec_batch_text = "1", device;
  int64_t spec_tokens = 128;
  bool spec_auto = true;
  app.add_option("--speculative-tokens", spec_text,
                 "Benchmark speculative decoding instead (through the engine, either device): drafts per verify, "
                 "comma-separated, 0 = off, the baseline (e.g. 0,1,2,3); the other sections are skipped");
  app.add_option("--spec-accept", spec_accept,
                 "With --speculative-tokens: acceptance per draft position, comma-separated conditional rates "
                 "(draft k kept with the k-th rate, the last repeating, given the ones before were kept), 'demo' "
                 "(the demo model's measured 0.91,0.77,0.74) or 'real' (the target decides; default). Forced rates "
                 "measure a real acceptance's cost on random-weight checkpoints");
  app.add_option("--spec-batch", spec_batch_text, "With --speculative-tokens: concurrent requests, comma-separated");
  app.add_option("--spec-tokens", spec_tokens, "With --speculative-tokens: tokens generated per request")
      ->check(CLI::PositiveNumber);
  app.add_flag("--spec-auto,!--no-spec-auto", spec_auto,
               "With --speculative-tokens: also run each K > 0 with the engine's measured on/off rule");
  app.add_option("--device", device, "With --speculative-tokens: cpu or cuda (default: cuda when present)");
  model::ParallelConfig parallel;
  model::add_parallel_flags(app, parallel);
  model::SsmStateFlags ssm_flags;
  model::add_ssm_state_flags(app, ssm_flags);
  std::string kv_dtype = "auto";
  app.add_option("--kv-cache-dtype", kv_dtype,
                 "KV cache on the GPU: auto (fp8 when the checkpoint's kv_cache_quant_algo is FP8, else bf16), bf16, "
                 "fp8")
      ->check(CLI::IsMember({"auto", "bf16", "fp8"}));
  CLI11_PARSE(app, argc, argv);
  model::require_parallel_supported(device, parallel);  // before "no CUDA device"
  if (!spec_text.empty()) {
    SpecBenchOptions so;
    so.device = model::resolve_device(device);
    so.parallel = parallel;
    so.Ks = parse_list(spec_text, "--speculative-tokens");
    so.batches = parse_list(spec_batch_text, "--spec-batch");
    so.accept_rates = parse_accept_rates(spec_accept);
    so.auto_mode = spec_auto;
    so.prompt_tokens = batch_prompt;
    so.new_tokens = spec_tokens;
    so.profile = profile;
    const model::Model m = model::Model::load(model_dir);
    so.ssm_state = model::resolve_ssm_state(ssm_flags, m.config);
    Json j;
    j["kind"] = "nemotron-bench-speculation";
    j["model"] = model_dir;
    j["speculation"] = run_speculation_bench(m, so);
    if (!json_out.empty()) {
      write_text_file(json_out, j.dump(2) + "\n");
      std::printf("\nwrote %s\n", json_out.c_str());
    }
    return 0;
  }
  if (!device.empty() && device != "cuda") throw Error("bench: --device is for --speculative-tokens; the rest runs on cuda");
  model::require_parallel_supported("cuda", parallel, "bench's GPU sections");  // they run on the GPU only
  // The flags are checked before the device, so that a bad one is named on any machine.
  const std::vector<int64_t> depths = parse_list(depths_text, "--depths");
  const std::vector<int64_t> prefills = parse_list(prefill_text, "--prefill");
  for (int64_t p : prefills)
    if (p < 1) throw Error("--prefill: prompt lengths must be at least 1");
  const std::vector<int64_t> batches = parse_list(batch_text, "--batch");
  for (int64_t b : batches)
    if (b < 1) throw Error("--batch: batch sizes must be at least 1");
  if (max_of(batches) > chunk)
    throw Error("--batch: batch size " + std::to_string(max_of(batches)) + " exceeds --chunk " + std::to_string(chunk) +
                " (the rows of one step)");
  const std::vector<MixedPrompt> mixed = parse_mixed(mixed_text);
  if (!mixed.empty() && batches.empty()) throw Error("--mixed-prompt needs --batch (the decode rows beside the prompt)");
  int64_t mixed_seqs = 0, mixed_rows_max = 0;
  for (const MixedPrompt& mp : mixed) {
    if (max_of(batches) + mp.rows() > chunk)
      throw Error("--mixed-prompt: " + mp.name() + " prompt rows beside " + std::to_string(max_of(batches)) +
                  " decode rows must fit --chunk " + std::to_string(chunk));
    mixed_seqs = std::max(mixed_seqs, mp.n);
    mixed_rows_max = std::max(mixed_rows_max, mp.rows() + 64 * mp.n);
  }
  if (!model::cuda_backend_available()) throw Error("bench: no CUDA device (or no CUDA backend in this build)");

  kernels::DeviceInfo dev;
  std::string err;
  if (!kernels::cuda_device_info(0, &dev, &err)) throw Error("bench: " + err);
  double copy_gbps = 0;
  if (!kernels::cuda_measure_copy_bandwidth(0, size_t{1} << 30, 20, &copy_gbps, &err)) throw Error("bench: " + err);

  auto t0 = Clock::now();
  const model::Model m = model::Model::load(model_dir);
  const double load_s = seconds_since(t0);
  const kernels::SsmStateFormat ssm = model::resolve_ssm_state(ssm_flags, m.config);
  const bool kv_fp8 = kv_dtype == "fp8" || (kv_dtype == "auto" && m.quant.kv_cache_quant_algo == "FP8");
  const auto acc = model::account(m, ssm.dtype, kv_fp8 ? 1 : 2);
  const model::StepBytes step_bytes(m, acc);
  const int64_t V = m.config.vocab_size;
  model::CudaModelOptions o;
  // One slot per batched sequence; KV for the deepest single stream or for every batched
  // sequence's prompt + warm-up + timed steps + the routing-count step (plus a page each).
  // --mixed-prompt: N more slots, N fresh sequences of P rows per mixed step, and the batched
  // sequences' mixed and profiled steps.
  o.max_seqs = static_cast<int>(std::max<int64_t>(1, max_of(batches)) + mixed_seqs);
  o.max_step_tokens = chunk;
  const int64_t extra_steps = 1 + kBatchProfileSteps + (kMixedSteps + 1) * static_cast<int64_t>(mixed.size());
  const int64_t batch_kv = max_of(batches) * (batch_prompt + batch_warmup + batch_steps + extra_steps + 16) +
                           mixed_rows_max + 64;
  o.kv_tokens = std::max({max_of(depths) + 2 * decode_tokens + 2, max_of(prefills), batch_kv}) + 64;
  o.ssm_state = ssm;
  o.kv_fp8 = kv_fp8;
  model::CudaModel gpu(m, o);

  const double bytes_depth0 = static_cast<double>(acc.weight_bytes_per_token + acc.state_bytes_per_token);
  std::printf("device      %s (sm_%d%d, %d SMs), copy bandwidth %.0f GB/s (read+write, measured now)\n",
              dev.name.c_str(), dev.sm_major, dev.sm_minor, dev.multiprocessors, copy_gbps);
  std::printf("model       %s (%s), %.3f GB read per token at depth 0 (SSM state %s, KV %s)\n", model_dir.c_str(),
              m.quant.quant_algo.empty() ? "BF16" : m.quant.quant_algo.c_str(), bytes_depth0 / 1e9,
              kernels::state_dtype_name(ssm.dtype), kv_fp8 ? "fp8" : "bf16");
  std::printf("load        mmap + validate %.2f s; upload %.2f GB in %.2f s (%.1f GB/s)\n\n", load_s,
              static_cast<double>(gpu.weight_bytes()) / 1e9, gpu.upload_seconds(),
              static_cast<double>(gpu.weight_bytes()) / 1e9 / std::max(gpu.upload_seconds(), 1e-9));

  Json j;
  j["kind"] = "nemotron-bench";
  j["settings"] = {{"model", model_dir},          {"depths", depths},
                   {"prefill", prefills},         {"decode_tokens", decode_tokens},
                   {"chunk", chunk},              {"eager", eager},
                   {"batch", batches},            {"batch_prompt", batch_prompt},
                   {"batch_steps", batch_steps},  {"batch_warmup", batch_warmup},
                   {"mixed_prompt", mixed_text},
                   {"max_seqs", o.max_seqs},      {"kv_tokens", o.kv_tokens},
                   {"mamba_ssm_cache_dtype", kernels::state_dtype_name(ssm.dtype)},
                   {"mamba_ssm_rounding", ssm.stochastic ? "stochastic" : "nearest"},
                   {"kv_cache_dtype", kv_fp8 ? "fp8" : "bf16"}};
  j["device"] = {{"name", dev.name},
                 {"sm", std::to_string(dev.sm_major) + std::to_string(dev.sm_minor)},
                 {"multiprocessors", dev.multiprocessors},
                 {"total_memory_bytes", dev.total_memory_bytes},
                 {"copy_gbps", copy_gbps}};
  j["model"] = {{"dir", model_dir},
                {"quant", m.quant.quant_algo.empty() ? "BF16" : m.quant.quant_algo},
                {"vocab_size", V},
                {"weight_bytes_per_token", acc.weight_bytes_per_token},
                {"state_bytes_per_token", acc.state_bytes_per_token},
                {"kv_bytes_per_token_per_position", acc.kv_bytes_per_token_per_position},
                {"embedding_row_bytes", step_bytes.embedding_row},
                {"moe_layers", step_bytes.moe.size()},
                {"n_routed_experts", m.config.n_routed_experts},
                {"experts_per_tok", m.config.num_experts_per_tok},
                {"device_bytes", gpu.device_bytes()}};
  j["load"] = {{"mmap_validate_s", load_s},
               {"upload_bytes", gpu.weight_bytes()},
               {"upload_s", gpu.upload_seconds()}};

  // Prefill `ids` in chunks on a fresh slot; returns seconds until the last logits are on the host.
  auto prefill = [&](int slot, const std::vector<int32_t>& ids) {
    const auto t = Clock::now();
    for (int64_t s = 0; s < static_cast<int64_t>(ids.size()); s += chunk)
      gpu.forward({{slot, ids.data() + s, std::min<int64_t>(chunk, static_cast<int64_t>(ids.size()) - s), false}});
    return seconds_since(t);
  };
  {
    const int warm = gpu.acquire_slot();  // warm-up: kernels loaded, allocator settled
    prefill(warm, synthetic_ids(std::min<int64_t>(chunk, 256), V, 7));
    gpu.release_slot(warm);
  }

  j["prefill"] = Json::array();
  if (!prefills.empty())
    std::printf("%-28s %10s %10s %10s %10s\n", "prefill (one sequence)", "tokens", "seconds", "tok/s", "TTFT ms");
  for (int64_t p : prefills) {
    const int slot = gpu.acquire_slot();
    const double s = prefill(slot, synthetic_ids(p, V, static_cast<uint32_t>(p)));
    std::printf("%-28s %10lld %10.3f %10.0f %10.1f\n", "", static_cast<long long>(p), s, static_cast<double>(p) / s,
                s * 1e3);
    j["prefill"].push_back({{"tokens", p}, {"seconds", s}, {"tok_s", static_cast<double>(p) / s}, {"ttft_ms", s * 1e3}});
    gpu.release_slot(slot);
  }

  j["decode"] = Json::array();
  if (!depths.empty())
    std::printf("\n%-12s %-6s %10s %12s %12s %10s %12s\n", "decode depth", "mode", "tok/s", "GB/token", "GB/s",
                "% of copy", "roofline t/s");
  int walk_slot = -1;  // --depth-walk: the one sequence
  j["walk_prefill"] = Json::array();
  for (int64_t d : depths) {
    if (depth_walk && walk_slot < 0) walk_slot = gpu.acquire_slot();
    const int slot = depth_walk ? walk_slot : gpu.acquire_slot();
    const int64_t at = depth_walk ? gpu.position(slot) : 0;
    if (d < at)
      throw Error("bench --depth-walk: depth " + std::to_string(d) + " is behind the sequence's " + std::to_string(at) +
                  " positions (depths ascending, each at least 2 x (--decode-tokens + 1) past the one before)");
    if (d > at) {
      const double ps = prefill(slot, synthetic_ids(d - at, V, static_cast<uint32_t>(d) + 1));
      if (depth_walk) {
        std::printf("%-12s prefill %lld -> %lld: %.3f s, %.0f tok/s\n", "", static_cast<long long>(at),
                    static_cast<long long>(d), ps, static_cast<double>(d - at) / ps);
        j["walk_prefill"].push_back({{"from", at}, {"to", d}, {"seconds", ps},
                                     {"tok_s", static_cast<double>(d - at) / ps}});
      }
    }
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
      const double bytes = bytes_depth0 + static_cast<double>(acc.kv_bytes_per_token_per_position) *
                                              static_cast<double>(d);  // BF16 or FP8 KV
      const double gbps = tps * bytes / 1e9;
      std::printf("%-12lld %-6s %10.1f %12.3f %12.0f %9.1f%% %12.0f\n", static_cast<long long>(d),
                  graph ? "graph" : "eager", tps, bytes / 1e9, gbps, 100.0 * gbps / copy_gbps, copy_gbps * 1e9 / bytes);
      j["decode"].push_back({{"depth", d},
                             {"mode", graph ? "graph" : "eager"},
                             {"tok_s", tps},
                             {"step_ms", 1e3 * s / static_cast<double>(decode_tokens)},
                             {"bytes_per_token", bytes},
                             {"gb_s", gbps},
                             {"pct_copy", 100.0 * gbps / copy_gbps},
                             {"roofline_tok_s", copy_gbps * 1e9 / bytes}});
    }
    gpu.set_cuda_graphs(true);
    if (!depth_walk) gpu.release_slot(slot);
  }
  if (walk_slot >= 0) gpu.release_slot(walk_slot);

  // Per-op tables (CudaModel::set_profiling): ms per forward call, share, calls per call and
  // the GB/s of the op's linear weights.
  auto print_profile = [&](const char* title, int64_t steps, const std::vector<model::CudaModel::OpTime>& ops) {
    double total = 0;
    for (const auto& op : ops) total += op.ms;
    const double per = static_cast<double>(steps);
    std::printf("\n%s: %.3f ms per call\n%-20s %10s %8s %8s %10s\n", title, total / per, "op", "ms/call", "share",
                "calls", "GB/s");
    Json table = {{"title", title}, {"ms_per_call", total / per}, {"ops", Json::array()}};
    for (const auto& op : ops) {
      const double gbps = op.weight_bytes > 0 ? op.weight_bytes / (op.ms * 1e6) : 0.0;
      std::printf("%-20s %10.4f %7.1f%% %8.1f %10.0f\n", op.op.c_str(), op.ms / per, 100.0 * op.ms / total,
                  static_cast<double>(op.calls) / per, gbps);
      table["ops"].push_back({{"op", op.op},
                              {"ms_per_call", op.ms / per},
                              {"share", op.ms / total},
                              {"calls_per_call", static_cast<double>(op.calls) / per},
                              {"gb_s", gbps}});
    }
    j["profile"].push_back(std::move(table));
  };
  j["profile"] = Json::array();
  std::vector<model::CudaModel::OpTime> batch_profile;  // --profile: eager steps at the largest B
  std::vector<model::CudaModel::OpTime> mixed_profile;  // --profile --mixed-prompt: at the largest B, first P
  struct MixedRow {
    int64_t B;
    MixedPrompt mp;
    double decode_ms, mixed_ms, mixed_max_ms;
  };
  std::vector<MixedRow> mixed_rows;

  // Batched decode: B sequences, each prefilled with its own prompt (distinct ids, so routing
  // differs), packed into steps of up to --chunk rows; then greedy steps of B single-token
  // chunks (the decode graph of batch size B; the warm-up steps capture it).
  j["batch"] = Json::array();
  if (!batches.empty())
    std::printf("\nbatched decode: B sequences of %lld-token prompts, greedy, CUDA graph, %lld steps timed\n"
                "%6s %11s %9s %10s %10s %17s %10s %9s %10s\n",
                static_cast<long long>(batch_prompt), static_cast<long long>(batch_steps), "B", "prefill ms",
                "step ms", "tok/s", "tok/s/seq", "experts est/meas", "GB/step", "GB/s", "% of copy");
  for (int64_t B : batches) {
    std::vector<int> slots;
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i = 0; i < B; ++i) {
      slots.push_back(gpu.acquire_slot());
      prompts.push_back(synthetic_ids(batch_prompt, V, static_cast<uint32_t>(7919 * (i + 1) + 31 * B)));
    }
    std::vector<int32_t> toks(static_cast<std::size_t>(B));
    const auto tp = Clock::now();
    {
      std::vector<int64_t> done(static_cast<std::size_t>(B), 0);  // prompt tokens fed per sequence
      for (int64_t first = 0; first < B;) {
        std::vector<model::CudaChunk> step;
        std::vector<int64_t> who;
        int64_t rows = 0;
        for (int64_t i = first; i < B && rows < chunk; ++i) {
          const int64_t n = std::min(batch_prompt - done[i], chunk - rows);
          step.push_back({slots[i], prompts[i].data() + done[i], n, false});
          who.push_back(i);
          rows += n;
        }
        const auto next = gpu.forward_greedy(step);
        for (std::size_t c = 0; c < step.size(); ++c) {
          const int64_t i = who[c];
          done[i] += step[c].T;
          if (done[i] == batch_prompt) toks[i] = next[c];
        }
        while (first < B && done[first] == batch_prompt) ++first;
      }
    }
    const double prefill_s = seconds_since(tp);
    std::vector<model::CudaChunk> step;
    for (int64_t i = 0; i < B; ++i) step.push_back({slots[i], &toks[i], 1, false});
    auto decode_step = [&] {
      const auto next = gpu.forward_greedy(step);  // reads toks before it returns
      std::copy(next.begin(), next.end(), toks.begin());
    };
    for (int64_t i = 0; i < batch_warmup; ++i) decode_step();
    const auto t = Clock::now();
    for (int64_t i = 0; i < batch_steps; ++i) decode_step();
    const double s = seconds_since(t);
    // One more step, eager, with the routing recorded: the distinct experts each MoE layer
    // really read (a sample of one step, next to the estimate).
    gpu.record_routing(true);
    decode_step();
    const auto routes = gpu.routing();
    gpu.record_routing(false);
    double measured = 0;
    int64_t moe_layers = 0;
    for (std::size_t b = 0; b < routes.size() && b < m.config.layers.size(); ++b) {
      if (m.config.layers[b] != model::LayerKind::MoE || routes[b].empty()) continue;
      measured += static_cast<double>(std::set<int32_t>(routes[b].begin(), routes[b].end()).size());
      ++moe_layers;
    }
    if (moe_layers > 0) measured /= static_cast<double>(moe_layers);
    if (profile && B == batches.back()) {
      gpu.set_profiling(true);
      for (int64_t i = 0; i < kBatchProfileSteps; ++i) decode_step();
      gpu.set_profiling(false);
      batch_profile = gpu.profile();
    }
    // Mixed steps: the B decode rows plus the first P rows of N new sequences (fresh slots
    // each step, so every step's prompt rows start at position 0), timed one by one.
    for (const MixedPrompt& mp : mixed) {
      std::vector<std::vector<int32_t>> ids;
      for (int64_t q = 0; q < mp.n; ++q)
        ids.push_back(synthetic_ids(mp.p, V, static_cast<uint32_t>(104729 + mp.p + 7919 * q)));
      auto mixed_step = [&] {
        std::vector<model::CudaChunk> ms = step;
        std::vector<int> extra;
        for (int64_t q = 0; q < mp.n; ++q) {
          extra.push_back(gpu.acquire_slot());
          ms.push_back({extra.back(), ids[static_cast<std::size_t>(q)].data(), mp.p, false});
        }
        const auto t1 = Clock::now();
        const auto next = gpu.forward_greedy(ms);
        const double dt = seconds_since(t1);
        std::copy(next.begin(), next.begin() + B, toks.begin());
        for (int slot : extra) gpu.release_slot(slot);
        return dt;
      };
      mixed_step();  // first use of this shape: kernels' first launches, workspaces
      double sum = 0, worst = 0;
      for (int64_t i = 0; i < kMixedSteps; ++i) {
        const double dt = mixed_step();
        sum += dt;
        worst = std::max(worst, dt);
      }
      mixed_rows.push_back({B, mp, 1e3 * s / static_cast<double>(batch_steps), 1e3 * sum / kMixedSteps, 1e3 * worst});
      if (profile && B == batches.back() && &mp == &mixed.front()) {
        gpu.set_profiling(true);
        mixed_step();
        gpu.set_profiling(false);
        mixed_profile = gpu.profile();
      }
    }
    for (int slot : slots) gpu.release_slot(slot);

    const double step_s = s / static_cast<double>(batch_steps);
    const double mean_ctx = static_cast<double>(batch_prompt + batch_warmup + 1) + static_cast<double>(batch_steps - 1) / 2;
    const double w_bytes = step_bytes.weights(B);
    const double state_bytes = static_cast<double>(B * step_bytes.state_per_row);
    const double kv_bytes = static_cast<double>(B * step_bytes.kv_per_position) * mean_ctx;
    const double bytes = w_bytes + state_bytes + kv_bytes;
    const double gbps = bytes / step_s / 1e9;
    const double est = step_bytes.mean_experts(B);
    char experts[32];
    std::snprintf(experts, sizeof experts, "%.1f/%.1f", est, measured);
    std::printf("%6lld %11.1f %9.3f %10.1f %10.1f %17s %10.3f %9.0f %9.1f%%\n", static_cast<long long>(B),
                prefill_s * 1e3, step_s * 1e3, static_cast<double>(B) / step_s, 1.0 / step_s, experts, bytes / 1e9,
                gbps, 100.0 * gbps / copy_gbps);
    j["batch"].push_back({{"batch", B},
                          {"prompt_tokens", batch_prompt},
                          {"prefill_s", prefill_s},
                          {"prefill_tok_s", static_cast<double>(B * batch_prompt) / prefill_s},
                          {"steps", batch_steps},
                          {"step_ms", step_s * 1e3},
                          {"tok_s", static_cast<double>(B) / step_s},
                          {"tok_s_per_seq", 1.0 / step_s},
                          {"experts_per_layer_estimate", est},
                          {"experts_per_layer_measured_one_step", measured},
                          {"mean_context", mean_ctx},
                          {"weight_bytes", w_bytes},
                          {"state_bytes", state_bytes},
                          {"kv_bytes", kv_bytes},
                          {"bytes_per_step", bytes},
                          {"gb_s", gbps},
                          {"pct_copy", 100.0 * gbps / copy_gbps}});
  }

  j["mixed"] = Json::array();
  if (!mixed_rows.empty())
    std::printf("\nmixed steps: B decode rows + P prompt rows of a new sequence (NxP: of N new sequences) (eager), "
                "%lld steps timed each\n%6s %8s %14s %13s %13s %12s %14s\n",
                static_cast<long long>(kMixedSteps), "B", "P", "decode step ms", "mixed ms", "mixed max ms",
                "vs decode", "prompt tok/s");
  for (const auto& r : mixed_rows) {
    // The prompt rows' cost: the mixed step's time beyond the decode step's.
    const double extra_ms = r.mixed_ms - r.decode_ms;
    std::printf("%6lld %8s %14.3f %13.3f %13.3f %11.2fx %14.0f\n", static_cast<long long>(r.B), r.mp.name().c_str(),
                r.decode_ms, r.mixed_ms, r.mixed_max_ms, r.mixed_ms / r.decode_ms,
                extra_ms > 0 ? static_cast<double>(r.mp.rows()) / (extra_ms * 1e-3) : 0.0);
    j["mixed"].push_back({{"batch", r.B},
                          {"prompt_rows", r.mp.rows()},
                          {"prompt_sequences", r.mp.n},
                          {"decode_step_ms", r.decode_ms},
                          {"mixed_step_ms", r.mixed_ms},
                          {"mixed_step_max_ms", r.mixed_max_ms}});
  }
  if (!batch_profile.empty())
    print_profile(("profile: eager decode step of " + std::to_string(batches.back()) + " rows").c_str(),
                  kBatchProfileSteps, batch_profile);
  if (!mixed_profile.empty())
    print_profile(("profile: mixed step of " + std::to_string(batches.back()) + " decode rows + " +
                   mixed.front().name() + " prompt rows").c_str(),
                  1, mixed_profile);
  if (profile) {
    if (!prefills.empty()) {
      const int slot = gpu.acquire_slot();
      const auto ids = synthetic_ids(prefills[0], V, 11);
      gpu.set_profiling(true);
      prefill(slot, ids);
      gpu.set_profiling(false);
      char title[96];
      std::snprintf(title, sizeof title, "profile: prefill of %lld tokens in chunks of %lld",
                    static_cast<long long>(prefills[0]), static_cast<long long>(chunk));
      print_profile(title, (prefills[0] + chunk - 1) / chunk, gpu.profile());
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
      print_profile(title, decode_tokens, gpu.profile());
      gpu.release_slot(slot);
    }
  }
  std::printf("\ndecode graphs (every batch size used): %lld nodes, %.1f MiB of device memory at instantiation\n",
              static_cast<long long>(gpu.graph_nodes()), static_cast<double>(gpu.graph_device_bytes()) / 1048576.0);
  j["graphs"] = {{"nodes", gpu.graph_nodes()}, {"device_bytes", gpu.graph_device_bytes()}};
  if (!depths.empty())
    std::printf("\nGB/token = weights + SSM/conv state read+write + KV read at that depth (engine accounting);\n"
                "roofline t/s = copy bandwidth / GB per token. Decode steps are greedy with the argmax on the\n"
                "device; graph = the step replayed as one CUDA graph, eager = its kernels launched one by one.\n");
  if (!batches.empty())
    std::printf("\nBatched: prefill ms = all B prompts, packed into steps of up to %lld rows; tok/s = B / step time.\n"
                "GB/step = every weight read once per step (the routed experts: the distinct ones selected) + B\n"
                "embedding rows + B x state read+write + B x BF16 KV at the rows' mean context. experts est = the\n"
                "expected distinct routed experts per MoE layer, E (1 - (1 - k/E)^B) for uniform independent\n"
                "routing: an ESTIMATE, used for GB/step; meas = the mean distinct experts per MoE layer counted in\n"
                "one recorded step after the timed ones.\n",
                static_cast<long long>(chunk));
  if (!json_out.empty()) {
    write_text_file(json_out, j.dump(2) + "\n");
    std::printf("\nwrote %s\n", json_out.c_str());
  }
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("bench", "GPU decode (single-stream and batched) / prefill / TTFT / load benchmark against the bandwidth roofline",
                 run_bench)
}  // namespace nemotron::cli
