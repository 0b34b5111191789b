#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>

#include <algorithm>
#include <cctype>
#include <iterator>
#include <ctime>
#include <exception>

#include "server/anthropic.h"
#include "server/http_internal.h"
#include "server/request.h"
#include "util/error.h"

namespace nemotron::server {
namespace {

using httplib::Request;
using httplib::Response;
using Handler = void (*)(HttpServer::State&, ModelService&, const Request&, Response&);

bool needs_key(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize";
}

// Constant-time comparison (the key's length is not secret).
bool same_key(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// The Anthropic routes also take the key as `x-api-key` (what Anthropic clients send).
bool authorized(const HttpOptions& o, const Request& req) {
  if (o.api_key.empty() || !needs_key(req.path)) return true;
  const std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (auth.rfind(prefix, 0) == 0 && same_key(auth.substr(prefix.size()), o.api_key)) return true;
  const std::string x_api_key = anthropic_path(req.path) ? req.get_header_value("x-api-key") : "";
  return !x_api_key.empty() && same_key(x_api_key, o.api_key);
}

bool iequals(const std::string& a, const std::string& b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// The host of a Host header value, lower-case, without its port: "[::1]:8080" -> "[::1]",
// "Example.com:80" -> "example.com". Empty when it is not host[:port].
std::string host_of(const std::string& value) {
  std::string v = lower(trimmed(value));
  std::string port;
  if (!v.empty() && v.front() == '[') {
    const std::size_t end = v.find(']');
    if (end == std::string::npos) return "";
    port = v.substr(end + 1);
    v.resize(end + 1);
  } else if (const std::size_t colon = v.find(':'); colon != std::string::npos) {
    port = v.substr(colon);
    v.resize(colon);
  }
  if (!port.empty() && (port.front() != ':' || !all_digits(port.substr(1)))) return "";
  return v;
}

// A host as a Host header gives it (lower-case, no port): a name, an IPv4 address, or an IPv6
// address in brackets.
bool host_name_or_address(const std::string& h) {
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') {
    in6_addr a6{};
    return inet_pton(AF_INET6, h.substr(1, h.size() - 2).c_str(), &a6) == 1;
  }
  return !h.empty() && h.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-_") == std::string::npos;
}

// A refused Host header: what the server serves, and the flag that adds the name.
ApiError host_refused(const HttpOptions& o, const std::string& host) {
  const std::string name = host_of(host);
  if (name.empty())
    return ApiError(403, "The Host header '" + host + "' is not allowed: it is not host[:port]", "",
                    "host_not_allowed");
  const std::string served =
      is_loopback_host(o.host)
          ? "this server is bound to " + o.host + " and serves requests addressed to localhost, 127.0.0.1 or [::1]" +
                (o.allowed_hosts.empty() ? std::string() : " or to a host in --allowed-hosts")
          : std::string("this server serves requests addressed to loopback names or to a host in --allowed-hosts");
  return ApiError(403,
                  "The Host header '" + host + "' is not allowed: " + served +
                      " (a guard against DNS rebinding); start the server with --allowed-hosts " + name +
                      " to serve it",
                  "", "host_not_allowed");
}

bool origin_allowed(const HttpOptions& o, const std::string& origin) {
  for (const std::string& a : o.allowed_origins)
    if (a == "*" || iequals(a, origin)) return true;
  return false;
}

// A CORS preflight of an allowed origin (the Access-Control-Allow-Origin header is added to
// every response by the post-routing handler).
void preflight(const Request& req, Response& res) {
  res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
  std::string asked = req.get_header_value("Access-Control-Request-Headers");
  const bool plain = asked.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ") ==
                     std::string::npos;
  if (asked.empty() || !plain || asked.size() > 4096)
    asked = "Authorization, Content-Type, x-api-key, anthropic-version, anthropic-beta, OpenAI-Beta";
  res.set_header("Access-Control-Allow-Headers", asked);
  res.set_header("Access-Control-Max-Age", "600");
  // Chrome's Private Network Access: a public page asking for this (loopback) server.
  if (iequals(req.get_header_value("Access-Control-Request-Private-Network"), "true"))
    res.set_header("Access-Control-Allow-Private-Network", "true");
  res.set_header("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
}

// Whether the request carries a body (httplib reads a POST without a length to the end of the
// stream).
bool has_body(const Request& req) {
  const std::string length = req.get_header_value("Content-Length");
  if (!length.empty()) return length.find_first_not_of('0') != std::string::npos;
  if (req.has_header("Transfer-Encoding")) return true;
  return req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
}

std::string size_text(std::size_t bytes) {
  if (bytes % (std::size_t{1} << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

ApiError too_large(const HttpOptions& o) {
  return ApiError(413, "The request body is too large: the limit is " + size_text(o.max_body_bytes) +
                           " (counted after decoding a chunked body)",
                  "", "payload_too_large");
}

void handle_models(HttpServer::State&, ModelService& s, const Request&, Response& res) {
  static const long long created = static_cast<long long>(std::time(nullptr));
  // `root` is the served name too: no response names a path of this machine.
  Json model = {{"id", s.name()},         {"object", "model"}, {"created", created},
                {"owned_by", "nemotron"}, {"root", s.name()},  {"max_model_len", s.max_model_len()}};
  send_json(res, 200, {{"object", "list"}, {"data", Json::array({model})}});
}

void handle_tokenize(HttpServer::State&, ModelService& s, const Request& req, Response& res) {
  const TokenizeRequest r = parse_tokenize_request(parse_body(req.body));
  s.check_model(r.model);
  std::vector<int32_t> ids;
  if (r.is_chat) {
    const ChatPrompt p = s.render_chat(r.chat);
    ids = r.add_special_tokens ? s.tokenizer().encode(p.text, true, true) : p.ids;
  } else {
    ids = s.tokenizer().encode(r.prompt, r.add_special_tokens, true);
  }
  Json body = {{"count", ids.size()}, {"max_model_len", s.max_model_len()}, {"tokens", ids}};
  if (r.return_token_strs) {
    Json strs = Json::array();
    for (int32_t id : ids) strs.push_back(s.tokenizer().id_to_token(id));
    body["token_strs"] = strs;
  }
  send_json(res, 200, body);
}

void handle_detokenize(HttpServer::State&, ModelService& s, const Request& req, Response& res) {
  const DetokenizeRequest r = parse_detokenize_request(parse_body(req.body));
  s.check_model(r.model);
  const int64_t vocab = s.tokenizer().vocab_size();
  for (int32_t id : r.tokens)
    if (id >= vocab)
      throw bad_param("tokens", "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                    std::to_string(vocab) + ")");
  send_json(res, 200, {{"prompt", s.tokenizer().decode(r.tokens)}});
}

void handle_metrics(HttpServer::State&, ModelService& s, const Request&, Response& res) {
  res.status = 200;
  res.set_content(s.metrics().render(s.engine().stats()), "text/plain; version=0.0.4; charset=utf-8");
}

// The routes: a path, or a prefix followed by one path segment (an id), and a handler per method.
struct Route {
  const char* path;
  bool id_segment;
  Handler get, post, del;
};

const Route kRoutes[] = {
    {"/v1/chat/completions", false, nullptr, handle_chat, nullptr},
    {"/v1/completions", false, nullptr, handle_completion, nullptr},
    {"/v1/messages", false, nullptr, handle_messages, nullptr},
    {"/v1/messages/count_tokens", false, nullptr, handle_count_tokens, nullptr},
    {"/v1/models", false, handle_models, nullptr, nullptr},
    {"/tokenize", false, nullptr, handle_tokenize, nullptr},
    {"/detokenize", false, nullptr, handle_detokenize, nullptr},
    {"/metrics", false, handle_metrics, nullptr, nullptr},
    {"/v1/responses", false, nullptr, handle_responses_create, nullptr},
    {"/v1/responses/", true, handle_responses_get, nullptr, handle_responses_delete},
};

const Route* find_route(const std::string& path) {
  for (const Route& r : kRoutes) {
    const std::string p = r.path;
    if (!r.id_segment ? path == p
                      : path.size() > p.size() && path.compare(0, p.size(), p) == 0 &&
                            path.find('/', p.size()) == std::string::npos)
      return &r;
  }
  return nullptr;
}

std::string allowed_methods(const Route& r) {
  std::string a;
  for (auto [h, m] : {std::pair{r.get, "GET"}, std::pair{r.post, "POST"}, std::pair{r.del, "DELETE"}})
    if (h) a += (a.empty() ? "" : ", ") + std::string(m);
  return a;
}

void method_not_allowed(const Request& req, Response& res, const std::string& allowed) {
  res.set_header("Allow", allowed);
  send_error(req, res, ApiError(405, "Method not allowed; use " + allowed, "", "method_not_allowed"));
}

// Reads the request body through httplib's content reader, at most max_body_bytes of it
// (counted after the chunked coding; compressed bodies never get here). False, with the error
// response set, when it cannot.
bool read_body(const HttpOptions& o, const Request& req, Response& res, const httplib::ContentReader& reader) {
  std::string body;
  bool over = false;
  const bool ok = reader([&](const char* data, std::size_t n) {
    if (body.size() + n > o.max_body_bytes) {
      over = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  RequestContext* ctx = current_request();
  if (!ok) {
    const ReadFailure f = ctx ? ctx->read_failure : ReadFailure::kNone;
    if (ctx) ctx->close = true;
    if (over || f == ReadFailure::kTooLarge) send_error(req, res, too_large(o));
    else if (f == ReadFailure::kTimeout)
      send_error(req, res, ApiError(408, "The request body was not received in time", "", "request_timeout"));
    else
      send_error(req, res, ApiError(400, "Could not read the request body (malformed chunked coding, or the "
                                         "connection closed early)", "", "bad_request"));
    return false;
  }
  if (ctx) ctx->body_read = true;
  // The request object is httplib's own (not const there); the routes read req.body.
  const_cast<Request&>(req).body = std::move(body);
  return true;
}

// The media type of a Content-Type value, lower-case, without parameters.
std::string media_type(const std::string& content_type) {
  std::string t = trimmed(content_type.substr(0, content_type.find(';')));
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

void dispatch(HttpServer::State& st, const Request& req, Response& res, const httplib::ContentReader* reader) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (req.path == "/health") {
    if (!get) return method_not_allowed(req, res, "GET");
    if (st.service.load() && !st.stopping) send_json(res, 200, {{"status", "ok"}});
    else send_json(res, 503, {{"status", st.stopping ? "stopping" : "loading"}});
    return;
  }
  const Route* route = find_route(req.path);
  if (!route) return send_error(req, res, ApiError(404, "Not found", "", "not_found"));
  const Handler h = get ? route->get : req.method == "POST" ? route->post : req.method == "DELETE" ? route->del : nullptr;
  if (!h) return method_not_allowed(req, res, allowed_methods(*route));
  if (req.method == "POST") {
    const std::string given = req.get_header_value("Content-Type");
    if (media_type(given) != "application/json")
      return send_error(req, res,
                        ApiError(415,
                                 "Content-Type must be application/json" +
                                     (given.empty() ? std::string(" (none given; with curl: -H 'Content-Type: application/json')")
                                                    : " (got '" + given + "')"),
                                 "", "unsupported_media_type"));
  }
  ModelService* s = st.service.load();
  if (!s || st.stopping)
    return send_error(req, res,
                      ApiError(503, s ? "The server is shutting down" : "The model is loading", "", "unavailable"));
  if (reader && !read_body(st.options, req, res, *reader)) return;
  try {
    h(st, *s, req, res);
  } catch (const ApiError& e) {
    send_error(req, res, e);
  } catch (const Error& e) {
    send_error(req, res, ApiError(400, e.what()));
  } catch (const std::exception& e) {
    send_error(req, res, ApiError(500, std::string("internal error: ") + e.what(), "", "internal_error"));
  }
}

}  // namespace

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

std::vector<std::string> parse_allowed_origins(const std::string& list) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= list.size()) {
    std::size_t end = list.find(',', at);
    if (end == std::string::npos) end = list.size();
    std::string o = list.substr(at, end - at);
    at = end + 1;
    while (!o.empty() && std::isspace(static_cast<unsigned char>(o.front()))) o.erase(o.begin());
    while (!o.empty() && std::isspace(static_cast<unsigned char>(o.back()))) o.pop_back();
    if (o.empty()) continue;
    if (o != "*" && o != "null") {
      const std::size_t scheme = o.find("://");
      const bool ok = scheme != std::string::npos && scheme > 0 && o.size() > scheme + 3 &&
                      o.find_first_of("/?#", scheme + 3) == std::string::npos;
      if (!ok)
        throw Error("--allowed-origins: '" + o + "' is not an origin (scheme://host[:port], without a path; or *)");
    }
    out.push_back(o);
  }
  return out;
}

std::vector<std::string> parse_allowed_hosts(const std::string& list) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= list.size()) {
    std::size_t end = list.find(',', at);
    if (end == std::string::npos) end = list.size();
    std::string h = lower(trimmed(list.substr(at, end - at)));
    at = end + 1;
    if (h.empty()) continue;
    in6_addr a6{};
    if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) h = "[" + h + "]";  // a bare IPv6 address, as Host writes it
    if (h != "*" && !host_name_or_address(h))
      throw Error("--allowed-hosts: '" + h +
                  "' is not a host name or address (no scheme, port or path; an IPv6 address in brackets; or *)");
    out.push_back(h);
  }
  return out;
}

bool host_allowed(const std::string& bind_host, const std::vector<std::string>& allowed,
                  const std::string& host_header) {
  if (trimmed(host_header).empty()) return true;
  if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) return true;
  if (allowed.empty() && !is_loopback_host(bind_host)) return true;
  const std::string name = host_of(host_header);
  if (name.empty()) return false;
  return is_loopback_host(name) || std::find(allowed.begin(), allowed.end(), name) != allowed.end();
}

bool is_loopback_host(const std::string& host) {
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  return false;
}

HttpServer::HttpServer(HttpOptions options) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  State* st = state_.get();
  st->responses.configure(st->options.responses_store_max, st->options.responses_store_bytes);
  FrontServer& http = st->http;
  FrontOptions fo;
  fo.workers = st->options.threads;
  fo.max_body_bytes = st->options.max_body_bytes;
  fo.header_timeout_s = st->options.header_timeout_s;
  fo.write_timeout_s = st->options.write_timeout_s;
  fo.max_connections_per_ip = st->options.max_connections_per_ip;
  fo.error_body = [](int status, const std::string& path, const std::string& message) {
    const char* code = status == 408 ? "request_timeout" : status == 429 ? "too_many_connections"
                     : status == 431 ? "request_header_too_large" : status == 503 ? "server_busy" : "";
    const Json body = anthropic_path(path) ? anthropic_error_body(status, message) : error_body(status, message, "", code);
    return body.dump(-1, ' ', false, Json::error_handler_t::replace);
  };
  // The loop's own answers (408, 429, 431, 503) count in nemotron:http_requests_total too.
  fo.on_response = [st](int status) {
    if (ModelService* s = st->service.load()) s->metrics().count_http(status);
  };
  http.set_front_options(std::move(fo));

  // Before routing, in this order: the Host (400 for two, 403), the origin (403), CORS
  // preflights, the API key (401), then what can be refused without reading the body: a
  // compressed body (415), a declared length over the limit (413). The body is never read for
  // these; the connection is closed after.
  http.set_pre_routing_handler([st](const Request& req, Response& res) {
    if (req.get_header_value_count("Host") > 1) {
      send_error(req, res, ApiError(400, "More than one Host header", "", "bad_request"));
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string host = req.get_header_value("Host");
    if (!host_allowed(st->options.host, st->options.allowed_hosts, host)) {
      send_error(req, res, host_refused(st->options, host));
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string origin = req.get_header_value("Origin");
    if (!origin.empty() && !origin_allowed(st->options, origin)) {
      send_error(req, res,
                 ApiError(403,
                          "Requests from the web origin '" + origin +
                              "' are not allowed: start the server with --allowed-origins " + origin +
                              " to let pages from it call the API",
                          "", "origin_not_allowed"));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method == "OPTIONS") {
      res.status = 204;
      res.set_header("Allow", "GET, POST, DELETE, OPTIONS");
      if (!origin.empty()) preflight(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!authorized(st->options, req)) {
      const bool anthropic = anthropic_path(req.path);
      const bool none = req.get_header_value("Authorization").empty() &&
                        (!anthropic || req.get_header_value("x-api-key").empty());
      send_error(req, res,
                 ApiError(401,
                          !none ? "Incorrect API key provided"
                          : anthropic ? "Missing API key: pass it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'"
                                      : "Missing API key: pass it as 'Authorization: Bearer <key>'",
                          "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (has_body(req)) {
      const std::string encoding = trimmed(req.get_header_value("Content-Encoding"));
      if (!encoding.empty() && !iequals(encoding, "identity")) {
        send_error(req, res,
                   ApiError(415,
                            "Content-Encoding '" + encoding +
                                "' is not supported: send the request body uncompressed (compressed bodies are "
                                "refused so that no body can inflate past the size limit)",
                            "", "unsupported_content_encoding"));
        return httplib::Server::HandlerResponse::Handled;
      }
      const std::string length = req.get_header_value("Content-Length");
      if (!length.empty() && length.find_first_not_of("0123456789") != std::string::npos) {
        send_error(req, res, ApiError(400, "Invalid Content-Length '" + length + "'", "", "bad_request"));
        return httplib::Server::HandlerResponse::Handled;
      }
      if (!length.empty() && (length.size() > 18 || std::stoull(length) > st->options.max_body_bytes)) {
        send_error(req, res, too_large(st->options));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Fills the error body for statuses httplib produces itself (a malformed request: 400 ...).
  http.set_error_handler(httplib::Server::HandlerWithResponse([st](const Request& req, Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    static const char* const kMethods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    const bool known = std::find(std::begin(kMethods), std::end(kMethods), req.method) != std::end(kMethods);
    switch (res.status) {
      case 400:
        if (!req.method.empty() && !known) {
          res.set_header("Allow", "GET, POST, DELETE, OPTIONS");
          send_error(req, res, ApiError(405, "Method '" + req.method + "' is not supported", "", "method_not_allowed"));
        } else {
          send_error(req, res,
                     ApiError(400, "Malformed HTTP request (request line, headers or chunked body)", "", "bad_request"));
        }
        break;
      case 404: send_error(req, res, ApiError(404, "Not found", "", "not_found")); break;
      case 413: send_error(req, res, too_large(st->options)); break;
      case 414: send_error(req, res, ApiError(414, "The request URI is too long", "", "uri_too_long")); break;
      default: send_error(req, res, ApiError(res.status, "HTTP error " + std::to_string(res.status), "", "")); break;
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  // Every response: metrics, CORS headers for an allowed origin, and "Connection: close" when
  // the request's body was not read to its end (what is left of it must not be taken for the
  // next request).
  http.set_post_routing_handler([st](const Request& req, Response& res) {
    if (ModelService* s = st->service.load()) s->metrics().count_http(res.status);
    const std::string origin = req.get_header_value("Origin");
    if (!origin.empty() && origin_allowed(st->options, origin)) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
    }
    if (RequestContext* ctx = current_request()) {
      if (!ctx->body_read && has_body(req)) ctx->close = true;
      if (ctx->close) res.set_header("Connection", "close");
    }
  });

  // One catch-all per method; dispatch() routes by path (404 / 405 / the handler). Methods
  // with a body take it through the content reader, so that dispatch reads it itself, bounded.
  http.Get(".*", [st](const Request& req, Response& res) { dispatch(*st, req, res, nullptr); });
  http.Options(".*", [st](const Request& req, Response& res) { dispatch(*st, req, res, nullptr); });
  auto with_body = [st](const Request& req, Response& res, const httplib::ContentReader& reader) {
    dispatch(*st, req, res, &reader);
  };
  http.Post(".*", with_body);
  http.Put(".*", with_body);
  http.Patch(".*", with_body);
  http.Delete(".*", with_body);
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  const int port = state_->http.bind_front(state_->options.host, state_->options.port);
  if (port <= 0) {
    if (state_->options.port == 0) throw Error("cannot bind " + state_->options.host);
    throw Error("cannot bind " + state_->options.host + ":" + std::to_string(state_->options.port) +
                " (address in use or not available)");
  }
  state_->bound_port = port;
}

int HttpServer::port() const { return state_->bound_port; }

void HttpServer::listen() { state_->http.serve(); }

void HttpServer::stop() {
  state_->stopping = true;
  state_->http.shutdown();
}

void HttpServer::set_service(ModelService* service) { state_->service = service; }

}  // namespace nemotron::server
