#pragma once
// `nemotron bench --speculative-tokens K,...`: what speculative decoding with the MTP head buys
// through the engine (the serving path: drafting, the verify step, roll-back, the MTP head's
// feeding), on either device. For each K (0 = plain decoding, the baseline) and each batch
// size B: B requests of the same length submitted at once, greedy, no EOS; decode tok/s from
// each request's first to last token, tokens per verify step, and the speed-up over K = 0 at
// the same B. With --spec-accept the number of drafts a verify keeps is drawn at the given
// rates (EngineOptions::spec_accept_rates) instead of compared with the target: the cost of a
// real acceptance on a checkpoint with random weights (`nemotron synth`), whose drafts the
// target would never accept.
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/state_round.h"
#include "model/checkpoint/weights.h"
#include "model/parallel/parallel_config.h"
#include "util/json.h"

namespace nemotron::cli {

struct SpecBenchOptions {
  std::string device;                 // resolved ("cpu" or "cuda")
  std::vector<int64_t> Ks;            // drafts per verify; 0 = speculation off
  std::vector<int64_t> batches;       // concurrent requests
  std::vector<double> accept_rates;   // empty: the target's own acceptance
  bool auto_mode = true;              // also K > 0 with the engine's measured on/off rule
  int64_t prompt_tokens = 128;        // per request (synthetic ids; a chat prompt with a tokenizer)
  int64_t new_tokens = 128;           // generated per request
  model::ParallelConfig parallel;     // --tensor-parallel-size / --expert-parallel-size (CPU only)
  kernels::SsmStateFormat ssm_state;  // --mamba-ssm-cache-dtype / --mamba-ssm-rounding
  bool profile = false;               // --profile (CUDA): per-op time per generated token of each run
};

// Deterministic pseudo-text ids (no tokenizer needed), avoiding the reserved ids below 1000.
std::vector<int32_t> synthetic_ids(int64_t n, int64_t vocab, uint32_t seed);

// The demo model's per-position acceptance (conditional: draft k kept given drafts < k were)
// measured with `generate --speculative-tokens 1..3` (bench/RESULTS.md): 0.91, 0.77, 0.74.
std::vector<double> demo_accept_rates();

// "0.9,0.8" -> rates; "demo" -> demo_accept_rates(); "real" or "" -> none (the target decides).
std::vector<double> parse_accept_rates(const std::string& text);

// Runs the benchmark, prints a table and returns its JSON (settings and one row per run).
Json run_speculation_bench(const model::Model& m, const SpecBenchOptions& o);

}  // namespace nemotron::cli
