#pragma once
// The CPU reference as ranks: one CpuModel over the whole model, or (tensor / expert
// parallel, model/parallel) one CpuModel per rank over its shard, each rank on its own
// thread with in-process communicators: the world group, and one TP group per replica of
// the dense part (the world itself when there is one replica). Over several nodes
// (model/nodes) a process holds one rank whose communicators reach the other processes.
#include <functional>
#include <memory>
#include <vector>

#include "model/cpu/cpu_forward.h"
#include "model/parallel/inproc_communicator.h"
#include "model/parallel/rank_threads.h"
#include "model/parallel/shard.h"

namespace nemotron::model {

class CpuRanks {
 public:
  // kv_fp8: every rank's CpuModel emulates the FP8 KV cache (CpuModel::set_kv_fp8); ssm: the
  // SSM state's storage format (CpuModel::set_ssm_state).
  CpuRanks(const Model& m, const ParallelConfig& p, bool kv_fp8 = false, const kernels::SsmStateFormat& ssm = {});
  // This process's one rank of a run over several nodes: rank `node.rank` of `p`'s world, its
  // collectives through node.world and node.tp (the world when null); operator[](0) is it.
  struct NodeRank {
    int rank = 0;
    Communicator* world = nullptr;
    Communicator* tp = nullptr;
  };
  CpuRanks(const Model& m, const ParallelConfig& p, const NodeRank& node, bool kv_fp8,
           const kernels::SsmStateFormat& ssm);
  int size() const { return static_cast<int>(models_.size()); }
  const CpuModel& operator[](int rank) const { return models_[static_cast<std::size_t>(rank)]; }
  const ParallelConfig& parallel() const { return parallel_; }

  // fn(rank) for every rank at once (rank 0 on this thread, which alone sees this thread's
  // LinearInputScope and RoutingHook `observe`; a RoutingHook `force` is given to every rank).
  // Every rank's forward must make the same collectives: run them all here, never one alone.
  void run(const std::function<void(int rank)>& fn);

 private:
  // Rank `rank`'s shard and CpuModel, its collectives through `world` and `tp` (null: the world).
  void add_rank(const Model& m, const ParallelConfig& p, int rank, Communicator& world, Communicator* tp, bool kv_fp8,
                const kernels::SsmStateFormat& ssm);
  ParallelConfig parallel_;
  std::vector<std::unique_ptr<RankShard>> shards_;
  std::unique_ptr<InProcessGroup> world_;
  std::vector<std::unique_ptr<InProcessGroup>> tp_groups_;
  std::vector<CpuModel> models_;
  std::unique_ptr<RankThreads> threads_;
};

}  // namespace nemotron::model
