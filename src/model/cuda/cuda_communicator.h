#pragma once
// Collectives between the CUDA ranks of one process (one thread per rank, each with its own
// CudaModel and stream; docs/parallel.md). Device buffers, stream-ordered: a call enqueues the
// collective on the rank's stream after the work already there and returns; every rank of a
// group makes the same calls in the same order with the same sizes.
//
// Two implementations:
//   NCCL (make_nccl_groups; builds with NCCL only): one ncclComm_t per rank, ranks on distinct
//     devices; collectives may be captured into CUDA graphs (capturable() is true).
//   Same device (SameDeviceGroup): every rank on ONE device, for tests of the sharded forward on
//     a single GPU (NCCL refuses two ranks on one device). Host barriers order the ranks'
//     streams through events, so it runs eagerly only (capturable() is false: a rank model
//     then never captures graphs). all_reduce_sum adds the ranks' buffers in rank order
//     (((d0 + d1) + d2) + ...) in fp32, so every rank gets the same bits, like the CPU's
//     in-process group; NCCL's order is its own (ring / tree).
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/parallel/rank_barrier.h"

namespace nemotron::model {

enum class CommType { F32, BF16 };

class CudaCommunicator {
 public:
  virtual ~CudaCommunicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether the collectives may be enqueued while the stream is being captured into a graph.
  virtual bool capturable() const = 0;
  // In place: data[i] = the sum over the group's ranks of their data[i] (n elements of t).
  virtual void all_reduce_sum(void* data, int64_t n, CommType t, cudaStream_t stream) = 0;
  // out = rank 0's `count` elements, then rank 1's, ... (every rank passes the same count).
  virtual void all_gather(const void* in, int64_t count, CommType t, void* out, cudaStream_t stream) = 0;
  // Wakes ranks blocked in a collective with an Error (a rank failed); collectives throw
  // until reset() (the same-device group; NCCL: aborts the communicator for good).
  virtual void abort() = 0;
  virtual void reset() = 0;
};

// Ranks as threads on one device (see above). Scratch buffers are allocated on first use and
// grown as needed (cudaMalloc outside any memory plan: tests only).
class SameDeviceGroup {
 public:
  SameDeviceGroup(int size, int device);
  ~SameDeviceGroup();
  SameDeviceGroup(const SameDeviceGroup&) = delete;
  SameDeviceGroup& operator=(const SameDeviceGroup&) = delete;
  int size() const { return size_; }
  CudaCommunicator& member(int rank);

 private:
  friend class SameDeviceCommunicator;
  struct Post {
    const void* in = nullptr;
    int64_t n = 0;
    CommType t = CommType::F32;
  };
  const int size_, device_;
  std::vector<std::unique_ptr<CudaCommunicator>> members_;
  std::vector<Post> posts_;
  std::vector<cudaEvent_t> ready_, read_;  // per rank: its input is complete / it has read every input
  RankBarrier barrier_;
  bool mismatch_ = false;  // set by the last arrival of a collective's first meeting
};

// Whether this build has NCCL (NEMOTRON_HAVE_NCCL).
bool nccl_available();

// NCCL communicators for ranks 0..devices.size()-1 on those devices (fresh unique ids and
// ncclCommInitRank per rank in one group, as make_nccl_node_groups with first = 0): the
// world group, then (tp < world) one TP group per replica of `tp` consecutive ranks. Throws
// when this build has no NCCL or a device appears twice.
struct NcclGroups {
  std::vector<std::unique_ptr<CudaCommunicator>> world;  // [rank]
  std::vector<std::unique_ptr<CudaCommunicator>> tp;     // [rank]; empty when tp == world
};
NcclGroups make_nccl_groups(const std::vector<int>& devices, int tp);

// Several nodes (model/nodes): this process's ranks [first, first + devices.size()) of a world
// of `world` ranks spread over processes, on `devices`. Each communicator joins through the
// unique id node 0 made (nccl_unique_id) and sent to every node: `world_id` for the world,
// tp_ids[g] for TP group g (ranks [g * tp, (g + 1) * tp); empty when tp == world). Every rank
// of every node must call it (ncclCommInitRank blocks until they all have).
NcclGroups make_nccl_node_groups(const std::vector<int>& devices, int first, int world, int tp,
                                 const std::vector<uint8_t>& world_id, const std::vector<std::vector<uint8_t>>& tp_ids);
// A fresh ncclUniqueId as bytes (NCCL's bootstrap address on this host).
std::vector<uint8_t> nccl_unique_id();

}  // namespace nemotron::model
