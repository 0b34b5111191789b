#pragma once
// A Communicator (communicator.h) between processes, over the TCP links of a Mesh
// (socket_mesh.h): the ranks of a run over several nodes (docs/parallel.md), one rank per
// process. A group is a list of the mesh's ranks (the world, or a TP group); its first member
// is the root: every other member sends its buffer to the root, which adds them in the group's
// order (((d0 + d1) + d2) + ...) -- the same bits as the in-process group's sums -- or
// concatenates them, and sends the result back. Sizes travel with the data: a member that
// passed another size gets an Error, as every other member does. A closed link (a process that
// failed or stopped) is an Error naming the rank, on every member that talks to it.
#include <vector>

#include "model/parallel/communicator.h"
#include "model/parallel/socket_mesh.h"

namespace nemotron::model {

class SocketCommunicator final : public Communicator {
 public:
  // `members`: distinct mesh ranks in the group's order, including mesh.rank.
  SocketCommunicator(const Mesh& mesh, std::vector<int> members);
  int rank() const override { return me_; }
  int size() const override { return static_cast<int>(members_.size()); }
  void all_reduce_sum(float* data, int64_t n) override;
  void all_gather(const float* in, const std::vector<int64_t>& counts, float* out) override;
  void barrier() override;

 private:
  // Root: each other member's message, in order; others: the root's reply. A message is an
  // int64 status (the element count, or -1: the sizes differed) and the floats.
  void send_floats(SocketLink& l, int64_t status, const float* p, int64_t n);
  int64_t recv_floats(SocketLink& l, std::vector<float>& out);
  const Mesh& mesh_;
  std::vector<int> members_;
  int me_ = 0;  // index in members_
};

}  // namespace nemotron::model
