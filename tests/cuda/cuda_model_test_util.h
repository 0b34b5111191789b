#pragma once
// Helpers for the whole-model GPU tests: logit error measures, and Lockstep, which runs the
// GPU model and the CPU reference on the same tokens with the CPU forced to the GPU's MoE
// routing, after checking that every expert choice where the two differ is a near-tie on the
// CPU's own scores.
//
// Why: the fixtures' random routers have near-tied expert scores, and the GPU's BF16
// activations legitimately break some ties the other way; one flipped expert moves the
// logits far more than the BF16 error itself. Comparing against a CPU run that takes the
// same (legitimate) routes keeps the logit tolerance tight.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "model/cpu/cpu_forward.h"
#include "model/cuda/cuda_model.h"

namespace nemotron::testing {

using model::Config;
using model::CpuModel;
using model::CudaModel;
using model::Model;
using model::SequenceState;

inline constexpr double kLogitRelTol = 3e-2;  // BF16 activations through ~10 blocks vs an fp32 reference
inline constexpr double kSelfRelTol = 1e-2;   // GPU vs GPU along different kernel paths (GEMM vs GEMV)
// A GPU expert choice that differs from the CPU's own top-k is accepted when it is within
// kTieMargin * (the row's largest |selection score|) of the CPU's choice (check_route).
inline constexpr double kTieMargin = 2e-2;
// Flipped (block, row) routes may be at most this fraction of all (a systematic router bug
// flips nearly every row even when each flip is close).
inline constexpr double kMaxFlipFraction = 0.15;

// ||a - b|| / ||b|| over n values.
inline double rel_err(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Agreement {
  int compared = 0, agree = 0;
};

// Top-1 agreement over rows whose reference top-2 margin exceeds `margin`.
inline Agreement top1(const std::vector<float>& got, const std::vector<float>& ref, int64_t V, float margin) {
  Agreement a;
  for (std::size_t r = 0; r * V < ref.size(); ++r) {
    const float* rr = ref.data() + r * V;
    std::vector<float> row(rr, rr + V);
    std::nth_element(row.begin(), row.begin() + 1, row.end(), std::greater<float>());
    if (row[0] - row[1] < margin) continue;
    ++a.compared;
    a.agree += model::argmax(got.data() + r * V, V) == model::argmax(rr, V);
  }
  return a;
}

struct RouteStats {
  int64_t rows = 0;      // (block, row) routes compared
  int64_t flips = 0;     // routes whose expert set differs from the CPU's own
  int64_t illegit = 0;   // differing experts beyond the tie margin
  double max_gap = 0.0;  // largest (score gap / row scale) among differing experts
  void print(const char* what) const {
    std::printf("[ routing ] %-40s routes=%lld flips=%lld (%.2f%%) max_gap=%.3g (margin %.3g) beyond=%lld\n", what,
                static_cast<long long>(rows), static_cast<long long>(flips),
                rows ? 100.0 * static_cast<double>(flips) / static_cast<double>(rows) : 0.0, max_gap, kTieMargin,
                static_cast<long long>(illegit));
  }
  void expect_legitimate(const char* what) const {
    EXPECT_EQ(illegit, 0) << what << ": GPU expert choices beyond the tie margin";
    EXPECT_LE(static_cast<double>(flips), kMaxFlipFraction * static_cast<double>(rows)) << what;
  }
};

// One row: scores [E] (unmasked selection scores), own [k] the CPU's choice, gpu [k].
// Grouped routing (n_group > 1): group score = sum of its two best scores; the CPU keeps the
// topk_group best groups. The GPU's kept groups are those of its experts (topped up with the
// CPU's best other groups); each of them the CPU did not keep must be within 2 * margin of
// the CPU's weakest kept group. Within the GPU's kept groups, each GPU expert outside the
// CPU's top-k over those groups must be within margin of that top-k's k-th best score.
inline void check_route(const Config& c, const float* scores, const int32_t* own, const int32_t* gpu, RouteStats& st) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  ++st.rows;
  std::vector<int32_t> a(own, own + k), b(gpu, gpu + k);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a == b) return;
  ++st.flips;
  for (int32_t e : b)
    if (e < 0 || e >= E) {
      ADD_FAILURE() << "GPU chose expert " << e << " outside [0, " << E << ")";
      ++st.illegit;
      return;
    }
  double scale = 1e-30;
  for (int64_t e = 0; e < E; ++e) scale = std::max(scale, std::fabs(static_cast<double>(scores[e])));
  const int64_t G = std::max<int64_t>(1, c.n_group), per = E / G;
  const int64_t keep = G > 1 ? std::min<int64_t>(c.topk_group, G) : 1;
  std::vector<double> gscore(static_cast<std::size_t>(G), 0.0);
  for (int64_t g = 0; g < G && G > 1; ++g) {
    std::vector<float> v(scores + g * per, scores + (g + 1) * per);
    std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
    gscore[g] = static_cast<double>(v[0]) + v[1];
  }
  std::vector<int64_t> order(static_cast<std::size_t>(G));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return gscore[x] > gscore[y]; });
  const double gbar = gscore[order[keep - 1]];  // the CPU's weakest kept group
  std::vector<bool> allowed(static_cast<std::size_t>(G), false);
  int64_t n_allowed = 0;
  double gap = 0.0;
  for (int32_t e : b)
    if (!allowed[e / per]) {
      allowed[e / per] = true;
      ++n_allowed;
      gap = std::max(gap, std::max(0.0, gbar - gscore[e / per]) / (2 * scale));
    }
  for (int64_t i = 0; i < G && n_allowed < keep; ++i)
    if (!allowed[order[i]]) {
      allowed[order[i]] = true;
      ++n_allowed;
    }
  // The CPU's top-k over the allowed groups (ties -> lower id, as route_topk_cpu).
  std::vector<int32_t> idx;
  for (int32_t e = 0; e < E; ++e)
    if (allowed[e / per]) idx.push_back(e);
  std::sort(idx.begin(), idx.end(),
            [&](int32_t x, int32_t y) { return scores[x] > scores[y] || (scores[x] == scores[y] && x < y); });
  idx.resize(static_cast<std::size_t>(std::min<int64_t>(k, static_cast<int64_t>(idx.size()))));
  const double kth = scores[idx.back()];
  std::sort(idx.begin(), idx.end());
  for (int32_t e : b)
    if (!std::binary_search(idx.begin(), idx.end(), e)) gap = std::max(gap, std::max(0.0, kth - scores[e]) / scale);
  st.max_gap = std::max(st.max_gap, gap);
  if (gap > kTieMargin) {
    if (st.illegit < 5) {
      std::string ids;
      for (int64_t j = 0; j < k; ++j) ids += " " + std::to_string(own[j]) + "/" + std::to_string(gpu[j]);
      ADD_FAILURE() << "GPU routing beyond the tie margin: relative gap " << gap << " (CPU/GPU ids:" << ids << ")";
    }
    ++st.illegit;
  }
}

// Runs GPU and CPU steps on the same tokens; the CPU is forced to the GPU's routing (checked
// into `stats`). CPU states belong to the caller.
class Lockstep {
 public:
  // kv_fp8: the CPU reference emulates the FP8 KV cache (CpuModel::set_kv_fp8), for a GPU
  // model built with CudaModelOptions::kv_fp8.
  // `gpu`: a CudaModel, or any Backend on the GPU (the sharded CudaRanks).
  Lockstep(const Model& m, model::Backend& gpu, bool kv_fp8 = false) : model_(m), cpu_(m), gpu_(gpu) {
    cpu_.set_kv_fp8(kv_fp8);
    gpu_.record_routing(true);
  }
  ~Lockstep() { gpu_.record_routing(false); }
  const CpuModel& cpu() const { return cpu_; }
  // The CPU emulates a 16-bit SSM state (for a GPU model built with CudaModelOptions::ssm_state).
  void set_ssm_state(const kernels::SsmStateFormat& f) { cpu_.set_ssm_state(f); }

  struct Out {
    std::vector<float> gpu, cpu;                // logits
    std::vector<float> gpu_hidden, cpu_hidden;  // final-normed rows [T, H]
    std::vector<std::vector<int32_t>> routes;   // the GPU's expert ids per block (CudaModel::routing)
  };

  Out forward(int slot, SequenceState& st, const int32_t* ids, int64_t T, bool all_logits) {
    Out o;
    o.gpu = std::move(gpu_.step({{.slot = slot, .ids = ids, .T = T,
                                  .logits = all_logits ? model::LogitsOut::All : model::LogitsOut::Last}})[0]
                          .logits);
    o.gpu_hidden = gpu_.last_hidden();
    o.routes = gpu_.routing();
    auto r = forced(o.routes, [&] { return cpu_.forward(st, ids, T, all_logits); });
    o.cpu = std::move(r.logits);
    o.cpu_hidden = std::move(r.hidden);
    return o;
  }

  // The MTP head: GPU fed gpu_hidden, CPU fed cpu_hidden (each engine its own rows).
  Out mtp(int slot, SequenceState& mst, const int32_t* ids, const float* gpu_hidden, const float* cpu_hidden, int64_t T,
          bool all_logits) {
    Out o;
    o.gpu = gpu_.mtp_forward(slot, ids, gpu_hidden, T, all_logits);
    o.gpu_hidden = gpu_.last_hidden();
    o.routes = gpu_.routing();
    auto r = forced(o.routes, [&] { return cpu_.mtp_forward(mst, ids, cpu_hidden, T, all_logits); });
    o.cpu = std::move(r.logits);
    o.cpu_hidden = std::move(r.hidden);
    return o;
  }

  // The CPU alone on a whole sequence, forced to `routes` (per block, [rows of ids, k] in
  // order; as gathered from GPU steps that ran these ids in any chunking).
  model::ForwardResult cpu_on(const std::vector<std::vector<int32_t>>& routes, SequenceState& st, const int32_t* ids,
                              int64_t T, bool all_logits) {
    return forced(routes, [&] { return cpu_.forward(st, ids, T, all_logits); });
  }

  RouteStats stats;

 private:
  template <class F>
  model::ForwardResult forced(const std::vector<std::vector<int32_t>>& routes, F&& run) {
    const Config& c = model_.config;
    const int64_t k = c.num_experts_per_tok;
    model::RoutingHook hook;
    hook.observe = [&](int block, int64_t rows, const float* scores, const int32_t* own) {
      const auto& g = routes.at(static_cast<std::size_t>(block));
      if (static_cast<int64_t>(g.size()) != rows * k) {
        ADD_FAILURE() << "block " << block << ": the GPU recorded " << g.size() << " expert ids for " << rows
                      << " rows";
        return;
      }
      for (int64_t r = 0; r < rows; ++r)
        check_route(c, scores + r * c.n_routed_experts, own + r * k, g.data() + r * k, stats);
    };
    hook.force = [&](int block, int64_t rows) -> const int32_t* {
      const auto& g = routes.at(static_cast<std::size_t>(block));
      return static_cast<int64_t>(g.size()) == rows * k ? g.data() : nullptr;
    };
    model::RoutingScope scope(hook);
    return run();
  }

  const Model& model_;
  CpuModel cpu_;
  model::Backend& gpu_;
};

inline bool has_moe(const Config& c) { return std::count(c.layers.begin(), c.layers.end(), model::LayerKind::MoE) > 0; }

}  // namespace nemotron::testing
