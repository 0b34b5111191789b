#pragma once
// Communicator between threads of one process (the CPU backend's ranks). A group of `size`
// members shares one hub: each collective posts the members' buffer pointers, meets at a
// barrier, and reads the others' buffers directly (no copies into a mailbox).
//   all_reduce_sum: rank r sums elements [r*n/size, (r+1)*n/size) over ranks 0..size-1 in
//     order into a shared result, then every rank copies the whole result back (3 barriers);
//   all_gather: every rank copies every rank's block into its own output (2 barriers).
// abort() (a rank failed) makes every waiting and later collective throw until reset().
#include <cstdint>
#include <memory>
#include <vector>

#include "model/parallel/communicator.h"
#include "model/parallel/rank_barrier.h"

namespace nemotron::model {

class InProcessGroup {
 public:
  explicit InProcessGroup(int size);
  ~InProcessGroup();
  InProcessGroup(const InProcessGroup&) = delete;
  InProcessGroup& operator=(const InProcessGroup&) = delete;

  int size() const { return size_; }
  Communicator& member(int rank);  // the communicator rank `rank`'s thread uses

  void abort();  // wakes every waiting member with an Error; later collectives throw too
  void reset();  // after every member has left its collective: usable again

 private:
  friend class InProcessCommunicator;
  struct Post {
    const float* in = nullptr;
    float* out = nullptr;
    int64_t n = 0;
  };
  const int size_;
  std::vector<std::unique_ptr<Communicator>> members_;
  std::vector<Post> posts_;
  std::vector<float> result_;
  RankBarrier barrier_;
  bool mismatch_ = false;  // set by the last arrival of a collective's first meeting
};

}  // namespace nemotron::model
