#include "model/parallel/socket_communicator.h"

#include <algorithm>
#include <set>
#include <string>

#include "util/error.h"

namespace nemotron::model {

SocketCommunicator::SocketCommunicator(const Mesh& mesh, std::vector<int> members)
    : mesh_(mesh), members_(std::move(members)) {
  const auto it = std::find(members_.begin(), members_.end(), mesh.rank);
  if (it == members_.end() || std::set<int>(members_.begin(), members_.end()).size() != members_.size())
    throw Error("socket communicator: the group must list distinct ranks, this one (" + std::to_string(mesh.rank) +
                ") among them");
  for (int q : members_)
    if (q < 0 || q >= mesh.world) throw Error("socket communicator: rank " + std::to_string(q) + " is not in the mesh");
  me_ = static_cast<int>(it - members_.begin());
}

void SocketCommunicator::send_floats(SocketLink& l, int64_t status, const float* p, int64_t n) {
  l.send(&status, 8);
  if (n > 0) l.send(p, static_cast<std::size_t>(n) * 4);
}

int64_t SocketCommunicator::recv_floats(SocketLink& l, std::vector<float>& out) {
  int64_t status = 0;
  l.recv(&status, 8);
  if (status < -1 || status > (int64_t{1} << 36)) throw Error("socket communicator: a bad message from " + l.peer());
  out.resize(static_cast<std::size_t>(std::max<int64_t>(status, 0)));
  if (status > 0) l.recv(out.data(), out.size() * 4);
  return status;
}

void SocketCommunicator::all_reduce_sum(float* data, int64_t n) {
  const int N = size();
  if (N == 1) return;
  std::vector<float> buf;
  if (me_ != 0) {
    SocketLink& root = mesh_.to(members_[0]);
    send_floats(root, n, data, n);
    if (recv_floats(root, buf) != n)
      throw Error("all_reduce_sum: the ranks of a group passed different sizes (rank " + std::to_string(me_) + " of " +
                  std::to_string(N) + ")");
    std::copy(buf.begin(), buf.end(), data);
    return;
  }
  // Root: the members' buffers in order, summed as they arrive (rank 0's first).
  std::vector<float> sum(data, data + n);
  bool mismatch = false;
  for (int i = 1; i < N; ++i) {
    const int64_t got = recv_floats(mesh_.to(members_[static_cast<std::size_t>(i)]), buf);
    if (got != n) mismatch = true;
    if (!mismatch)
      for (int64_t j = 0; j < n; ++j) sum[static_cast<std::size_t>(j)] += buf[static_cast<std::size_t>(j)];
  }
  for (int i = 1; i < N; ++i)
    send_floats(mesh_.to(members_[static_cast<std::size_t>(i)]), mismatch ? -1 : n, sum.data(), mismatch ? 0 : n);
  if (mismatch)
    throw Error("all_reduce_sum: the ranks of a group passed different sizes (rank 0 of " + std::to_string(N) + ")");
  std::copy(sum.begin(), sum.end(), data);
}

void SocketCommunicator::all_gather(const float* in, const std::vector<int64_t>& counts, float* out) {
  const int N = size();
  if (static_cast<int>(counts.size()) != N)
    throw Error("all_gather: " + std::to_string(counts.size()) + " counts for a group of " + std::to_string(N));
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  const int64_t mine = counts[static_cast<std::size_t>(me_)];
  if (N == 1) {
    std::copy(in, in + mine, out);
    return;
  }
  std::vector<float> buf;
  if (me_ != 0) {
    SocketLink& root = mesh_.to(members_[0]);
    send_floats(root, mine, in, mine);
    if (recv_floats(root, buf) != total)
      throw Error("all_gather: the ranks of a group passed different sizes (rank " + std::to_string(me_) + " of " +
                  std::to_string(N) + ")");
    std::copy(buf.begin(), buf.end(), out);
    return;
  }
  std::vector<float> all(in, in + mine);
  bool mismatch = false;
  for (int i = 1; i < N; ++i) {
    const int64_t got = recv_floats(mesh_.to(members_[static_cast<std::size_t>(i)]), buf);
    mismatch = mismatch || got != counts[static_cast<std::size_t>(i)];
    all.insert(all.end(), buf.begin(), buf.end());
  }
  for (int i = 1; i < N; ++i)
    send_floats(mesh_.to(members_[static_cast<std::size_t>(i)]), mismatch ? -1 : total, all.data(), mismatch ? 0 : total);
  if (mismatch)
    throw Error("all_gather: the ranks of a group passed different sizes (rank 0 of " + std::to_string(N) + ")");
  std::copy(all.begin(), all.end(), out);
}

void SocketCommunicator::barrier() { all_reduce_sum(nullptr, 0); }

}  // namespace nemotron::model
