#pragma once
// Helpers for the GPU kernel tests: device buffers, random BF16-rounded inputs, poisoning,
// and an error report against the CPU reference.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/numeric.h"
#include "util/error.h"

namespace nemotron::testing {

#define CUDA_OK(expr)                                                                  \
  do {                                                                                 \
    const cudaError_t e_ = (expr);                                                     \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_);             \
  } while (0)

// Skips the test body cleanly (a failure, not a skip) when no device is present: these tests
// are only run on the GPU machine.
inline bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) : n_(n) {
    if (n && cudaMalloc(&p_, n * sizeof(T)) != cudaSuccess) p_ = nullptr;
  }
  explicit DeviceBuffer(const std::vector<T>& h) : DeviceBuffer(h.size()) { upload(h); }
  ~DeviceBuffer() { if (p_) cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return static_cast<T*>(p_); }
  std::size_t size() const { return n_; }
  void upload(const std::vector<T>& h) { cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice); }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
  // 0xFF bytes: NaN as fp32 and as BF16, -1 as int32: any element left unwritten shows.
  void poison() { cudaMemset(p_, 0xFF, n_ * sizeof(T)); }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
};

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  float normal(float sd = 1.0f) { return std::normal_distribution<float>(0.0f, sd)(g); }
  float uniform(float a, float b) { return std::uniform_real_distribution<float>(a, b)(g); }
  uint32_t bits() { return static_cast<uint32_t>(g()); }
  // Random BF16 values (never zero-filled): returns bits, `f` gets the exact floats.
  std::vector<uint16_t> bf16(std::size_t n, float sd, std::vector<float>* f) {
    std::vector<uint16_t> b(n);
    if (f) f->resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      b[i] = kernels::float_to_bf16(normal(sd));
      if (f) (*f)[i] = kernels::bf16_to_float(b[i]);
    }
    return b;
  }
};

inline std::vector<float> bf16_to_f32(const std::vector<uint16_t>& b) {
  std::vector<float> f(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) f[i] = kernels::bf16_to_float(b[i]);
  return f;
}

// Compares got against ref elementwise: |got - ref| <= tol[i] (NaN or Inf in got fails, which
// also catches elements left poisoned). Prints max / mean absolute error and the max ratio
// error/tolerance. Returns the number of failing elements (the first few are printed).
inline std::size_t report(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref,
                          const std::vector<float>& tol) {
  double sum = 0, max_err = 0, max_ratio = 0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (!std::isfinite(got[i]) || !(e <= tol[i])) {
      if (bad < 5) ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " ref " << ref[i] << " tol " << tol[i];
      ++bad;
      continue;
    }
    sum += e;
    max_err = std::max(max_err, e);
    if (tol[i] > 0) max_ratio = std::max(max_ratio, e / tol[i]);
  }
  std::printf("[ max_err ] %-48s n=%zu max_abs_err=%.3g mean_abs_err=%.3g max_err/tol=%.3f bad=%zu\n", what.c_str(),
              ref.size(), max_err, sum / static_cast<double>(ref.size()), max_ratio, bad);
  return bad;
}

inline std::vector<float> uniform_tol(std::size_t n, float abs_tol, const std::vector<float>& ref, float rel_tol) {
  std::vector<float> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = abs_tol + rel_tol * std::fabs(ref[i]);
  return t;
}

}  // namespace nemotron::testing
