#pragma once
// OpenAI-shaped API errors. Every failure a client can cause becomes an ApiError with the
// HTTP status it maps to, and is answered as
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature" | null,
//              "code": "invalid_value" | null}}
// `type` follows OpenAI: invalid_request_error (400/404/405/413), authentication_error (401),
// server_error (500), service_unavailable_error (503). `code` is a short machine-readable
// reason (see docs/serving.md for the list).
#include <stdexcept>
#include <string>

#include "util/json.h"

namespace nemotron::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "invalid_value")
      : std::runtime_error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string param_, code_;
};

// A 400 naming the offending parameter.
inline ApiError bad_param(const std::string& param, const std::string& message,
                          const std::string& code = "invalid_value") {
  return ApiError(400, message, param, code);
}

// The same error for an API that names the field `to` where the chat parser says `from`
// (param, and the quoted name in the message).
ApiError renamed(const ApiError& e, const std::string& from, const std::string& to);

// The error body for a status (empty param/code become null).
Json error_body(int status, const std::string& message, const std::string& param = "",
                const std::string& code = "");
inline Json error_body(const ApiError& e) { return error_body(e.status(), e.what(), e.param(), e.code()); }

}  // namespace nemotron::server
