#pragma once
// Internals shared by the HTTP route files (not used outside src/server).
#include <httplib.h>

#include <atomic>

#include "server/api_error.h"
#include "server/http_front.h"
#include "server/http_server.h"
#include "server/responses.h"
#include "server/service.h"

namespace nemotron::server {

struct HttpServer::State {
  HttpOptions options;
  FrontServer http;
  std::atomic<ModelService*> service{nullptr};
  std::atomic<bool> stopping{false};
  int bound_port = 0;
  ResponseStore responses;  // /v1/responses with store (bounded by options.responses_store_*)
};

void send_json(httplib::Response& res, int status, const Json& body);
inline void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status(), error_body(e)); }

// The Anthropic routes (/v1/messages and below) answer every error -- authentication, 404,
// 405, 413, 503 included -- in Anthropic's shape (anthropic.h); every other path in OpenAI's.
bool anthropic_path(const std::string& path);
void send_error(const httplib::Request& req, httplib::Response& res, const ApiError& e);

// POST /v1/chat/completions and /v1/completions (http_generate.cpp).
void handle_chat(HttpServer::State& state, ModelService& service, const httplib::Request& req, httplib::Response& res);
void handle_completion(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                       httplib::Response& res);

// POST /v1/responses, GET and DELETE /v1/responses/{id} (http_responses.cpp).
void handle_responses_create(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                             httplib::Response& res);
void handle_responses_get(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                          httplib::Response& res);
void handle_responses_delete(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                             httplib::Response& res);
// POST /v1/messages and /v1/messages/count_tokens (http_anthropic.cpp).
void handle_messages(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                     httplib::Response& res);
void handle_count_tokens(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                         httplib::Response& res);

}  // namespace nemotron::server
