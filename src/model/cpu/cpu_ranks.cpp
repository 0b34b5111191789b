#include "model/cpu/cpu_ranks.h"

#include "util/error.h"

namespace nemotron::model {

CpuRanks::CpuRanks(const Model& m, const ParallelConfig& p, bool kv_fp8, const kernels::SsmStateFormat& ssm)
    : parallel_(p) {
  if (!p.sharded()) {
    models_.emplace_back(m);
    models_.back().set_kv_fp8(kv_fp8);
    models_.back().set_ssm_state(ssm);
    return;
  }
  validate_parallel(m.config, p);
  const int W = p.world(), T = p.tensor_parallel;
  world_ = std::make_unique<InProcessGroup>(W);
  if (T < W)
    for (int g = 0; g < W / T; ++g) tp_groups_.push_back(std::make_unique<InProcessGroup>(T));
  models_.reserve(static_cast<std::size_t>(W));
  for (int r = 0; r < W; ++r)
    add_rank(m, p, r, world_->member(r), T < W ? &tp_groups_[static_cast<std::size_t>(r / T)]->member(r % T) : nullptr,
             kv_fp8, ssm);
  threads_ = std::make_unique<RankThreads>(W, [this] {
    world_->abort();
    for (auto& g : tp_groups_) g->abort();
  });
}

CpuRanks::CpuRanks(const Model& m, const ParallelConfig& p, const NodeRank& node, bool kv_fp8,
                   const kernels::SsmStateFormat& ssm)
    : parallel_(p) {
  validate_parallel(m.config, p);
  if (!node.world || node.world->size() != p.world() || node.world->rank() != node.rank)
    throw Error("CPU ranks: the world communicator does not hold rank " + std::to_string(node.rank) + " of " +
                std::to_string(p.world()));
  add_rank(m, p, node.rank, *node.world, node.tp, kv_fp8, ssm);
}

void CpuRanks::add_rank(const Model& m, const ParallelConfig& p, int rank, Communicator& world, Communicator* tp,
                        bool kv_fp8, const kernels::SsmStateFormat& ssm) {
  shards_.push_back(std::make_unique<RankShard>(shard_model(m, p, rank)));
  RankContext ctx;
  ctx.shard = shards_.back().get();
  ctx.world = &world;
  ctx.tp = tp ? tp : &world;
  models_.emplace_back(m, ctx);
  models_.back().set_kv_fp8(kv_fp8);
  models_.back().set_ssm_state(ssm);
}

void CpuRanks::run(const std::function<void(int)>& fn) {
  if (!threads_) {
    fn(0);
    return;
  }
  const RoutingHook* hook = current_routing_hook();
  RoutingHook force;
  if (hook) force.force = hook->force;
  try {
    threads_->run([&](int r) {
      if (r == 0 || !force.force) return fn(r);
      RoutingScope scope(force);
      fn(r);
    });
  } catch (...) {
    world_->reset();  // every rank has returned: the groups are usable again
    for (auto& g : tp_groups_) g->reset();
    throw;
  }
}

}  // namespace nemotron::model
