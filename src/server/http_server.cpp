#include "server/http_server.h"

#include <ctime>
#include <exception>

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

void handle_models(HttpServer::State&, ModelService& s, const Request&, Response& res) {
  static const long long created = static_cast<long long>(std::time(nullptr));
  Json model = {{"id", s.name()},          {"object", "model"},    {"created", created},
                {"owned_by", "nemotron"},  {"root", s.model_dir()}, {"max_model_len", s.max_model_len()}};
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

}  // namespace

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

HttpServer::HttpServer(HttpOptions options) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  State* st = state_.get();
  st->responses.configure(st->options.responses_store_max, st->options.responses_store_bytes);
  httplib::Server& http = st->http;
  const int threads = st->options.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(st->options.max_body_bytes);
  http.set_read_timeout(60, 0);
  http.set_write_timeout(60, 0);

  // Authentication and readiness before routing.
  // The Anthropic routes also take the key as `x-api-key` (what Anthropic clients send).
  http.set_pre_routing_handler([st](const Request& req, Response& res) {
    if (st->options.api_key.empty() || !needs_key(req.path)) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.rfind(prefix, 0) == 0 && same_key(auth.substr(prefix.size()), st->options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    const bool anthropic = anthropic_path(req.path);
    const std::string x_api_key = anthropic ? req.get_header_value("x-api-key") : "";
    if (!x_api_key.empty() && same_key(x_api_key, st->options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    const bool none = auth.empty() && x_api_key.empty();
    send_error(req, res,
               ApiError(401,
                        !none ? "Incorrect API key provided"
                        : anthropic ? "Missing API key: pass it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'"
                                    : "Missing API key: pass it as 'Authorization: Bearer <key>'",
                        "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Fills the OpenAI error body for statuses httplib produces itself (404, 413, 400 ...).
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    switch (res.status) {
      case 404: send_error(req, res, ApiError(404, "Not found", "", "not_found")); break;
      case 413: send_error(req, res, ApiError(413, "The request body is too large", "", "payload_too_large")); break;
      default: send_error(req, res, ApiError(res.status, "HTTP error " + std::to_string(res.status), "", "")); break;
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_post_routing_handler([st](const Request&, Response& res) {
    if (ModelService* s = st->service.load()) s->metrics().count_http(res.status);
  });

  // Wraps a handler: 503 while loading, exceptions -> error JSON.
  auto wrap = [st](Handler h) {
    return [st, h](const Request& req, Response& res) {
      ModelService* s = st->service.load();
      if (!s || st->stopping) {
        send_error(req, res,
                   ApiError(503, s ? "The server is shutting down" : "The model is loading", "", "unavailable"));
        return;
      }
      try {
        h(*st, *s, req, res);
      } catch (const ApiError& e) {
        send_error(req, res, e);
      } catch (const Error& e) {
        send_error(req, res, ApiError(400, e.what()));
      } catch (const std::exception& e) {
        send_error(req, res, ApiError(500, std::string("internal error: ") + e.what(), "", "internal_error"));
      }
    };
  };
  auto method_not_allowed = [](const char* allowed) {
    return [allowed](const Request& req, Response& res) {
      res.set_header("Allow", allowed);
      send_error(req, res, ApiError(405, std::string("Method not allowed; use ") + allowed, "", "method_not_allowed"));
    };
  };
  auto route = [&](const char* path, bool post, Handler h) {
    if (post) http.Post(path, wrap(h));
    else http.Get(path, wrap(h));
    const char* allowed = post ? "POST" : "GET";
    if (post) http.Get(path, method_not_allowed(allowed));
    else http.Post(path, method_not_allowed(allowed));
    http.Put(path, method_not_allowed(allowed));
    http.Delete(path, method_not_allowed(allowed));
    http.Patch(path, method_not_allowed(allowed));
  };
  route("/v1/chat/completions", true, handle_chat);
  route("/v1/completions", true, handle_completion);
  route("/v1/messages", true, handle_messages);
  route("/v1/messages/count_tokens", true, handle_count_tokens);
  route("/v1/models", false, handle_models);
  route("/tokenize", true, handle_tokenize);
  route("/detokenize", true, handle_detokenize);
  route("/metrics", false, handle_metrics);
  // The Responses API (http_responses.cpp).
  route("/v1/responses", true, handle_responses_create);
  const char* response_path = R"(/v1/responses/([^/]+))";
  http.Get(response_path, wrap(handle_responses_get));
  http.Delete(response_path, wrap(handle_responses_delete));
  http.Post(response_path, method_not_allowed("GET, DELETE"));
  http.Put(response_path, method_not_allowed("GET, DELETE"));
  http.Patch(response_path, method_not_allowed("GET, DELETE"));
  http.Get("/health", [st](const Request&, Response& res) {
    if (st->service.load() && !st->stopping) send_json(res, 200, {{"status", "ok"}});
    else send_json(res, 503, {{"status", st->stopping ? "stopping" : "loading"}});
  });
  http.Post("/health", method_not_allowed("GET"));
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  if (state_->options.port == 0) {
    state_->bound_port = state_->http.bind_to_any_port(state_->options.host);
    if (state_->bound_port <= 0) throw Error("cannot bind " + state_->options.host);
  } else {
    if (!state_->http.bind_to_port(state_->options.host, state_->options.port))
      throw Error("cannot bind " + state_->options.host + ":" + std::to_string(state_->options.port) +
                  " (address in use or not available)");
    state_->bound_port = state_->options.port;
  }
}

int HttpServer::port() const { return state_->bound_port; }

void HttpServer::listen() { state_->http.listen_after_bind(); }

void HttpServer::stop() {
  state_->stopping = true;
  state_->http.stop();
}

void HttpServer::set_service(ModelService* service) { state_->service = service; }

}  // namespace nemotron::server
