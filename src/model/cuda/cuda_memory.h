#pragma once
// Device memory of a CudaModel, computed on the host (no device needed) from the model and
// the options: exactly what the constructor allocates — weights as uploaded (NVFP4 stays
// 4-bit; dense F16/F32 become BF16; padded expert and MLP widths; expert pointer tables),
// state slots, the paged KV cache, block tables, the step buffers and paged attention's
// split-K workspace — plus a bound on the decode CUDA graphs (one per batch size 1..max_seqs,
// captured lazily). The memory planner (runtime/memory_plan) plans with it; a GPU test checks
// it against what CudaModel allocates and the graphs against what their instantiation took.
#include <cstdint>

#include "model/cuda/cuda_model.h"
#include "model/checkpoint/weights.h"

namespace nemotron::model {

struct CudaMemory {
  int64_t weights = 0;      // uploaded weights, norms, Mamba constants, expert tables
  int64_t state = 0;        // conv windows + SSM states of every slot (trunk and MTP head)
  int64_t kv = 0;           // K and V pages of every attention block (trunk and MTP head)
  int64_t tables = 0;       // block tables (device)
  int64_t activations = 0;  // step buffers for max_step_tokens rows
  int64_t attention_workspace = 0;
  int64_t graphs = 0;       // bound on the decode graphs' instantiation memory
  int64_t pinned_host = 0;  // page-locked host buffers (system memory, not device memory)
  // What the constructor allocates on the device (CudaModel::device_bytes() right after it).
  int64_t allocated() const { return weights + state + kv + tables + activations + attention_workspace; }
  int64_t device_total() const { return allocated() + graphs; }
};

// Pages of kPage = 16 positions per attention block and stack: enough for kv_tokens positions
// plus one partly filled page per slot.
int64_t cuda_kv_pages(const CudaModelOptions& o);

// Kernel nodes of one decode graph are at most this many per block (+ embedding and head).
inline constexpr int64_t kGraphNodesPerBlock = 16;
// Device memory a graph's instantiation takes per kernel node, at most (measured on an H100:
// 398 nodes took 2 MiB), and per graph.
inline constexpr int64_t kGraphBytesPerNode = 8 * 1024;
inline constexpr int64_t kGraphBytesPerGraph = 2 * 1024 * 1024;

// `sms`: the device's multiprocessor count (sizes the attention workspace).
CudaMemory cuda_memory(const Model& m, const CudaModelOptions& o, int sms);

}  // namespace nemotron::model
