#pragma once
// Whether the client of the request being handled has gone away, without writing to it.
//
// cpp-httplib 0.11 gives a handler no handle on its connection, and DataSink::is_writable
// only select()s for writability, which stays true after the peer closed. A handler can still
// find its own socket: the accepted fd whose getsockname/getpeername give the Request's local
// port and remote address/port (a TCP 4-tuple names one connection; addresses are formatted
// with getnameinfo(NI_NUMERICHOST) as httplib formats them). The fd stays open, so it cannot
// be reused by another connection, until the handler and its content provider have returned;
// a PeerSocket must not be used after that. Under FrontServer (http_front.h) the worker's own
// connection (current_request()) is checked first; the search of every descriptor remains for
// any other caller.
//
// closed() is true once the peer sent FIN (closed, or shut down its sending side: HTTP/1.1
// clients do not half-close while awaiting a response) or RST. Bytes waiting to be read (a
// pipelined request) do not count as a close. When the socket cannot be found (no matching
// fd), closed() is always false: the request then runs to its end as before.
#include <string>

namespace nemotron::server {

class PeerSocket {
 public:
  PeerSocket() = default;
  static PeerSocket find(const std::string& local_addr, int local_port, const std::string& remote_addr,
                         int remote_port);
  bool found() const { return fd_ >= 0; }
  bool closed() const;

 private:
  int fd_ = -1;
};

}  // namespace nemotron::server
