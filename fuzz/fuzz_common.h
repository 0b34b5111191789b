#pragma once
// Shared by the fuzz targets (fuzz/fuzz_*.cpp): what counts as a finding besides a sanitizer
// report. A target catches the errors its code documents (nemotron::Error, server::ApiError);
// any other exception escapes to libFuzzer, which reports it as a crash ("uncaught exception").
// FUZZ_CHECK aborts with a message when an invariant the code claims does not hold.
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(cond, ...)                                                         \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, "" __VA_ARGS__);                                           \
      std::fprintf(stderr, "\n");                                                     \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

namespace nemotron::fuzz {

// A private scratch directory (one per process: libFuzzer's -jobs/-workers run several).
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string tmpl = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/nemotron-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    return tmpl;
  }();
  return dir;
}

inline void write_file(const std::string& path, const void* data, std::size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

inline void write_file(const std::string& path, const std::string& text) { write_file(path, text.data(), text.size()); }

}  // namespace nemotron::fuzz
