#include "model/cuda/cuda_memory.h"

#include <algorithm>

namespace nemotron::model {

CudaMemory cuda_memory(const Model& m, const CudaModelOptions& o, int sms) {
  using cuda_detail::Use;
  cuda_detail::DeviceAllocator counter;  // the base allocator counts
  cuda_detail::DeviceBuffers unused;
  cuda_detail::walk_device_buffers(m, o, sms, counter, unused);
  CudaMemory mem;
  mem.table = counter.table();
  mem.weights = mem.table.use(Use::Weights);
  mem.state = mem.table.use(Use::State);
  mem.kv = mem.table.use(Use::Kv);
  mem.tables = mem.table.use(Use::Tables);
  mem.activations = mem.table.use(Use::Activations);
  mem.attention_workspace = mem.table.use(Use::AttentionWorkspace);
  mem.speculation = mem.table.use(Use::Speculation);
  mem.snapshots = mem.table.use(Use::Snapshots);
  mem.pinned_host = mem.table.pinned_host;
  const int64_t nodes = 8 + kGraphNodesPerBlock * static_cast<int64_t>(m.weights.blocks.size());
  mem.graphs = o.max_seqs * (kGraphBytesPerGraph + nodes * kGraphBytesPerNode);
  // Speculation's graphs (cuda_model_graph.cpp), as many as there may be: verify graphs for B =
  // 1..kMaxSpecGraphSeqs x T = 2..spec_rows when the model keeps states for roll-back (a part
  // shared by every verifying sequence: the planner adds sequences at a fixed cost each), and
  // the MTP head's draft graphs for B = 1..min(max_seqs, kMaxSpecGraphSeqs).
  if (cuda_detail::spec_entries(o) > 0 && o.spec_rows >= 2)
    mem.graphs += kMaxSpecGraphSeqs * (o.spec_rows - 1) * (kGraphBytesPerGraph + nodes * kGraphBytesPerNode);
  if (m.config.has_mtp()) {
    const int64_t draft_nodes = 8 + kGraphNodesPerBlock * static_cast<int64_t>(m.weights.mtp.blocks.size());
    mem.graphs +=
        std::min<int64_t>(o.max_seqs, kMaxSpecGraphSeqs) * (kGraphBytesPerGraph + draft_nodes * kGraphBytesPerNode);
  }
  return mem;
}

}  // namespace nemotron::model
