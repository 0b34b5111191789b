#include "server/peer_socket.h"

#include "server/http_front.h"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <vector>

namespace nemotron::server {
namespace {

// Numeric host and port of a socket address, as httplib formats Request::remote_addr.
bool host_port(const sockaddr_storage& a, socklen_t len, std::string& host, int& port) {
  std::array<char, NI_MAXHOST> h{};
  std::array<char, NI_MAXSERV> p{};
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, h.data(), static_cast<socklen_t>(h.size()), p.data(),
                  static_cast<socklen_t>(p.size()), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  host = h.data();
  port = std::atoi(p.data());
  return true;
}

bool matches(int fd, const std::string& local_addr, int local_port, const std::string& remote_addr,
             int remote_port) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return false;  // not a socket
  if (a.ss_family != AF_INET && a.ss_family != AF_INET6) return false;
  std::string host;
  int port = -1;
  if (!host_port(a, len, host, port) || port != local_port || (!local_addr.empty() && host != local_addr)) return false;
  len = sizeof(a);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return false;  // listening socket
  return host_port(a, len, host, port) && port == remote_port && host == remote_addr;
}

// Open descriptors: /proc/self/fd, else every number below the descriptor limit (capped).
std::vector<int> open_fds() {
  std::vector<int> fds;
  if (DIR* d = opendir("/proc/self/fd")) {
    const int own = dirfd(d);
    while (const dirent* e = readdir(d)) {
      char* end = nullptr;
      const long v = std::strtol(e->d_name, &end, 10);
      if (end != e->d_name && *end == '\0' && v >= 0 && v != own) fds.push_back(static_cast<int>(v));
    }
    closedir(d);
    return fds;
  }
  rlimit lim{};
  rlim_t n = 1024;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) n = lim.rlim_cur;
  n = std::min<rlim_t>(n, 65536);
  for (rlim_t i = 0; i < n; ++i) fds.push_back(static_cast<int>(i));
  return fds;
}

}  // namespace

PeerSocket PeerSocket::find(const std::string& local_addr, int local_port, const std::string& remote_addr,
                            int remote_port) {
  PeerSocket s;
  if (local_port <= 0 || remote_port <= 0 || remote_addr.empty()) return s;
  // The connection the calling worker serves (FrontServer), else a search of every descriptor.
  if (const RequestContext* ctx = current_request(); ctx && ctx->fd >= 0 &&
                                                     matches(ctx->fd, local_addr, local_port, remote_addr, remote_port)) {
    s.fd_ = ctx->fd;
    return s;
  }
  for (int fd : open_fds()) {
    if (matches(fd, local_addr, local_port, remote_addr, remote_port)) {
      s.fd_ = fd;
      break;
    }
  }
  return s;
}

bool PeerSocket::closed() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    const ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
  }
  return false;
}

}  // namespace nemotron::server
