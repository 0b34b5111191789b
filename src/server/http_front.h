#pragma once
// The connection layer in front of cpp-httplib's request parser and router.
//
// httplib 0.11's own listen loop gives every accepted connection a pool thread until the
// connection closes: a client that sends its request one byte a second (slowloris), or keeps
// an idle connection open, holds a thread, and 64 such clients stop all service. FrontServer
// replaces that loop (it is an httplib::Server, so routes and handlers are httplib's):
//
//   * one event-loop thread (epoll) accepts connections and holds every connection that has
//     not sent a complete request: it peeks (MSG_PEEK, nothing consumed) until the request
//     head (request line + headers, "\r\n\r\n") is there, plus the whole body or its first
//     kBodyPrefix bytes. Waiting connections cost a file descriptor, no thread. A head must
//     arrive within header_timeout of the connection (or of its first byte after an idle
//     keep-alive); else 408 and close. A head over max_head_bytes: 431.
//   * complete requests go to a bounded queue served by worker threads (GET/HEAD/OPTIONS by a
//     few threads of their own, so /health and /metrics answer while every generation worker
//     is busy); a full queue answers 503 at once.
//   * a worker runs httplib's request parser and router on the connection (Server::
//     process_request) through ConnStream, which buffers reads, bounds the body's bytes on the
//     wire, and gives every read and write a deadline; the stop signal wakes every wait.
//     A worker serves one request; then the connection goes back to the loop (keep-alive,
//     with the bytes of a pipelined request it read past the response, so that each request
//     goes to the workers of its kind), or is closed -- after an error that left body bytes
//     unread, by a lingering close: the loop discards what the client still sends for up to
//     kLingerTime, so that it can read the response.
//   * a client that stops reading its response: a write waits while the socket has no room,
//     but a response that gets no room for write_timeout (one clock for the whole response,
//     reset by any progress) fails and the connection is closed; a streaming generation is
//     then cancelled as for a disconnect. GET / HEAD / OPTIONS responses (complete strings)
//     never wait at all: what the socket does not take is queued on the connection (up to
//     kWriteBehindBytes over all connections) and written by the loop, which closes the
//     connection after write_timeout without progress; a pipelined request waits until then.
//   * beyond max_connections (derived from RLIMIT_NOFILE), the waiting connection nearest its
//     deadline is closed to admit a new one; beyond max_connections_per_ip connections from
//     one client address (IPv6: one /64), a new one is answered 429 and closed.
// shutdown() may be called from any thread at any time, before or during serve().
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace nemotron::server {

struct FrontOptions {
  int workers = 64;                       // threads for requests that may run long (POST ...)
  int light_workers = 4;                  // threads for GET / HEAD / OPTIONS
  std::size_t max_queue = 1024;           // complete requests waiting for a worker (each pool)
  std::size_t max_connections = 0;        // 0: the descriptor limit minus a margin
  std::size_t max_head_bytes = 64 << 10;  // request line + headers
  std::size_t max_body_bytes = std::size_t{32} << 20;
  double header_timeout_s = 5;            // a request head must arrive within this
  double idle_timeout_s = 5;              // keep-alive: idle connections are closed after this
  double body_timeout_s = 10;             // body: this, plus 1 s per min_body_rate bytes received
  std::size_t min_body_rate = 64 << 10;   // bytes per second
  double write_timeout_s = 30;            // a response that gets no room in the socket this long: closed
  std::size_t max_connections_per_ip = 256;  // open connections from one address (IPv6: a /64); 0: no limit
  int max_requests_per_connection = 1000;
  // The JSON body of an error the loop answers itself (408, 429, 431, 503) for a request path
  // (empty when unknown).
  std::function<std::string(int status, const std::string& path, const std::string& message)> error_body;
  // Called (on the loop thread) for each response the loop answers itself (metrics).
  std::function<void(int status)> on_response;
};

// Why a worker's read of the request failed (RequestContext::read_failure).
enum class ReadFailure { kNone, kTimeout, kTooLarge, kClosed, kStopping };

// The request a worker thread is serving: what the route handlers need from the connection.
struct RequestContext {
  int fd = -1;
  // When the loop had the whole request (head and body, or the body's first kBodyPrefix bytes)
  // and queued it for a worker: the request's arrival, for latencies measured from it.
  std::chrono::steady_clock::time_point arrived{};
  bool body_read = false;  // the body was read to its end (else the connection is closed after the response)
  bool close = false;      // close the connection after the response
  ReadFailure read_failure = ReadFailure::kNone;
};
// The calling thread's request (null outside a worker's request).
RequestContext* current_request();

class FrontServer : public httplib::Server {
 public:
  FrontServer();
  ~FrontServer() override;
  void set_front_options(FrontOptions options);
  const FrontOptions& front_options() const { return options_; }

  // Binds host:port (0: any free port); returns the port, or -1.
  int bind_front(const std::string& host, int port);
  // Runs the loop and the workers until shutdown(); returns once every worker has finished
  // its request. Call once, from one thread.
  void serve();
  // Stops accepting, wakes every wait, and makes serve() return. Any thread, any time.
  void shutdown();
  bool stopping() const { return stopping_; }

  struct Loop;

 private:
  bool process_one(httplib::Stream& strm, bool close_connection, bool& connection_closed);

  FrontOptions options_;
  std::atomic<bool> stopping_{false};
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd, written once by shutdown(), never read: every poll sees it
  std::unique_ptr<Loop> loop_;
};

}  // namespace nemotron::server
