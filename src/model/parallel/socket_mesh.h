#pragma once
// TCP links between the processes of a run over several nodes (docs/parallel.md, "Several
// nodes"): one link between every pair of ranks (a full mesh), set up through a rendezvous at
// the master's address, carrying length-framed messages. The socket communicator
// (socket_communicator.h) runs collectives over it; the same links will carry the leader's
// calls to the followers.
//
// Rendezvous (connect_mesh): rank 0 listens on master_addr:master_port; every other rank
// listens on a port of its own, connects to the master and sends (rank, world, its port); once
// all have come, the master sends each the table of (address as the master saw it, port) of
// every rank. Then rank r connects to every rank q with 0 < q < r and accepts one connection
// from every rank above it (each new link starts with the connecting rank's number). The
// master's rendezvous connections remain its links to the others. A rank missing at the
// deadline, a world size that differs, a rank number twice, or a closed connection is an Error
// naming the rank and the address.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nemotron::model {

// One connection; move-only; closes the socket when destroyed. send/recv throw Error on a
// closed or failed connection (naming `peer`, e.g. "rank 2 (10.0.0.3:45011)").
class SocketLink {
 public:
  SocketLink(int fd, std::string peer);
  ~SocketLink();
  SocketLink(const SocketLink&) = delete;
  SocketLink& operator=(const SocketLink&) = delete;

  void send(const void* data, std::size_t n);  // exactly n bytes
  void recv(void* data, std::size_t n);        // exactly n bytes
  // A message: an 8-byte length, then the bytes.
  void send_message(const std::vector<uint8_t>& bytes);
  std::vector<uint8_t> recv_message(std::size_t max_bytes = std::size_t{1} << 34);
  void close();  // later sends and receives throw; the peer's see the connection closed
  const std::string& peer() const { return peer_; }
  void set_peer(std::string peer) { peer_ = std::move(peer); }  // once it has said who it is
  bool failed() const { return failed_; }  // a send or receive met a closed or failed connection
  // Whether the peer has closed its end or the connection failed (poll, nothing read): a node
  // that stopped or died. False for a closed link of our own.
  bool peer_gone() const;

 private:
  [[noreturn]] void fail(const std::string& why);
  int fd_ = -1;
  bool failed_ = false;
  std::string peer_;
};

struct Mesh {
  int rank = 0, world = 1;
  std::vector<std::unique_ptr<SocketLink>> links;  // [world]; links[rank] is null
  SocketLink& to(int q) const;                     // Error for q == rank or out of range
  void close_all();                                // a failed rank: every peer sees it closed
  int failed_peer() const;                         // the first rank whose link failed, else -1
};

// Blocks until every rank has joined (or throws after timeout_s seconds).
Mesh connect_mesh(int rank, int world, const std::string& master_addr, int master_port, double timeout_s = 60);

}  // namespace nemotron::model
