#pragma once
// Environment switches (A/B runs; README's table). Read them once, e.g.
//   static const bool on = !env_equals("NEMOTRON_X", "0");
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace nemotron {

// Whether the environment variable `name` is set to exactly `value`.
inline bool env_equals(const char* name, std::string_view value) {
  const char* e = std::getenv(name);
  return e != nullptr && value == e;
}

// The environment variable `name` as an integer (std::atoll's reading), or `fallback` when unset.
inline int64_t env_int(const char* name, int64_t fallback) {
  const char* e = std::getenv(name);
  return e != nullptr ? std::atoll(e) : fallback;
}

}  // namespace nemotron
