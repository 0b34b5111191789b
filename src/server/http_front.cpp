#include "server/http_front.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nemotron::server {
namespace {

using Clock = std::chrono::steady_clock;

thread_local RequestContext* t_request = nullptr;

// Body bytes the loop waits for before handing a request to a worker (the whole body when
// shorter): a client must send this much within header_timeout, so a slow body holds no worker.
constexpr std::size_t kBodyPrefix = 16 << 10;
// After an error that left request bytes unread: how long, and how much, the loop reads and
// discards so that the client, still sending, can read the response (a close with unread
// bytes sends RST, which can destroy the response in flight).
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr std::size_t kLingerBytes = std::size_t{64} << 20;
// Response bytes queued on connections for the loop to write (write-behind), over all of
// them; beyond it a GET response waits for its socket as a POST's does.
constexpr std::size_t kWriteBehindBytes = std::size_t{64} << 20;
// Epoll tags below the first connection id.
constexpr uint64_t kListenTag = 0, kWakeTag = 1, kStopTag = 2, kFirstConn = 16;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

int ms_until(Clock::time_point t) {
  const auto d = t - Clock::now();
  if (d <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count() + 1;
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

bool ieq(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// What the loop reads of a request head to decide when the request is complete enough for a
// worker. The worker's httplib parser reads the head again (it is only peeked here).
struct Head {
  std::string method, path;
  bool has_length = false, bad_length = false, chunked = false, expect_continue = false;
  uint64_t length = 0;
};

// `text` is the head up to and including its "\r\n\r\n". Headers as httplib reads them: the
// first of a name counts, Transfer-Encoding is chunked only when it says exactly that.
Head parse_head(std::string_view text) {
  Head h;
  std::size_t eol = text.find("\r\n");
  const std::string_view line = text.substr(0, eol);
  const std::size_t sp1 = line.find(' ');
  if (sp1 != std::string_view::npos) {
    h.method = std::string(line.substr(0, sp1));
    const std::size_t sp2 = line.find(' ', sp1 + 1);
    std::string_view target = line.substr(sp1 + 1, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - sp1 - 1);
    h.path = std::string(target.substr(0, target.find('?')));
  }
  bool seen_length = false, seen_te = false, seen_expect = false;
  std::size_t at = eol == std::string_view::npos ? text.size() : eol + 2;
  while (at < text.size()) {
    const std::size_t end = text.find("\r\n", at);
    if (end == std::string_view::npos || end == at) break;
    const std::string_view l = text.substr(at, end - at);
    at = end + 2;
    const std::size_t colon = l.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = trim(l.substr(0, colon)), value = trim(l.substr(colon + 1));
    if (ieq(name, "Content-Length") && !seen_length) {
      seen_length = true;
      h.has_length = true;
      uint64_t v = 0;
      bool ok = !value.empty() && value.size() <= 19;
      for (char c : value) ok = ok && c >= '0' && c <= '9', v = v * 10 + static_cast<uint64_t>(c - '0');
      if (ok) h.length = v;
      else h.bad_length = true;
    } else if (ieq(name, "Transfer-Encoding") && !seen_te) {
      seen_te = true;
      h.chunked = ieq(value, "chunked");
    } else if (ieq(name, "Expect") && !seen_expect) {
      seen_expect = true;
      h.expect_continue = ieq(value, "100-continue");
    }
  }
  return h;
}

bool light_method(const std::string& m) { return m == "GET" || m == "HEAD" || m == "OPTIONS"; }

const char* reason(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// Numeric host and port of a socket address, as httplib formats Request::remote_addr.
void host_port(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  if ((peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) : getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len)) != 0)
    return;
  if (a.ss_family == AF_INET) port = ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
  else if (a.ss_family == AF_INET6) port = ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port);
  else return;
  std::array<char, NI_MAXHOST> h{};
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, h.data(), static_cast<socklen_t>(h.size()), nullptr, 0,
                  NI_NUMERICHOST) == 0)
    ip = h.data();
}

// The client a connection counts against max_connections_per_ip: an IPv4 address (IPv4-mapped
// ones too) whole, an IPv6 address by its /64 (what one host or site is usually given).
// Empty for another family (not counted).
std::string client_key(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in*>(&a)->sin_addr;
    return std::string(reinterpret_cast<const char*>(&v4), 4);
  }
  if (a.ss_family == AF_INET6) {
    const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr;
    const char* b = reinterpret_cast<const char*>(v6.s6_addr);
    return IN6_IS_ADDR_V4MAPPED(&v6) ? std::string(b + 12, 4) : std::string(b, 8);
  }
  return {};
}

}  // namespace

RequestContext* current_request() { return t_request; }

// One client connection. The loop holds it while it waits for a request (kWaiting), writes
// the rest of a response the socket did not take (kFlushing), or discards what the client
// still sends before closing (kLinger); a worker holds it while it serves a request.
struct Conn {
  enum class State { kWaiting, kFlushing, kLinger };
  int fd = -1;
  uint64_t id = 0;
  State state = State::kWaiting;
  Clock::time_point deadline;
  bool fresh = true;        // no byte of the next request yet
  bool rdhup = false;       // the client shut down its sending side
  bool close_after = false;  // kFlushing: close (lingering) once `out` is written
  int requests = 0;         // served on this connection
  std::size_t lingered = 0;
  std::string client;       // counted against max_connections_per_ip (empty: not counted)
  std::string out;          // response bytes not yet taken by the socket (write-behind) ...
  std::size_t out_at = 0;   // ... of which this many have been written since
  std::string carry;        // request bytes read past the last response: the next request's start
  Clock::time_point complete{};  // when the request being served was complete (dispatch)
};

namespace {

// Takes n more bytes of write-behind from the budget of every connection (`used`).
bool reserve_behind(std::atomic<std::size_t>& used, std::size_t n) {
  std::size_t cur = used.load();
  do {
    if (cur > kWriteBehindBytes || n > kWriteBehindBytes - cur) return false;
  } while (!used.compare_exchange_weak(cur, cur + n));
  return true;
}

// Forgets c.out (written, or the connection is closed) and gives its bytes back to the budget.
void clear_out(Conn& c, std::atomic<std::size_t>& used) {
  used.fetch_sub(c.out.size());
  std::string().swap(c.out);
  c.out_at = 0;
}

// Writes what the socket takes of c.out now, without waiting: the bytes written, or -1 on an
// error. c.out is cleared once all of it is written.
ssize_t send_out(Conn& c, std::atomic<std::size_t>& used) {
  ssize_t total = 0;
  while (c.out_at < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.out_at, c.out.size() - c.out_at, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      c.out_at += static_cast<std::size_t>(n);
      total += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) break;
    return -1;
  }
  if (!c.out.empty() && c.out_at == c.out.size()) clear_out(c, used);
  return total;
}

// httplib's view of a connection while a worker serves it: reads buffered (httplib reads a
// head byte by byte), with deadlines; the body's bytes on the wire bounded; writes that wait
// for room in the socket at most write_timeout without progress, or (with `behind`, the
// write-behind budget) queue what the socket does not take on the connection; every wait
// woken by the stop signal.
class ConnStream final : public httplib::Stream {
 public:
  ConnStream(Conn& c, const FrontOptions& o, int stop_fd, const std::atomic<bool>& stopping,
             std::atomic<std::size_t>* behind)
      : c_(c), o_(o), stop_fd_(stop_fd), stopping_(stopping), behind_(behind) {
    // The body's bytes on the wire: the payload limit plus room for chunked framing (the
    // payload itself is bounded exactly by the route's body reader).
    body_wire_limit_ = o.max_body_bytes + std::max<std::size_t>(64 << 10, o.max_body_bytes / 16);
    host_port(c.fd, true, remote_ip_, remote_port_);
    host_port(c.fd, false, local_ip_, local_port_);
    // A pipelined request's start, read by the previous worker (never more than buf_ holds).
    len_ = std::min(c.carry.size(), buf_.size());
    std::memcpy(buf_.data(), c.carry.data(), len_);
    c.carry.clear();
  }

  void begin_request(RequestContext* ctx) {
    ctx_ = ctx;
    in_head_ = true;
    match_ = 0;
    body_bytes_ = 0;
    failure_ = ReadFailure::kNone;
    head_deadline_ = Clock::now() + seconds(o_.header_timeout_s);
  }
  bool buffered() const { return pos_ < len_; }
  // The bytes read past the request just served (the next request's start).
  std::string take_buffered() {
    std::string rest(buf_.data() + pos_, len_ - pos_);
    pos_ = len_ = 0;
    return rest;
  }
  ReadFailure failure() const { return failure_; }

  bool is_readable() const override { return buffered() || wait(POLLIN, read_deadline()) > 0; }
  bool is_writable() const override {
    if (wait_writable() <= 0) return false;
    // and the peer has not closed (bytes waiting to be read are not a close)
    pollfd p{c_.fd, POLLIN, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
      char ch;
      if (recv(c_.fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0) return false;
    }
    return true;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (failure_ != ReadFailure::kNone) return -1;
    if (pos_ == len_) {
      for (;;) {
        const ssize_t n = recv(c_.fd, buf_.data(), buf_.size(), 0);
        if (n > 0) {
          pos_ = 0;
          len_ = static_cast<std::size_t>(n);
          break;
        }
        if (n == 0) return 0;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return fail(ReadFailure::kClosed);
        const int w = wait(POLLIN, read_deadline());
        if (w == 0) return fail(ReadFailure::kTimeout);
        if (w < 0) return fail(stopping_ ? ReadFailure::kStopping : ReadFailure::kClosed);
      }
    }
    std::size_t k = std::min(size, len_ - pos_);
    if (in_head_) {
      // Deliver the head up to its end exactly, so that the body is counted from there.
      static constexpr char kEnd[] = "\r\n\r\n";
      for (std::size_t i = 0; i < k; ++i) {
        const char ch = buf_[pos_ + i];
        match_ = ch == kEnd[match_] ? match_ + 1 : (ch == '\r' ? 1 : 0);
        if (match_ == 4) {
          k = i + 1;
          in_head_ = false;
          body_start_ = Clock::now();
          break;
        }
      }
    } else {
      if (body_bytes_ + k > body_wire_limit_) return fail(ReadFailure::kTooLarge);
      body_bytes_ += k;
    }
    std::memcpy(ptr, buf_.data() + pos_, k);
    pos_ += k;
    return static_cast<ssize_t>(k);
  }

  // Queued bytes go out first (the response's order on the wire). With write-behind, what the
  // socket does not take is queued and the write returns at once.
  ssize_t write(const char* ptr, size_t size) override {
    if (size == 0) return 0;
    for (;;) {
      if (!c_.out.empty()) {
        const ssize_t sent = send_out(c_, *behind_);  // c.out is only ever filled with behind_ set
        if (sent < 0) return -1;
        if (sent > 0) stalled_ = false;
      }
      if (c_.out.empty()) {
        const ssize_t n = send(c_.fd, ptr, size, MSG_NOSIGNAL);
        if (n > 0) {
          stalled_ = false;
          const auto sent = static_cast<std::size_t>(n);
          return sent < size && queue(ptr + sent, size - sent) ? static_cast<ssize_t>(size) : n;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      }
      if (queue(ptr, size)) return static_cast<ssize_t>(size);
      if (wait_writable() <= 0) return -1;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = remote_ip_;
    port = remote_port_;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = local_ip_;
    port = local_port_;
  }
  socket_t socket() const override { return c_.fd; }

 private:
  ssize_t fail(ReadFailure f) {
    failure_ = f;
    if (ctx_) ctx_->read_failure = f;
    return -1;
  }

  bool queue(const char* ptr, std::size_t n) {
    if (!behind_ || !reserve_behind(*behind_, n)) return false;
    c_.out.append(ptr, n);
    return true;
  }

  // Waits for room in the socket. One clock for the whole response: it starts when a write
  // first finds no room and is reset whenever the socket has room again (the client read), so
  // that a client that stops reading is dropped write_timeout after the stall began, however
  // many writes (or is_writable checks between events) the stall spans.
  int wait_writable() const {
    if (!stalled_) {
      stalled_ = true;
      stall_start_ = Clock::now();
    }
    const int w = wait(POLLOUT, stall_start_ + seconds(o_.write_timeout_s));
    if (w > 0) stalled_ = false;
    return w;
  }

  // A request head must arrive by its deadline; a body keeps coming at min_body_rate after a
  // grace of body_timeout.
  Clock::time_point read_deadline() const {
    if (in_head_) return head_deadline_;
    const double rate = static_cast<double>(std::max<std::size_t>(o_.min_body_rate, 1));
    return body_start_ + seconds(o_.body_timeout_s + static_cast<double>(body_bytes_) / rate);
  }

  // Waits for `events` on the socket until `deadline`: 1 ready, 0 timed out, -1 error or stop.
  // Reads stop at the stop signal; writes get one more second to finish a response.
  int wait(short events, Clock::time_point deadline) const {
    const bool reading = events & POLLIN;
    for (;;) {
      std::array<pollfd, 2> p{pollfd{c_.fd, events, 0}, pollfd{stop_fd_, POLLIN, 0}};
      const bool watch_stop = !stopping_;
      if (!reading && stopping_) deadline = std::min(deadline, Clock::now() + std::chrono::seconds(1));
      const int n = poll(p.data(), watch_stop ? 2 : 1, ms_until(deadline));
      if (n < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      if (n == 0) {
        if (Clock::now() >= deadline) return 0;
        continue;
      }
      if (p[0].revents & events) return 1;
      if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) return -1;
      if (watch_stop && (p[1].revents & POLLIN)) {
        if (reading) return -1;
        continue;  // a write: finish within the second granted at stop
      }
    }
  }

  Conn& c_;
  const FrontOptions& o_;
  int stop_fd_;
  const std::atomic<bool>& stopping_;
  std::atomic<std::size_t>* behind_;  // null: no write-behind
  mutable bool stalled_ = false;
  mutable Clock::time_point stall_start_;
  RequestContext* ctx_ = nullptr;
  std::array<char, 16384> buf_{};
  std::size_t pos_ = 0, len_ = 0;
  bool in_head_ = true;
  int match_ = 0;
  std::size_t body_bytes_ = 0, body_wire_limit_ = 0;
  Clock::time_point head_deadline_, body_start_;
  ReadFailure failure_ = ReadFailure::kNone;
  std::string remote_ip_, local_ip_;
  int remote_port_ = -1, local_port_ = -1;
};

// Complete requests waiting for a worker.
class WorkQueue {
 public:
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return q_.size();
  }
  void push(std::unique_ptr<Conn> c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      q_.push_back(std::move(c));
    }
    cv_.notify_one();
  }
  // Null once closed.
  std::unique_ptr<Conn> pop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !q_.empty(); });
    if (closed_) return nullptr;
    auto c = std::move(q_.front());
    q_.pop_front();
    return c;
  }
  // Wakes every worker; returns the connections nobody took.
  std::deque<std::unique_ptr<Conn>> close() {
    std::deque<std::unique_ptr<Conn>> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      left.swap(q_);
    }
    cv_.notify_all();
    return left;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Conn>> q_;
  bool closed_ = false;
};

}  // namespace

struct FrontServer::Loop {
  FrontServer& srv;
  const FrontOptions& opt;
  int listen_fd;
  int epfd = -1, wake_fd = -1;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;     // held by the loop
  std::set<std::pair<Clock::time_point, uint64_t>> timers;        // their deadlines
  uint64_t next_id = kFirstConn;
  WorkQueue heavy, light;
  std::vector<std::thread> threads;
  std::mutex returned_mu;
  std::vector<std::unique_ptr<Conn>> returned;  // from workers: keep-alive or linger
  std::atomic<std::size_t> open{0};             // every connection, wherever it is
  std::atomic<std::size_t> behind{0};           // write-behind bytes of every connection
  std::mutex clients_mu;                        // workers close connections too
  std::unordered_map<std::string, std::size_t> clients;  // open connections per client key
  std::size_t max_conns = 0;
  bool accept_paused = false;
  Clock::time_point accept_resume;
  std::vector<char> peek;

  Loop(FrontServer& s, int fd) : srv(s), opt(s.options_), listen_fd(fd) {
    peek.resize(opt.max_head_bytes + kBodyPrefix);
    max_conns = opt.max_connections;
    if (max_conns == 0) {
      rlimit lim{};
      rlim_t n = 1024;
      if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) n = lim.rlim_cur;
      max_conns = static_cast<std::size_t>(std::clamp<rlim_t>(n > 192 ? n - 128 : 64, 64, 1 << 20));
    }
  }

  ~Loop() {
    if (epfd >= 0) ::close(epfd);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void close_conn(std::unique_ptr<Conn>& c) {
    if (!c) return;
    ::close(c->fd);
    clear_out(*c, behind);
    release_client(c->client);
    c.reset();
    open.fetch_sub(1);
  }

  // Counts a new connection from `key` unless its client has max_connections_per_ip open.
  bool admit_client(const std::string& key) {
    if (opt.max_connections_per_ip == 0 || key.empty()) return true;
    std::lock_guard<std::mutex> lock(clients_mu);
    std::size_t& n = clients[key];
    if (n >= opt.max_connections_per_ip) return false;
    ++n;
    return true;
  }

  void release_client(const std::string& key) {
    if (key.empty()) return;
    std::lock_guard<std::mutex> lock(clients_mu);
    auto it = clients.find(key);
    if (it != clients.end() && --it->second == 0) clients.erase(it);
  }

  // --- loop side ---------------------------------------------------------------------------

  void retime(Conn& c, Clock::time_point t) {
    timers.erase({c.deadline, c.id});
    c.deadline = t;
    timers.insert({c.deadline, c.id});
  }

  void drop(uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    timers.erase({it->second->deadline, id});
    close_conn(it->second);  // closing removes it from the epoll set
    conns.erase(it);
  }

  static uint32_t events_of(Conn::State s) {
    // A flushing connection waits for room only: a client that half-closes may still read.
    return (s == Conn::State::kFlushing ? EPOLLOUT : EPOLLIN | EPOLLRDHUP) | EPOLLET;
  }

  // After a change of state: what the loop waits for on the connection.
  void watch(Conn& c) {
    epoll_event ev{};
    ev.events = events_of(c.state);
    ev.data.u64 = c.id;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
  }

  // Takes the connection into the loop: null (and closed) when it cannot be watched.
  Conn* add(std::unique_ptr<Conn> c) {
    epoll_event ev{};
    ev.events = events_of(c->state);
    ev.data.u64 = c->id;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
      close_conn(c);
      return nullptr;
    }
    Conn* r = c.get();
    timers.insert({r->deadline, r->id});
    conns.emplace(r->id, std::move(c));
    return r;
  }

  void hold(std::unique_ptr<Conn> c) {
    Conn* r = add(std::move(c));
    if (!r) return;
    // Bytes (or room) may already be there (edge-triggered: no event for them).
    switch (r->state) {
      case Conn::State::kLinger: return drain(*r);
      case Conn::State::kFlushing: return flush(*r);
      case Conn::State::kWaiting: return check(*r);
    }
  }

  // Writes the rest of a response; then the next request, or the close the response announced.
  // A client that takes nothing for write_timeout is dropped (on_timer).
  void flush(Conn& c) {
    const ssize_t sent = send_out(c, behind);
    if (sent < 0) return drop(c.id);
    if (sent > 0) retime(c, Clock::now() + seconds(opt.write_timeout_s));
    if (!c.out.empty()) return;
    if (c.close_after) {
      c.state = Conn::State::kLinger;
      watch(c);
      return linger(c);
    }
    c.state = Conn::State::kWaiting;
    c.fresh = true;
    c.rdhup = false;
    retime(c, Clock::now() + seconds(opt.idle_timeout_s));
    watch(c);
    check(c);
  }

  // A best-effort error response from the loop, then a lingering close.
  void respond(Conn& c, int status, const std::string& path, const std::string& message) {
    if (opt.on_response) opt.on_response(status);
    const std::string body = opt.error_body ? opt.error_body(status, path, message) : std::string("{}");
    const std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
                          "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\nConnection: close\r\n\r\n" + body;
    (void)!send(c.fd, r.data(), r.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    linger(c);
  }

  void linger(Conn& c) {
    ::shutdown(c.fd, SHUT_WR);
    c.state = Conn::State::kLinger;
    retime(c, Clock::now() + kLingerTime);
    drain(c);
  }

  void drain(Conn& c) {
    std::array<char, 65536> scratch;
    for (;;) {
      const ssize_t n = recv(c.fd, scratch.data(), scratch.size(), MSG_DONTWAIT);
      if (n > 0) {
        c.lingered += static_cast<std::size_t>(n);
        if (c.lingered > kLingerBytes) return drop(c.id);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      return drop(c.id);  // EOF or error
    }
  }

  // Is a complete request (head, and the body or its first kBodyPrefix bytes) waiting? Its
  // bytes: those a worker read past the previous response (c.carry), then the socket's.
  void check(Conn& c) {
    const std::size_t carried = c.carry.size();  // at most a worker's read buffer: fits in peek
    std::memcpy(peek.data(), c.carry.data(), carried);
    const ssize_t n = recv(c.fd, peek.data() + carried, peek.size() - carried, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
      if (carried == 0) return drop(c.id);  // closed between requests
      c.rdhup = true;
    } else if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return drop(c.id);
      if (carried == 0) return;
    }
    if (c.fresh) {
      c.fresh = false;
      // a kept-alive connection gets header_timeout from its next request's first byte
      if (c.requests > 0) retime(c, Clock::now() + seconds(opt.header_timeout_s));
    }
    const std::string_view data(peek.data(), carried + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    const std::size_t end = data.find("\r\n\r\n");
    if (end == std::string_view::npos || end + 4 > opt.max_head_bytes) {
      if (data.size() >= opt.max_head_bytes)
        return respond(c, 431, "",
                       "The request line and headers exceed " + std::to_string(opt.max_head_bytes >> 10) + " KiB");
      if (c.rdhup) return drop(c.id);  // the client stopped sending before a whole head
      return;
    }
    const std::size_t head_len = end + 4;
    const Head h = parse_head(data.substr(0, head_len));
    const std::size_t have = data.size() - head_len;
    bool ready = true;
    if (h.expect_continue || h.bad_length) {
      ready = true;  // the worker answers (100 Continue, or the error) at once
    } else if (h.chunked) {
      const std::string_view body = data.substr(head_len);
      ready = c.rdhup || have >= kBodyPrefix || body.rfind("0\r\n\r\n", 0) == 0 ||
              body.find("\r\n0\r\n\r\n") != std::string_view::npos;
    } else if (h.has_length) {
      ready = c.rdhup || h.length > opt.max_body_bytes || have >= std::min<uint64_t>(h.length, kBodyPrefix);
    } else if (h.method == "POST" || h.method == "PUT" || h.method == "PATCH" || h.method == "PRI") {
      ready = c.rdhup || have >= kBodyPrefix;  // httplib reads such a body to the end of the stream
    }
    if (!ready) return;
    dispatch(c, h);
  }

  void dispatch(Conn& c, const Head& h) {
    WorkQueue& q = light_method(h.method) ? light : heavy;
    if (q.size() >= opt.max_queue)
      return respond(c, 503, h.path, "The server is busy: " + std::to_string(opt.max_queue) +
                                         " requests are waiting for a worker; retry later");
    c.complete = Clock::now();
    epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
    timers.erase({c.deadline, c.id});
    auto it = conns.find(c.id);
    std::unique_ptr<Conn> owned = std::move(it->second);
    conns.erase(it);
    q.push(std::move(owned));
  }

  void on_timer(Conn& c) {
    // a client that stopped reading (kFlushing), or one that asked for nothing: closed silently
    if (c.state != Conn::State::kWaiting || c.fresh) return drop(c.id);
    respond(c, 408, "",
            "The request was not received in time: its request line and headers (and the start of its body) "
            "must arrive within " + std::to_string(opt.header_timeout_s).substr(0, 4) + " s");
  }

  // Closes the waiting connection nearest its deadline; false when the loop holds none.
  bool evict_one() {
    if (timers.empty()) return false;
    drop(timers.begin()->second);
    return true;
  }

  void accept_all() {
    for (int i = 0; i < 256; ++i) {
      sockaddr_storage addr{};
      socklen_t addr_len = sizeof(addr);
      const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &addr_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          if (evict_one()) continue;
          pause_accept();
        }
        return;
      }
      if (open.load() >= max_conns && !evict_one()) {
        ::close(fd);  // every connection is being served: no room
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      open.fetch_add(1);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      c->id = next_id++;
      c->deadline = Clock::now() + seconds(opt.header_timeout_s);
      std::string key = client_key(addr);
      if (!admit_client(key)) {
        // Answered before its request is read (lingering, so that the client can read it).
        if (Conn* r = add(std::move(c)))
          respond(*r, 429, "",
                  "Too many connections from this address: at most " + std::to_string(opt.max_connections_per_ip) +
                      " may be open at once (--max-connections-per-ip); close some and retry");
        continue;
      }
      if (opt.max_connections_per_ip > 0) c->client = std::move(key);
      hold(std::move(c));
    }
  }

  void pause_accept() {
    epoll_event ev{};
    ev.data.u64 = kListenTag;
    epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &ev);
    accept_paused = true;
    accept_resume = Clock::now() + std::chrono::milliseconds(100);
  }

  void resume_accept() {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenTag;
    epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &ev);
    accept_paused = false;
  }

  void take_returned() {
    uint64_t v;
    (void)!::read(wake_fd, &v, sizeof(v));
    std::vector<std::unique_ptr<Conn>> back;
    {
      std::lock_guard<std::mutex> lock(returned_mu);
      back.swap(returned);
    }
    for (auto& c : back) hold(std::move(c));
  }

  void on_event(uint64_t id, uint32_t events) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    if (c.state == Conn::State::kLinger) return drain(c);
    if (c.state == Conn::State::kFlushing) return events & (EPOLLERR | EPOLLHUP) ? drop(id) : flush(c);
    if (events & EPOLLERR) return drop(id);
    if (events & (EPOLLRDHUP | EPOLLHUP)) c.rdhup = true;
    check(c);
  }

  // --- worker side -------------------------------------------------------------------------

  void give_back(std::unique_ptr<Conn> c) {
    {
      std::lock_guard<std::mutex> lock(returned_mu);
      returned.push_back(std::move(c));
    }
    const uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof(one));
  }

  // One request. `light`: GET / HEAD / OPTIONS, whose responses are complete strings --
  // written behind, so that no client that stops reading holds one of their few workers.
  void serve(std::unique_ptr<Conn> c, bool light) {
    ConnStream strm(*c, opt, srv.stop_fd_, srv.stopping_, light ? &behind : nullptr);
    RequestContext ctx;
    ctx.fd = c->fd;
    ctx.arrived = c->complete;
    strm.begin_request(&ctx);
    const bool last = ++c->requests >= opt.max_requests_per_connection || srv.stopping_;
    bool closed = false, ok = false;
    t_request = &ctx;
    try {
      ok = srv.process_one(strm, last, closed);
    } catch (...) {
      ok = false;
    }
    t_request = nullptr;
    if (srv.stopping_ || !ok || strm.failure() == ReadFailure::kClosed) return close_conn(c);
    const bool closing = closed || last || ctx.close || strm.failure() != ReadFailure::kNone;
    // A pipelined request's start goes back with the connection: the loop hands it to the
    // workers of its kind once it is complete (and once this response is written).
    if (!closing) c->carry = strm.take_buffered();
    if (!c->out.empty()) {
      // The socket has not taken the whole response: the loop writes the rest.
      c->state = Conn::State::kFlushing;
      c->close_after = closing;
      c->deadline = Clock::now() + seconds(opt.write_timeout_s);
      return give_back(std::move(c));
    }
    if (closing) {
      // The response is out; what the client may still send is discarded by the loop.
      ::shutdown(c->fd, SHUT_WR);
      c->state = Conn::State::kLinger;
      c->deadline = Clock::now() + kLingerTime;
      return give_back(std::move(c));
    }
    c->state = Conn::State::kWaiting;
    c->fresh = true;
    c->rdhup = false;
    c->deadline = Clock::now() + seconds(opt.idle_timeout_s);
    give_back(std::move(c));
  }

  void work(WorkQueue& q, bool light) {
    while (auto c = q.pop()) serve(std::move(c), light);
  }

  // --- the loop ----------------------------------------------------------------------------

  void run() {
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || wake_fd < 0) return;
    const int flags = fcntl(listen_fd, F_GETFL, 0);
    fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK);
    auto add = [&](int fd, uint64_t tag) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = tag;
      epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    };
    add(listen_fd, kListenTag);
    add(wake_fd, kWakeTag);
    add(srv.stop_fd_, kStopTag);
    for (int i = 0; i < std::max(1, opt.workers); ++i) threads.emplace_back([this] { work(heavy, false); });
    for (int i = 0; i < std::max(1, opt.light_workers); ++i) threads.emplace_back([this] { work(light, true); });

    std::array<epoll_event, 256> events;
    while (!srv.stopping_) {
      int timeout = timers.empty() ? -1 : ms_until(timers.begin()->first);
      if (accept_paused) timeout = timeout < 0 ? ms_until(accept_resume) : std::min(timeout, ms_until(accept_resume));
      const int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), timeout);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n && !srv.stopping_; ++i) {
        const uint64_t tag = events[static_cast<std::size_t>(i)].data.u64;
        if (tag == kListenTag) accept_all();
        else if (tag == kWakeTag) take_returned();
        else if (tag >= kFirstConn) on_event(tag, events[static_cast<std::size_t>(i)].events);
      }
      const auto now = Clock::now();
      while (!timers.empty() && timers.begin()->first <= now) {
        auto it = conns.find(timers.begin()->second);
        if (it == conns.end()) {
          timers.erase(timers.begin());
          continue;
        }
        on_timer(*it->second);
      }
      if (accept_paused && now >= accept_resume) resume_accept();
    }

    // Stop: no new requests; the workers finish the ones they serve (the handlers see the
    // server stopping and cancel their generations), then every connection is closed.
    for (auto& c : heavy.close()) close_conn(c);
    for (auto& c : light.close()) close_conn(c);
    for (auto& t : threads) t.join();
    for (auto& [id, c] : conns) close_conn(c);
    conns.clear();
    timers.clear();
    for (auto& c : returned) close_conn(c);
    returned.clear();
  }
};

FrontServer::FrontServer() { stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

FrontServer::~FrontServer() {
  shutdown();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void FrontServer::set_front_options(FrontOptions options) {
  options_ = std::move(options);
  set_keep_alive_timeout(static_cast<time_t>(std::max(1.0, options_.idle_timeout_s)));
  set_keep_alive_max_count(static_cast<size_t>(std::max(1, options_.max_requests_per_connection)));
  set_payload_max_length(options_.max_body_bytes);
}

int FrontServer::bind_front(const std::string& host, int port) {
  int bound = -1;
  if (port == 0) {
    bound = bind_to_any_port(host);
  } else if (bind_to_port(host, port)) {
    bound = port;
  }
  if (bound <= 0) return -1;
  listen_fd_ = svr_sock_;
  ::listen(listen_fd_, 1024);  // httplib listens with a backlog of 5
  return bound;
}

bool FrontServer::process_one(httplib::Stream& strm, bool close_connection, bool& connection_closed) {
  return process_request(strm, close_connection, connection_closed, nullptr);
}

void FrontServer::serve() {
  if (stopping_ || listen_fd_ < 0) return;
  Loop loop(*this, listen_fd_);
  loop.run();
}

void FrontServer::shutdown() {
  if (stopping_.exchange(true)) return;
  const uint64_t one = 1;
  if (stop_fd_ >= 0) (void)!::write(stop_fd_, &one, sizeof(one));
  // httplib's streaming writers stop once the server socket is invalid; the listening
  // descriptor itself is closed by the destructor (the loop may still be polling it).
  const socket_t s = svr_sock_.exchange(INVALID_SOCKET);
  if (s != INVALID_SOCKET) ::shutdown(s, SHUT_RDWR);
}

}  // namespace nemotron::server
