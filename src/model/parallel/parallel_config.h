#pragma once
// Tensor and expert parallelism: the sizes (--tensor-parallel-size, --expert-parallel-size,
// vLLM's names), where each rank sits, and how a dimension is split over ranks.
//
// Ranks: world = max(TP, EP); the smaller size must divide the larger. Expert parallelism
// uses the tensor-parallel ranks (as vLLM's --enable-expert-parallel does): with EP <= TP the
// world is the TP group, the routed experts are split over EP groups of TP/EP ranks and each
// expert's intermediate dim over the TP/EP ranks of its group. With EP > TP (e.g. EP 4 alone)
// the dense part (attention, Mamba, MLP, embedding, lm_head) is replicated on EP/TP groups of
// TP ranks, each group computing the same rows. Rank r:
//   dense:   tp_rank = r % TP, replica = r / TP  (all-reduce over the TP group of its replica)
//   experts: ep_rank = r / (world / EP), moe_tp_rank = r % (world / EP)
//   MoE block output (routed + shared expert): all-reduce over the world.
#include <cstdint>
#include <string>

#include "model/checkpoint/config.h"

namespace nemotron::model {

struct ParallelConfig {
  int tensor_parallel = 1;  // --tensor-parallel-size
  int expert_parallel = 1;  // --expert-parallel-size
  // Several nodes (docs/parallel.md, model/nodes): one process per node, --nnodes of them,
  // node 0 (the leader) runs the command and forwards each model call to the others (followers),
  // which meet at --master-addr:--master-port. Node n holds ranks [n * world / nnodes, ...).
  int nnodes = 1;               // --nnodes
  int node_rank = 0;            // --node-rank
  std::string master_addr = "127.0.0.1";  // --master-addr
  int master_port = 29500;      // --master-port
  int world() const { return tensor_parallel > expert_parallel ? tensor_parallel : expert_parallel; }
  bool sharded() const { return world() > 1; }
  bool multi_node() const { return nnodes > 1; }
  bool follower() const { return nnodes > 1 && node_rank > 0; }
  int local_ranks() const { return world() / nnodes; }        // ranks on each node
  int first_local_rank() const { return node_rank * local_ranks(); }
  std::string describe() const;  // "TP 2 x EP 1 (2 ranks)" [+ " over 2 nodes (this is node 1)"]
};

struct RankLayout {
  int rank = 0, world = 1;
  int tp_rank = 0, tp_size = 1;          // dense layers: heads, channels, vocab split over tp_size
  int replica = 0, replicas = 1;         // world / tp_size copies of the dense part
  int ep_rank = 0, ep_size = 1;          // routed experts split over ep_size ranges
  int moe_tp_rank = 0, moe_tp_size = 1;  // an owned expert's intermediate dim split world/ep_size ways
};

// Throws Error when a size is < 1 or the smaller of TP and EP does not divide the larger.
RankLayout rank_layout(const ParallelConfig& p, int rank);

// The model's sizes against the parallel sizes: errors name the config key, the flag and
// both sizes (heads that do not divide, KV heads vs ranks, Mamba groups vs ranks).
void validate_parallel(const Config& c, const ParallelConfig& p);

// The cuda backend shards the forward (model/cuda/cuda_ranks.h: score, generate, serve, run,
// bench --speculative-tokens); `what` names a part that does not take a sharded config on
// "cuda" yet (bench's GPU sections) and throws "... not yet supported on the cuda backend" for
// one. Empty `what`: nothing is refused. Several nodes (--nnodes > 1): the node flags must be
// consistent (node rank inside [0, nnodes), world a multiple of nnodes; on the CPU one rank per
// node), and `what` empty (a part that names itself runs on one node only).
void require_parallel_supported(const std::string& device, const ParallelConfig& p, const std::string& what = "");

// Elements [begin, end) of part `part` of `n` split into `parts` contiguous ranges made of
// whole `align`-element units (the last unit may be partial when n % align != 0), as evenly
// as possible: part p gets units [U*p/parts, U*(p+1)/parts) of U = ceil(n / align). A part
// may be empty (more parts than units).
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Range split_range(int64_t n, int parts, int part, int64_t align = 1);

}  // namespace nemotron::model
