#pragma once
// Helpers for the GPU state tests (test_cuda_state*.cpp): CUDA backends with roll-back and
// snapshot room, the prompts of test_speculative.cpp, bitwise comparison of logits, and the
// near-tie check that tells a rounding-level divergence of two GPU token streams (different
// kernels along different chunkings) from a wrong state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "model/backend.h"

namespace nemotron::testing {

inline std::string state_model_path(const std::string& name) {
  return name == "demo" ? std::string(NEMOTRON_SOURCE_DIR) + "/models/demo" : fixture_dir(name);
}

// A CUDA backend: `slots` sequences, keep_states room for `spec` chunks of up to 17 rows,
// `prefix` bytes of snapshot pool.
inline std::unique_ptr<model::Backend> cuda_backend(const model::Model& m, int slots, int64_t prefix = 0,
                                                    int spec = 8, int64_t rows = 256) {
  model::BackendOptions o;
  o.device = "cuda";
  o.max_seqs = slots;
  o.max_step_tokens = rows;
  o.kv_tokens = 8192;
  o.max_spec_seqs = spec;
  o.max_spec_rows = 17;
  o.prefix_cache_bytes = prefix;
  return model::make_backend(m, o);
}

// The prompts of tests/runtime/test_speculative.cpp: the demo's chat prompt, or a fixture's
// prompt i, each with i extra tokens.
inline std::vector<int32_t> state_prompt(const std::string& name, int i) {
  if (name == "demo") {
    std::vector<int32_t> p{10,   4988, 1010, 11,   1010, 10,   3148, 1010, 7735, 2348, 1333, 1979, 1271, 2676,
                           1274, 1034, 3717, 1063, 11,   1010, 10,   1314, 1509, 1582, 1010, 12,   1010};
    for (int j = 0; j < i; ++j) p.push_back(1300 + 17 * j);
    return p;
  }
  const Expected ex(name);
  auto p = ex.ids("p" + std::to_string(i % ex.num_prompts()) + ".input_ids");
  for (int j = 0; j < i; ++j) p.push_back(static_cast<int32_t>(3 + 5 * j));
  return p;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

inline double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// Two GPU greedy token streams for `prompt` that should be equal (speculation or a prefix
// cache on and off) may part only where the two tokens are a near-tie of the logits there
// (the two runs take different kernels along different chunkings: the same logits up to
// rounding). Returns "" when they are equal or part at such a tie, else what is wrong. The
// logits at the parting point come from a fresh GPU backend fed prompt + the common prefix;
// a tie is a gap within kTieGap, or within twice what the same position differs by when
// computed as the first row of a 4-row chunk (measured there).
inline constexpr double kTieGap = 0.05;  // |l[a] - l[b]| / max |l|
inline std::string greedy_divergence(const model::Model& m, const std::vector<int32_t>& prompt,
                                     const std::vector<int32_t>& want, const std::vector<int32_t>& got) {
  std::size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  if (i == want.size() && i == got.size()) return "";
  if (i == want.size() || i == got.size())
    return "lengths differ (" + std::to_string(want.size()) + " vs " + std::to_string(got.size()) +
           ") with equal tokens up to " + std::to_string(i);
  std::vector<int32_t> ctx = prompt;
  ctx.insert(ctx.end(), want.begin(), want.begin() + static_cast<int64_t>(i));
  const auto b = cuda_backend(m, 1, 0, 0, static_cast<int64_t>(ctx.size()));
  const int s = b->acquire_slot();
  const auto out = b->step({{.slot = s, .ids = ctx.data(), .T = static_cast<int64_t>(ctx.size()),
                             .logits = model::LogitsOut::Last}});
  const auto& l = out[0].logits;
  double top = 1e-30;
  for (float v : l) top = std::max(top, std::fabs(static_cast<double>(v)));
  const double gap = std::fabs(static_cast<double>(l[static_cast<std::size_t>(want[i])]) -
                               l[static_cast<std::size_t>(got[i])]) / top;
  // The multi-row path's own difference at this point: the same position as the first row of
  // a 4-row chunk (as a verify chunk computes it: other GEMM / expert paths, other rounding).
  // Random-weight fixtures amplify such rounding into logit differences of several percent.
  double noise = 0;
  {
    const auto b2 = cuda_backend(m, 1, 0, 0, static_cast<int64_t>(ctx.size()) + 4);
    const int s2 = b2->acquire_slot();
    if (ctx.size() > 1)
      b2->step({{.slot = s2, .ids = ctx.data(), .T = static_cast<int64_t>(ctx.size()) - 1, .logits = model::LogitsOut::None}});
    const std::vector<int32_t> chunk{ctx.back(), want[i], want[i], want[i]};
    const auto o2 = b2->step({{.slot = s2, .ids = chunk.data(), .T = 4, .logits = model::LogitsOut::All}});
    for (std::size_t v = 0; v < l.size(); ++v)
      noise = std::max(noise, std::fabs(static_cast<double>(o2[0].logits[v]) - l[v]) / top);
  }
  const double allowed = std::max(kTieGap, 2 * noise);
  std::printf("[ tie ] streams part at token %zu (%d vs %d): relative logit gap %.3g (allowed %.3g: the larger of "
              "%.3g and twice the 4-row chunk's own difference %.3g)\n",
              i, want[i], got[i], gap, allowed, kTieGap, noise);
  if (gap <= allowed) return "";
  return "streams part at token " + std::to_string(i) + " (" + std::to_string(want[i]) + " vs " +
         std::to_string(got[i]) + ") where the logits are no near-tie (relative gap " + std::to_string(gap) + ")";
}

}  // namespace nemotron::testing
