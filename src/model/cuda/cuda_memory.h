#pragma once
// Device memory of a CudaModel, computed on the host (no device needed) from the model and
// the options by counting the constructor's own allocation walk (cuda_buffers.h): the same
// code that places every buffer, run without a device. Three arenas, one cudaMalloc each:
// weights (as uploaded: NVFP4 stays 4-bit; dense F16/F32 become BF16; padded expert and MLP
// widths; expert pointer tables), cache (state slots, the paged KV cache, block tables, the
// speculation and snapshot pools) and
// step (step buffers, paged attention's split-K workspace, the MoE workspace); plus a bound on
// the decode CUDA graphs (one per batch size 1..max_seqs, captured lazily) and the page-locked
// host buffers. The memory planner (runtime/memory_plan) plans with it; CudaModel's constructor
// allocates its arenas from the same table and checks that its placing walk consumed them
// exactly; a GPU test compares both with what the device reports.
#include <cstdint>

#include "model/checkpoint/weights.h"
#include "model/cuda/cuda_buffers.h"
#include "model/cuda/cuda_model.h"

namespace nemotron::model {

struct CudaMemory {
  cuda_detail::ArenaTable table;  // per use and per arena, as counted
  // The table's uses (each sub-allocation rounded up to 256 bytes):
  int64_t weights = 0;      // weights arena: uploaded weights, norms, Mamba constants, expert tables
  int64_t state = 0;        // cache arena: conv windows + SSM states of every slot (trunk and MTP head)
  int64_t kv = 0;           // cache arena: K and V pages of every attention block (trunk and MTP head)
  int64_t tables = 0;       // cache arena: block tables (device)
  int64_t activations = 0;  // step arena: step buffers for max_step_tokens rows, MoE workspace
  int64_t attention_workspace = 0;  // step arena
  int64_t speculation = 0;  // cache arena: keep_states chunks' saved states and rows (options.spec_seqs)
  int64_t snapshots = 0;    // cache arena: the prefix-cache snapshot pool (options.prefix_cache_bytes)
  int64_t graphs = 0;       // bound on the decode, MTP draft and verify graphs' instantiation memory
  int64_t pinned_host = 0;  // page-locked host buffers (system memory, not device memory)
  // What the constructor allocates on the device: the three arenas (CudaModel::device_bytes()).
  int64_t allocated() const {
    return weights + state + kv + tables + activations + attention_workspace + speculation + snapshots;
  }
  int64_t device_total() const { return allocated() + graphs; }
  int64_t arena(cuda_detail::ArenaKind k) const { return table.of(k); }
};

// Kernel nodes of one decode graph are at most this many per block (+ embedding and head).
inline constexpr int64_t kGraphNodesPerBlock = 16;
// Device memory a graph's instantiation takes per kernel node, at most (measured on an H100:
// 398 nodes took 2 MiB), and per graph.
inline constexpr int64_t kGraphBytesPerNode = 8 * 1024;
inline constexpr int64_t kGraphBytesPerGraph = 2 * 1024 * 1024;
// Speculation's steps of up to this many sequences replay graphs: MTP drafting steps (one per
// B) and verify steps (one per (B, T), T = 2..spec_rows).
inline constexpr int64_t kMaxSpecGraphSeqs = 8;

// `sms`: the device's multiprocessor count (sizes the attention workspace). One counting walk
// (a few microseconds per tensor, no per-tensor host work): the planner calls it many times.
// Throws nemotron::Error for weights the CUDA backend cannot take (naming the tensor).
CudaMemory cuda_memory(const Model& m, const CudaModelOptions& o, int sms);

}  // namespace nemotron::model
