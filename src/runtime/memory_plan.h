#pragma once
// The start-up memory plan: exact bytes for weights, recurrent-state slots, KV cache, step
// activations and (CUDA) the decode graphs, within a budget (--memory, or what the device has
// free minus a safety margin). A configuration that does not fit is refused with a message
// saying what does not fit and what would; nothing is ever over-committed (on a DGX Spark GPU
// memory is system memory, and over-commit freezes the machine). The CUDA plan is CudaModel's
// own allocation walk, counted (model/cuda/cuda_memory.h): what it accepts is exactly what the
// model allocates, in three allocations (weights, cache, step arenas), plus the graphs' bound.
// On unified memory (integrated GPU) the budget is the smaller of the GPU's free memory and
// MemAvailable (the same RAM), minus the system's margin.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/backend.h"
#include "model/checkpoint/weights.h"
#include "runtime/engine.h"

namespace nemotron::runtime {

// The CUDA default of MemoryPlanRequest::prefill_step_tokens. Measured through `serve` on an
// H100 (Nano NVFP4, twenty-first session): a lone 32,768-token prompt's TTFT 1.39 s against
// 2.15 s in 512-token steps; 64 concurrent 128-token prompts within one run's noise.
inline constexpr int64_t kCudaPrefillStepTokens = 2048;

struct MemoryPlanRequest {
  std::string device = "cpu";          // "cpu" or "cuda" (budget: the device's free memory); resolved by the caller
  int max_num_seqs = 8;                // concurrent sequences = state slots
  int64_t max_model_len = 0;           // prompt + generated tokens per sequence; 0 = derive
  int64_t max_step_tokens = 512;       // token budget of one engine step
  // Token budget of a step that decodes no sequence (prompts only; SchedulerLimits): -1 = by
  // device (CUDA: kCudaPrefillStepTokens or max_step_tokens, the larger; CPU: max_step_tokens),
  // 0 = the same as max_step_tokens, else at least it. The step buffers are sized for the larger.
  int64_t prefill_step_tokens = -1;
  // auto: CUDA fp8 when the checkpoint's kv_cache_quant_algo is FP8, else bf16; CPU fp32.
  // fp32 (CPU only), bf16 (CUDA only), fp8 (CUDA: E4M3 bytes; CPU: emulated, fp32 rows).
  std::string kv_cache_dtype = "auto";
  // The SSM state's storage type: auto (config.json's mamba_ssm_cache_dtype, float32 when
  // absent), float32, bfloat16, float16; the 16-bit types round stochastically unless
  // ssm_stochastic_rounding is false. CUDA stores 16-bit slots; the CPU emulates them in fp32.
  std::string mamba_ssm_cache_dtype = "auto";
  bool ssm_stochastic_rounding = true;
  std::optional<double> memory_gib;    // budget; default: available memory minus a margin
  // CUDA: the device's multiprocessor count (sizes paged attention's workspace); 0 = ask the
  // device, or assume kCudaSmsBound when there is none (planning only, with --memory).
  int cuda_sms = 0;
  // Prefix cache (snapshots of cached prefixes): its budget in GiB; default (unset) a tenth of
  // what the budget leaves after weights, state and activations (CUDA: and the speculation
  // buffers and graphs); 0 or prefix_cache false = off. On the GPU it is the snapshot pool of
  // the CUDA model (device memory, whole units of SnapshotLayout).
  std::optional<double> prefix_cache_gib;
  bool prefix_cache = true;
  // Speculative decoding (--speculative-tokens; -1: the default, 3 with an MTP head): the CUDA
  // plan keeps roll-back room for verifying sequences of K + 1 rows: all max_num_seqs when that
  // takes at most kCudaSpecShare of the memory left beside the rest of the plan, else as many
  // as fit there, at least min(kCudaSpecSeqs, max_num_seqs) (nothing without an MTP head or
  // with K = 0).
  int speculative_tokens = -1;
  // Tensor / expert parallelism (CPU backend: ranks are threads of this process; the plan
  // counts every rank's share, and describes the weights of each).
  model::ParallelConfig parallel;
};

// Sequences the CUDA plan lets verify drafts in one step (their roll-back room is planned):
// at least kCudaSpecSeqs (or max_num_seqs), more while the room takes at most kCudaSpecShare
// of the memory the budget leaves beside weights, state slots, activations and graphs (Nano:
// ~46 MiB per sequence; 64 sequences 2.9 GiB of ~52 GiB on an H100).
inline constexpr int kCudaSpecSeqs = 8;
inline constexpr double kCudaSpecShare = 0.125;

inline constexpr int kCudaSmsBound = 160;

struct MemoryPlan {
  std::string device;
  int64_t budget_bytes = 0;
  int64_t weight_bytes = 0;            // resident weights (checkpoint tensors)
  int64_t state_slot_bytes = 0;        // one sequence's SSM + conv state
  int64_t state_bytes = 0;             // all slots
  int64_t kv_bytes_per_token = 0;      // K + V of every attention layer (+ MTP head)
  int64_t kv_token_capacity = 0;       // KV positions planned
  int64_t kv_bytes = 0;
  int64_t activation_bytes = 0;        // one step's working buffers (CUDA: + attention workspace, block tables)
  int64_t graph_bytes = 0;             // CUDA: bound on the decode graphs (one per batch size)
  int64_t pinned_host_bytes = 0;       // CUDA: page-locked host buffers (system memory; counted in the total)
  int64_t arena_bytes[3] = {};         // CUDA: the weights, cache and step arenas (one cudaMalloc each)
  bool unified_memory = false;         // CUDA: an integrated GPU (device memory is system memory)
  int64_t prefix_cache_bytes = 0;     // snapshots of cached prefixes (0: off; CUDA: the snapshot pool)
  int64_t spec_bytes = 0;              // CUDA: speculative decoding's roll-back buffers and draft lm_head
  int64_t draft_head_bytes = 0;        // CUDA: of spec_bytes, the drafts' FP8 lm_head (model/cuda/cuda_buffers.h)
  int max_spec_seqs = 0;               // CUDA: verifying sequences per step they hold
  int64_t max_spec_rows = 0;           // CUDA: rows per verify (1 + drafts)
  int64_t total_bytes = 0;
  model::ParallelConfig parallel;
  std::vector<int64_t> rank_weight_bytes;  // sharded: each rank's weights (views and copies)
  int64_t copied_weight_bytes = 0;         // sharded: slices copied at load (beyond the mapped checkpoint)
  int max_num_seqs = 0;
  int64_t max_model_len = 0;
  int64_t max_step_tokens = 0;
  int64_t prefill_step_tokens = 0;     // resolved: >= max_step_tokens; the rows the step buffers hold
  std::string kv_cache_dtype;          // resolved: fp32, bf16 or fp8
  kernels::SsmStateFormat ssm_state;   // resolved

  std::string describe() const;        // the table printed at start-up
  EngineOptions engine_options() const;
  model::BackendOptions backend_options() const;  // the backend this plan sized
};

// Throws nemotron::Error when the model and one full-length sequence do not fit, when --memory
// exceeds what the device has free (CUDA, device present), or when a request field is invalid
// (names the flag).
MemoryPlan plan_memory(const model::Model& model, const MemoryPlanRequest& request);

// Bytes the OS can give this process without swapping (MemAvailable), or 0 if unknown.
int64_t available_system_memory();

}  // namespace nemotron::runtime
