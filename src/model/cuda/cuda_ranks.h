#pragma once
// A sharded model on CUDA ranks (tensor / expert parallel; docs/parallel.md): one CudaModel per
// rank over its RankShard (model/parallel/shard.h), rank r on device devices[r] and on its own
// thread (RankThreads: rank 0 on the caller's), with NCCL communicators (distinct devices), or
// every rank on ONE device with the same-device group (tests on a single GPU; eager steps).
//
// Every Backend call runs on every rank at once (their collectives meet), each rank with its
// device current; results are rank 0's. The logits are all-gathered before sampling, so every
// rank draws the same tokens (the same seeds, the same kernels) and the ranks' slots, positions,
// penalty and speculation state stay in step. A snapshot is every rank's snapshot: its bytes
// are the ranks' exports one after another, each behind its length. Over several nodes it
// holds the node's ranks only (CudaNodeRanks): "every rank" above means the node's.
#include <memory>
#include <vector>

#include "model/backend.h"
#include "model/cuda/cuda_model.h"
#include "model/parallel/parallel_config.h"

namespace nemotron::model {

// Several nodes (model/nodes): the NCCL unique ids of a run -- the world's, then each TP
// group's -- which node 0 makes (cuda_node_ids) and sends to every node, and the node's first
// rank. A CudaRanks given them holds the node's ranks [first, first + devices.size()) only and
// joins the other nodes' ranks through NCCL.
struct CudaNodeRanks {
  int first = 0;
  std::vector<uint8_t> world_id;             // ncclUniqueId bytes
  std::vector<std::vector<uint8_t>> tp_ids;  // one per TP group; none when TP = world
};
CudaNodeRanks cuda_node_ids(const ParallelConfig& p);  // fresh ids (first = 0); an Error without NCCL
bool cuda_nccl_available();  // this build has the CUDA backend and NCCL

class CudaRanks final : public Backend {
 public:
  // devices: one per rank (world = max(TP, EP) of them), all distinct or all the same. With
  // `node`: one per rank of this node (distinct), the ranks from node->first on.
  CudaRanks(const Model& m, const ParallelConfig& p, const CudaModelOptions& o, const std::vector<int>& devices,
            const CudaNodeRanks* node = nullptr);
  ~CudaRanks() override;

  int ranks() const;
  CudaModel& rank(int r);

  const Model& model() const override { return model_; }
  const char* device() const override { return "cuda"; }
  int slots() const override;
  int acquire_slot() override;
  void release_slot(int slot) override;
  int64_t position(int slot) const override;
  void begin_step(const std::vector<StepChunk>& chunks) override;
  std::vector<StepOutput> finish_step() override;
  std::vector<float> last_hidden() const override;
  bool can_roll_back() const override;
  KeepLimits keep_limits() const override;
  void roll_back(int slot, int64_t pos) override;
  void mtp_roll_back(int slot, int64_t pos) override;
  bool can_snapshot() const override;
  // W x the largest rank's bytes, and W x the smallest rank's pool: any set of snapshots within
  // the capacity fits every rank's pool.
  int64_t snapshot_bytes(int64_t pos) const override;
  int64_t snapshot_capacity() const override;
  void save_snapshot(int slot, uint64_t id) override;
  void load_snapshot(uint64_t id, int slot) override;
  void drop_snapshot(uint64_t id) override;
  std::vector<uint8_t> export_snapshot(uint64_t id) const override;
  void import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) override;
  void observe_prompt(int slot, const int32_t* ids, int64_t n) override;
  std::vector<float> mtp_forward(int slot, const int32_t* next_ids, const float* hidden, int64_t T,
                                 bool all_logits) override;
  int64_t mtp_position(int slot) const override;
  std::vector<std::vector<int32_t>> mtp_draft(const std::vector<DraftInput>& inputs, int K) override;
  void mtp_feed(const std::vector<DraftInput>& inputs) override;
  void record_routing(bool on) override;
  std::vector<std::vector<int32_t>> routing() const override;

 private:
  struct State;
  const Model& model_;
  std::unique_ptr<State> s_;
};

struct RankShard;
// Rank r's model for a CudaModel: the shard's config and weights over m's checkpoint, the MTP
// head's eh_proj whole (CudaModel's head step reads [H, 2H]). `shard` must outlive it.
// counting: the shard came from shard_model(..., count_only = true), whose copied slices have
// no data: they get a stand-in pointer (never read) so that the counting walk of cuda_memory
// counts them; such a model is for the memory plan only.
Model cuda_rank_model(const Model& m, const RankShard& shard, bool counting = false);
// Rank r's CudaModelOptions: `base` with the shard's vocab ranges and TP rank, its expert range,
// and `device`.
CudaModelOptions cuda_rank_options(const Model& m, const RankShard& shard, const CudaModelOptions& base, int device);

// The devices of `world` ranks: GPUs 0..world-1 when the machine has that many; with
// same_device (tests: NEMOTRON_SAME_DEVICE_RANKS=1 in the environment also asks for it) every
// rank on GPU 0. Else an Error naming the sizes.
std::vector<int> cuda_rank_devices(int world, bool same_device);

}  // namespace nemotron::model
