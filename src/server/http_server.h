#pragma once
// The OpenAI-compatible HTTP front end (cpp-httplib's parser and router behind FrontServer's
// connection loop, http_front.h). Routes:
//   POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
//   GET /metrics, POST /tokenize, POST /detokenize, POST /v1/responses,
//   GET / DELETE /v1/responses/{id}; Anthropic's POST /v1/messages and
//   POST /v1/messages/count_tokens.
// A known path with another method answers 405, an unknown path 404, a body over
// max_body_bytes 413, all with OpenAI-shaped error JSON (Anthropic-shaped under
// /v1/messages). With an API key, /v1/*, /tokenize and /detokenize need
// "Authorization: Bearer <key>" (401 otherwise; /v1/messages also takes "x-api-key: <key>");
// /health and /metrics stay open. Until set_service() is called (model loading) /health answers 503 and every
// other route 503 too.
// Hardening (docs/serving.md, "Limits and hardening"): a request whose Host header names neither
// this machine (bound to loopback) nor an allowed host is refused (403) before anything else
// (DNS rebinding); a request with an Origin header that is not in allowed_origins is refused
// (403) next, and allowed origins get CORS
// headers and preflights; POST bodies must be application/json (415); compressed bodies
// (Content-Encoding other than identity) are refused (415) before any byte is inflated; the
// body limit (413) holds for Content-Length, chunked and unknown-length bodies alike; slow or
// idle clients wait in the connection loop, not in a worker thread.
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace nemotron::server {

class ModelService;

// --allowed-origins: a comma-separated list of origins (scheme://host[:port], no path), or
// "*". Throws nemotron::Error naming an entry that is not an origin.
std::vector<std::string> parse_allowed_origins(const std::string& list);
// Whether `host` (a --host value) binds the loopback interface only.
bool is_loopback_host(const std::string& host);
// --allowed-hosts: a comma-separated list of host names or addresses (IPv6 in brackets), or
// "*"; lower-cased. Throws nemotron::Error naming an entry that is not a host (a scheme, path,
// port or space in it).
std::vector<std::string> parse_allowed_hosts(const std::string& list);
// Whether a request's Host header value may be served by a server bound to `bind_host` (a
// --host value) with `allowed` (parse_allowed_hosts) as the extra hosts. Empty (no Host
// header: HTTP/1.0) is allowed. Bound to loopback, only loopback names (localhost,
// 127.0.0.0/8, [::1]) and `allowed` are; bound beyond it, anything unless `allowed` is given.
// The port is not compared.
bool host_allowed(const std::string& bind_host, const std::vector<std::string>& allowed,
                  const std::string& host_header);

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::size_t max_body_bytes = std::size_t{32} << 20;
  int threads = 64;                   // worker threads for POST requests (generation)
  // Browser origins (scheme://host[:port]) allowed to call the API; "*" = any. A request with
  // another Origin header gets 403; requests without one (curl, SDKs) are not affected.
  std::vector<std::string> allowed_origins;
  // Host header values served besides loopback names (host_allowed); "*" = any.
  std::vector<std::string> allowed_hosts;
  double header_timeout_s = 5;        // a request head must arrive within this (else 408)
  double write_timeout_s = 30;        // a response that gets no room in the socket this long: closed
  std::size_t max_connections_per_ip = 256;  // per client address (IPv6: per /64); 0 = no limit
  // Stored /v1/responses (least recently used evicted beyond either bound; 0 = none stored).
  std::size_t responses_store_max = 1024;
  std::size_t responses_store_bytes = std::size_t{256} << 20;
};

class HttpServer {
 public:
  explicit HttpServer(HttpOptions options);
  ~HttpServer();
  // Binds host:port; throws nemotron::Error when it cannot.
  void bind();
  int port() const;
  // Serves until stop(); call from one thread.
  void listen();
  // Cancels in-flight generations (they finish with "abort") and stops listening. Safe to
  // call from any thread.
  void stop();
  void set_service(ModelService* service);

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace nemotron::server
