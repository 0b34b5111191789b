#pragma once
// Errors raised while loading or validating input (files, config keys, tensors, requests).
// They carry a complete, human-readable message naming the thing at fault, and are caught
// at the edges (CLI main, HTTP handlers). Hot loops do not throw.
#include <stdexcept>
#include <string>

namespace nemotron {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace nemotron
