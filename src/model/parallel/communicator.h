#pragma once
// The collectives a sharded forward needs, between the `size()` ranks of one group.
//
// Every rank of the group calls the same collectives in the same order with the same sizes
// (a mismatch is an Error on every rank). Buffers are fp32 host memory here; an NCCL
// implementation (the CUDA backend, later) takes device pointers on the rank's stream:
//   all_reduce_sum -> ncclAllReduce(ncclFloat, ncclSum)
//   all_gather     -> ncclAllGather when every count is equal, else ncclBroadcast per rank
//                     inside ncclGroupStart/End (counts are known to every rank)
//   barrier        -> a one-element ncclAllReduce
// See docs/parallel.md.
#include <cstdint>
#include <vector>

namespace nemotron::model {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: data[i] = sum over ranks 0..size-1 of their data[i], added in rank order
  // (((d0 + d1) + d2) + ...), so every rank gets the same bits whatever the timing.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;

  // out = rank 0's `counts[0]` floats, then rank 1's, ... (every rank passes the same
  // counts; its own `in` holds counts[rank()] floats; out holds their sum).
  virtual void all_gather(const float* in, const std::vector<int64_t>& counts, float* out) = 0;

  virtual void barrier() = 0;
};

}  // namespace nemotron::model
