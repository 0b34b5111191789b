#include "model/parallel/socket_mesh.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "util/error.h"

namespace nemotron::model {

namespace {

using Clock = std::chrono::steady_clock;

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

// Every link: no Nagle delay (collectives send small messages and wait for the answer), and TCP
// keep-alive probes after 10 s of silence, 3 of them 5 s apart, so that a peer cut off by the
// network (no FIN, no RST) shows as a failed connection within about 25 s of idleness: the
// nodes' link watch (model/nodes) and any call then see it.
void tune_link(int fd) {
  const int one = 1, idle = 10, interval = 5, count = 3;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

// A listening IPv4 socket on `port` (0: any free one) of every interface; returns fd and port.
int listen_on(int port, int* bound_port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(sys_error("socket"));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 64) != 0) {
    const std::string e = sys_error("listening on port " + std::to_string(port));
    ::close(fd);
    throw Error(e);
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *bound_port = ntohs(a.sin_port);
  return fd;
}

// Accepts one connection before the deadline; `peer_ip` gets its IPv4 address.
int accept_before(int lfd, Clock::time_point deadline, const std::string& what, std::string* peer_ip) {
  for (;;) {
    const double left = seconds_left(deadline);
    if (left <= 0) throw Error("rendezvous: timed out waiting for " + what);
    pollfd p{lfd, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
    if (r < 0 && errno != EINTR) throw Error(sys_error("poll"));
    if (r <= 0) continue;
    sockaddr_in a{};
    socklen_t len = sizeof a;
    const int fd = accept4(lfd, reinterpret_cast<sockaddr*>(&a), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      throw Error(sys_error("accept"));
    }
    char ip[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    *peer_ip = ip;
    tune_link(fd);
    return fd;
  }
}

// Connects to host:port, retrying until the deadline (the other side may not listen yet).
int connect_before(const std::string& host, int port, Clock::time_point deadline, const std::string& what) {
  std::string last = "no attempt";
  for (;;) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int g = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (g != 0) {
      last = std::string("cannot resolve ") + host + ": " + gai_strerror(g);
    } else {
      const int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
      if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        freeaddrinfo(res);
        tune_link(fd);
        return fd;
      }
      last = sys_error("connect");
      if (fd >= 0) ::close(fd);
      freeaddrinfo(res);
    }
    if (seconds_left(deadline) <= 0)
      throw Error("rendezvous: could not reach " + what + " at " + host + ":" + std::to_string(port) + " (" + last +
                  ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

struct Hello {
  int32_t rank = 0, world = 0, port = 0;
};

}  // namespace

SocketLink::SocketLink(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}

SocketLink::~SocketLink() { close(); }

void SocketLink::close() {
  if (fd_ >= 0) {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
  }
  fd_ = -1;
}

bool SocketLink::peer_gone() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void SocketLink::fail(const std::string& why) {
  failed_ = true;
  throw Error(why);
}

void SocketLink::send(const void* data, std::size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    if (fd_ < 0) fail("connection to " + peer_ + " is closed");
    const ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) fail(sys_error("sending to " + peer_));
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void SocketLink::recv(void* data, std::size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    if (fd_ < 0) fail("connection to " + peer_ + " is closed");
    const ssize_t k = ::recv(fd_, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) fail("connection to " + peer_ + " closed (the process there stopped or failed)");
    if (k < 0) fail(sys_error("receiving from " + peer_));
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void SocketLink::send_message(const std::vector<uint8_t>& bytes) {
  const uint64_t n = bytes.size();
  send(&n, 8);
  send(bytes.data(), bytes.size());
}

std::vector<uint8_t> SocketLink::recv_message(std::size_t max_bytes) {
  uint64_t n = 0;
  recv(&n, 8);
  if (n > max_bytes)
    throw Error("a message of " + std::to_string(n) + " bytes from " + peer_ + " (at most " +
                std::to_string(max_bytes) + ")");
  std::vector<uint8_t> bytes(static_cast<std::size_t>(n));
  recv(bytes.data(), bytes.size());
  return bytes;
}

SocketLink& Mesh::to(int q) const {
  if (q < 0 || q >= world || q == rank || !links[static_cast<std::size_t>(q)])
    throw Error("mesh: no link from rank " + std::to_string(rank) + " to rank " + std::to_string(q));
  return *links[static_cast<std::size_t>(q)];
}

int Mesh::failed_peer() const {
  for (std::size_t q = 0; q < links.size(); ++q)
    if (links[q] && links[q]->failed()) return static_cast<int>(q);
  return -1;
}

void Mesh::close_all() {
  for (auto& l : links)
    if (l) l->close();
}

Mesh connect_mesh(int rank, int world, const std::string& master_addr, int master_port, double timeout_s) {
  if (world < 1 || rank < 0 || rank >= world)
    throw Error("rendezvous: rank " + std::to_string(rank) + " of " + std::to_string(world));
  if (master_port < 1 || master_port > 65535)
    throw Error("rendezvous: --master-port " + std::to_string(master_port) + " outside 1..65535");
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  Mesh m;
  m.rank = rank;
  m.world = world;
  m.links.resize(static_cast<std::size_t>(world));
  if (world == 1) return m;
  const std::string master = master_addr + ":" + std::to_string(master_port);
  std::vector<std::string> ip(static_cast<std::size_t>(world));
  std::vector<int32_t> port(static_cast<std::size_t>(world), 0);
  if (rank == 0) {
    int bound = 0;
    const int lfd = listen_on(master_port, &bound);
    try {
      for (int i = 1; i < world; ++i) {
        std::string peer_ip;
        const int fd = accept_before(lfd, deadline, std::to_string(world - i) + " more rank(s) at " + master, &peer_ip);
        auto link = std::make_unique<SocketLink>(fd, "a rank at " + peer_ip);
        Hello h;
        link->recv(&h, sizeof h);
        const bool known = h.rank > 0 && h.rank < world && m.links[static_cast<std::size_t>(h.rank)];
        if (h.world != world || h.rank <= 0 || h.rank >= world || known)
          throw Error("rendezvous: " + peer_ip + " says it is rank " + std::to_string(h.rank) + " of " +
                      std::to_string(h.world) + "; this run has " + std::to_string(world) + " ranks" +
                      (known ? " and that rank joined already" : ""));
        link->set_peer("rank " + std::to_string(h.rank) + " (" + peer_ip + ")");
        m.links[static_cast<std::size_t>(h.rank)] = std::move(link);
        ip[static_cast<std::size_t>(h.rank)] = peer_ip;
        port[static_cast<std::size_t>(h.rank)] = h.port;
      }
    } catch (...) {
      ::close(lfd);
      throw;
    }
    ::close(lfd);
    // The table: per rank, its port and its address as seen here.
    std::vector<uint8_t> table;
    for (int q = 0; q < world; ++q) {
      const std::string& s = ip[static_cast<std::size_t>(q)];
      const int32_t p = port[static_cast<std::size_t>(q)], len = static_cast<int32_t>(s.size());
      table.insert(table.end(), reinterpret_cast<const uint8_t*>(&p), reinterpret_cast<const uint8_t*>(&p) + 4);
      table.insert(table.end(), reinterpret_cast<const uint8_t*>(&len), reinterpret_cast<const uint8_t*>(&len) + 4);
      table.insert(table.end(), s.begin(), s.end());
    }
    for (int q = 1; q < world; ++q) m.to(q).send_message(table);
    return m;
  }
  int my_port = 0;
  const int lfd = listen_on(0, &my_port);
  try {
    const int fd0 = connect_before(master_addr, master_port, deadline, "the master (rank 0)");
    m.links[0] = std::make_unique<SocketLink>(fd0, "rank 0 (" + master + ")");
    const Hello h{rank, world, my_port};
    m.links[0]->send(&h, sizeof h);
    const std::vector<uint8_t> table = m.links[0]->recv_message(1 << 20);
    std::size_t at = 0;
    for (int q = 0; q < world; ++q) {
      int32_t p = 0, len = 0;
      if (table.size() < at + 8) throw Error("rendezvous: a short table from " + master);
      std::memcpy(&p, table.data() + at, 4);
      std::memcpy(&len, table.data() + at + 4, 4);
      at += 8;
      if (len < 0 || table.size() < at + static_cast<std::size_t>(len))
        throw Error("rendezvous: a short table from " + master);
      ip[static_cast<std::size_t>(q)].assign(reinterpret_cast<const char*>(table.data() + at), static_cast<std::size_t>(len));
      port[static_cast<std::size_t>(q)] = p;
      at += static_cast<std::size_t>(len);
    }
    for (int q = 1; q < rank; ++q) {
      const std::string where = ip[static_cast<std::size_t>(q)] + ":" + std::to_string(port[static_cast<std::size_t>(q)]);
      const int fd = connect_before(ip[static_cast<std::size_t>(q)], port[static_cast<std::size_t>(q)], deadline,
                                    "rank " + std::to_string(q));
      m.links[static_cast<std::size_t>(q)] = std::make_unique<SocketLink>(fd, "rank " + std::to_string(q) + " (" + where + ")");
      const int32_t me = rank;
      m.links[static_cast<std::size_t>(q)]->send(&me, 4);
    }
    for (int i = rank + 1; i < world; ++i) {
      std::string peer_ip;
      const int fd = accept_before(lfd, deadline, "rank(s) above " + std::to_string(rank), &peer_ip);
      auto link = std::make_unique<SocketLink>(fd, "a rank at " + peer_ip);
      int32_t q = 0;
      link->recv(&q, 4);
      if (q <= rank || q >= world || m.links[static_cast<std::size_t>(q)])
        throw Error("rendezvous: " + peer_ip + " says it is rank " + std::to_string(q) + ", not a rank above " +
                    std::to_string(rank) + " still expected");
      link->set_peer("rank " + std::to_string(q) + " (" + peer_ip + ")");
      m.links[static_cast<std::size_t>(q)] = std::move(link);
    }
  } catch (...) {
    ::close(lfd);
    throw;
  }
  ::close(lfd);
  return m;
}

}  // namespace nemotron::model
