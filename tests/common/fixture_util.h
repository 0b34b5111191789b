#pragma once
// Shared test helpers (tests/common). Comparing our forward passes with the transformers reference fixtures
// (tests/data/fixtures/<name>/expected.safetensors; see that folder's README).
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model/checkpoint/safetensors.h"

namespace nemotron::testing {

inline std::string fixture_dir(const std::string& name) { return std::string(NEMOTRON_TEST_DATA) + "/fixtures/" + name; }

// Test-name suffix for a fixture parameter (GoogleTest names allow no '-'): "nano-moe" -> "nano_moe".
struct FixtureParamName {
  template <class ParamInfo>
  std::string operator()(const ParamInfo& info) const {
    std::string s = info.param;
    for (char& c : s)
      if (c == '-') c = '_';
    return s;
  }
};

class Expected {
 public:
  explicit Expected(const std::string& fixture)
      : file_(model::SafetensorsFile::open(fixture_dir(fixture) + "/expected.safetensors")) {}
  bool has(const std::string& name) const { return file_->tensors().count(name) > 0; }
  const model::TensorInfo& info(const std::string& name) const { return file_->tensors().at(name); }
  std::vector<float> f32(const std::string& name) const {
    const auto& t = info(name);
    std::vector<float> v(static_cast<std::size_t>(t.numel()));
    std::memcpy(v.data(), t.data, t.nbytes);
    return v;
  }
  std::vector<int32_t> ids(const std::string& name) const {
    const auto& t = info(name);
    std::vector<int32_t> v(static_cast<std::size_t>(t.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) {
      int64_t x;
      std::memcpy(&x, t.data + 8 * i, 8);
      v[i] = static_cast<int32_t>(x);
    }
    return v;
  }
  int num_prompts() const {
    int n = 0;
    while (has("p" + std::to_string(n) + ".input_ids")) ++n;
    return n;
  }

 private:
  std::unique_ptr<model::SafetensorsFile> file_;
};

inline float max_abs_diff(const float* a, const float* b, std::size_t n) {
  float m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;  // NaN propagates as "large"
  }
  return m;
}

inline float max_abs(const std::vector<float>& a) {
  float m = 0;
  for (float x : a) m = std::max(m, std::fabs(x));
  return m;
}

}  // namespace nemotron::testing
