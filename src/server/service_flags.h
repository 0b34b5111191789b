#pragma once
// The model/engine flags `serve` and `run` share (CLI11, header-only):
//   --model DIR --step-log FILE --max-num-seqs N --max-model-len N --max-step-tokens N --prefill-step-tokens N
//   --kv-cache-dtype auto|fp32|bf16|fp8 --memory GiB --device cpu|cuda
//   --mamba-ssm-cache-dtype auto|float32|bfloat16|float16 --mamba-ssm-rounding stochastic|nearest
//   --tensor-parallel-size N --expert-parallel-size N (model/parallel/parallel_flags.h)
#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "model/parallel/parallel_flags.h"
#include "model/ssm_state_flags.h"
#include "server/service.h"

namespace nemotron::server {

struct ServiceFlags {
  ServiceConfig config;
  double memory_gib = 0;  // 0 = not given
  bool no_prefix_cache = false;
  model::SsmStateFlags ssm;
};

inline void add_service_flags(CLI::App& app, ServiceFlags& f) {
  app.add_option("--model", f.config.model_dir, "Model directory (config.json, *.safetensors, tokenizer.json)")
      ->required();
  app.add_option("--max-num-seqs", f.config.plan.max_num_seqs, "Concurrent sequences (state slots)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-model-len", f.config.plan.max_model_len,
                 "Prompt + generated tokens per sequence (default: what fits in memory, at most 262144)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-step-tokens", f.config.plan.max_step_tokens, "Token budget of one engine step")
      ->check(CLI::PositiveNumber);
  app.add_option("--prefill-step-tokens", f.config.plan.prefill_step_tokens,
                 "Token budget of a step in which no sequence decodes (prompts only; 0 = --max-step-tokens; "
                 "default: 2048 on cuda, --max-step-tokens on cpu): larger prefills a long prompt or a burst of "
                 "prompts in fewer, faster steps; the step buffers are sized for it")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kv-cache-dtype", f.config.plan.kv_cache_dtype, "KV cache dtype: auto, fp32, bf16, fp8")
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "fp8"}));
  app.add_option("--memory", f.memory_gib, "Memory budget in GiB (default: available memory minus a margin)")
      ->check(CLI::PositiveNumber);
  app.add_option("--speculative-tokens", f.config.speculative_tokens,
                 "MTP drafts verified per decode step (0 = off; default 3 when the model has an MTP head and the "
                 "backend can roll back, else 0); verified only while measured faster")
      ->check(CLI::Range(0, 16));
  app.add_option("--prefix-cache-memory", f.config.plan.prefix_cache_gib,
                 "GiB for prefix-cache snapshots (default: a tenth of the memory left after weights, state and "
                 "activations)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-prefix-cache", f.no_prefix_cache, "Turn the prefix cache off");
  app.add_option("--prefix-cache-dir", f.config.prefix_cache_dir,
                 "Keep the cached prefixes in DIR across restarts (written when the server stops, read at start)");
  app.add_option("--step-log", f.config.step_log,
                 "Write one CSV line per engine step to FILE (times, rows, sequences; bench/step_log.py sums it)");
  f.config.plan.device = "";  // resolved at load: cuda when a CUDA device is present
  app.add_option("--device", f.config.plan.device, "Device: cpu or cuda (default: cuda when a CUDA device is present)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  model::add_ssm_state_flags(app, f.ssm);
  model::add_parallel_flags(app, f.config.plan.parallel);
  model::add_node_flags(app, f.config.plan.parallel);
}

// Call after parsing.
inline void finish_service_flags(ServiceFlags& f) {
  if (f.memory_gib > 0) f.config.plan.memory_gib = f.memory_gib;
  if (f.no_prefix_cache) f.config.plan.prefix_cache = false;
  f.config.plan.mamba_ssm_cache_dtype = f.ssm.dtype;
  f.config.plan.ssm_stochastic_rounding = f.ssm.rounding != "nearest";
}

}  // namespace nemotron::server
