#include "model/parallel/parallel_config.h"

#include <algorithm>

#include "util/error.h"

namespace nemotron::model {
namespace {

std::string tp_flag(int t) { return "--tensor-parallel-size " + std::to_string(t); }

void check_split(const Config& c, const char* key, int64_t n, int t) {
  if (n % t != 0)
    throw Error(c.path + ": " + key + " (" + std::to_string(n) + ") is not divisible by " + tp_flag(t) +
                " (heads are split evenly over the tensor-parallel ranks)");
}

bool has_kind(const Config& c, LayerKind k) {
  return std::count(c.layers.begin(), c.layers.end(), k) + std::count(c.mtp_layers.begin(), c.mtp_layers.end(), k) > 0;
}

}  // namespace

std::string ParallelConfig::describe() const {
  std::string s = "TP " + std::to_string(tensor_parallel) + " x EP " + std::to_string(expert_parallel) + " (" +
                  std::to_string(world()) + (world() == 1 ? " rank)" : " ranks)");
  if (multi_node())
    s += " over " + std::to_string(nnodes) + " nodes (this is node " + std::to_string(node_rank) + ")";
  return s;
}

RankLayout rank_layout(const ParallelConfig& p, int rank) {
  const int t = p.tensor_parallel, e = p.expert_parallel;
  if (t < 1) throw Error(tp_flag(t) + ": must be at least 1");
  if (e < 1) throw Error("--expert-parallel-size " + std::to_string(e) + ": must be at least 1");
  if (std::max(t, e) % std::min(t, e) != 0)
    throw Error(tp_flag(t) + " and --expert-parallel-size " + std::to_string(e) +
                ": the smaller must divide the larger (experts are split over the tensor-parallel ranks)");
  RankLayout L;
  L.world = p.world();
  if (rank < 0 || rank >= L.world) throw Error("rank " + std::to_string(rank) + " outside the world of " +
                                               std::to_string(L.world));
  L.rank = rank;
  L.tp_size = t;
  L.tp_rank = rank % t;
  L.replicas = L.world / t;
  L.replica = rank / t;
  L.ep_size = e;
  L.moe_tp_size = L.world / e;
  L.ep_rank = rank / L.moe_tp_size;
  L.moe_tp_rank = rank % L.moe_tp_size;
  return L;
}

void validate_parallel(const Config& c, const ParallelConfig& p) {
  rank_layout(p, 0);  // the sizes themselves
  const int t = p.tensor_parallel;
  if (t == 1) return;
  if (has_kind(c, LayerKind::Attention)) {
    check_split(c, "num_attention_heads", c.num_attention_heads, t);
    const int64_t kv = c.num_key_value_heads;
    // KV heads split when they divide over the ranks; replicated when the ranks divide over
    // them (each rank's query heads then share one KV head); anything else mixes groups.
    if (kv % t != 0 && t % kv != 0)
      throw Error(c.path + ": num_key_value_heads (" + std::to_string(kv) + ") and " + tp_flag(t) +
                  ": the KV heads must divide evenly over the ranks, or the ranks over the KV heads");
  }
  if (has_kind(c, LayerKind::Mamba)) {
    check_split(c, "mamba_num_heads", c.mamba_num_heads, t);
    const int64_t g = c.n_groups;
    // B/C groups split when they divide over the ranks; when the ranks divide over them, each
    // rank's heads lie in one group (its B/C replicated, its norm group shared by t/g ranks).
    if (g % t != 0 && t % g != 0)
      throw Error(c.path + ": n_groups (" + std::to_string(g) + ") and " + tp_flag(t) +
                  ": the Mamba B/C groups must divide evenly over the ranks, or the ranks over the groups");
  }
}

void require_parallel_supported(const std::string& device, const ParallelConfig& p, const std::string& what) {
  if (p.nnodes < 1) throw Error("--nnodes " + std::to_string(p.nnodes) + ": must be at least 1");
  if (p.node_rank < 0 || p.node_rank >= p.nnodes)
    throw Error("--node-rank " + std::to_string(p.node_rank) + ": must be in [0, --nnodes " + std::to_string(p.nnodes) +
                ")");
  if (p.multi_node()) {
    if (!what.empty()) throw Error(what + " with --nnodes " + std::to_string(p.nnodes) + ": runs on one node only");
    if (p.master_port < 1 || p.master_port > 65535)
      throw Error("--master-port " + std::to_string(p.master_port) + ": must be in [1, 65535]");
    if (p.master_addr.empty()) throw Error("--master-addr: empty");
    if (p.world() % p.nnodes != 0)
      throw Error("--nnodes " + std::to_string(p.nnodes) + " with " + p.describe() +
                  ": every node holds the same number of ranks (the world must be a multiple of --nnodes)");
    if (device == "cpu" && p.world() != p.nnodes)
      throw Error("--nnodes " + std::to_string(p.nnodes) + " with " + p.describe() +
                  ": on the CPU backend each node holds one rank (give --tensor-parallel-size or "
                  "--expert-parallel-size equal to --nnodes)");
  }
  if (device == "cuda" && p.sharded() && !what.empty())
    throw Error(what + " with " + tp_flag(p.tensor_parallel) + " --expert-parallel-size " +
                std::to_string(p.expert_parallel) +
                ": not yet supported on the cuda backend (the sharded GPU forward runs in score, generate, serve, run and "
                "bench --speculative-tokens)");
}

Range split_range(int64_t n, int parts, int part, int64_t align) {
  const int64_t units = (n + align - 1) / align;
  Range r;
  r.begin = std::min(n, units * part / parts * align);
  r.end = std::min(n, units * (part + 1) / parts * align);
  return r;
}

}  // namespace nemotron::model
