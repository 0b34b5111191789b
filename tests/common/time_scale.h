#pragma once
// Wall-clock bounds in tests (guards against hangs and super-linear blow-ups) are set for native
// runs. NEMOTRON_TEST_TIME_SCALE stretches them where the tests run slower for a known reason:
// tests/CMakeLists.txt sets it for test binaries run under an emulator (qemu-user).
#include <cstdlib>

namespace nemotron::testing {

inline double time_scale() {
  const char* s = std::getenv("NEMOTRON_TEST_TIME_SCALE");
  const double v = s ? std::atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

}  // namespace nemotron::testing
