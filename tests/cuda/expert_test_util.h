#pragma once
// Routed-expert tables for the GPU MoE tests: E random weights in checkpoint format
// (make_weight; per-tensor scales differ between experts), their host copies, and the device
// ExpertTable pointing at them.
#include <cstdint>
#include <memory>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/moe_cuda.h"
#include "linear_test_util.h"

namespace nemotron::testing {

struct Experts {
  std::vector<HostWeight> hw;  // expert e: make_weight(f, out, in, seed * seed_stride + e), scale x (1 + e % 5 / 100)
  std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> bufs;
  std::unique_ptr<DeviceBuffer<const void*>> data;
  std::unique_ptr<DeviceBuffer<const uint8_t*>> scales;
  std::unique_ptr<DeviceBuffer<float>> scale;
  kernels::ExpertTable table;
};

inline std::unique_ptr<Experts> make_experts(kernels::WeightFormat f, int64_t E, int64_t out, int64_t in,
                                             uint64_t seed, uint64_t seed_stride) {
  auto x = std::make_unique<Experts>();
  std::vector<const void*> dptr;
  std::vector<const uint8_t*> sptr;
  std::vector<float> sc;
  for (int64_t e = 0; e < E; ++e) {
    x->hw.push_back(make_weight(f, out, in, seed * seed_stride + static_cast<uint64_t>(e)));
    x->hw.back().w.scale *= 1.0f + 0.01f * static_cast<float>(e % 5);  // distinct per-expert scales
    x->bufs.push_back(std::make_unique<DeviceBuffer<uint8_t>>(x->hw.back().data));
    dptr.push_back(x->bufs.back()->get());
    if (x->hw.back().scales.empty()) {
      sptr.push_back(nullptr);
    } else {
      x->bufs.push_back(std::make_unique<DeviceBuffer<uint8_t>>(x->hw.back().scales));
      sptr.push_back(x->bufs.back()->get());
    }
    sc.push_back(x->hw.back().w.scale);
  }
  x->data = std::make_unique<DeviceBuffer<const void*>>(dptr);
  x->scales = std::make_unique<DeviceBuffer<const uint8_t*>>(sptr);
  x->scale = std::make_unique<DeviceBuffer<float>>(sc);
  x->table = {f, E, out, in, x->data->get(), f == kernels::WeightFormat::NVFP4 ? x->scales->get() : nullptr,
              x->scale->get()};
  return x;
}

// An MoE block's two routed-expert calls on the same ids: up (token rows x [T, in_up] ->
// h [T*k, out_up], relu²) and down (pair rows h -> y [T*k, out_down]).
struct ExpertPairArgs {
  kernels::ExpertGemvArgs up, down;
};
inline ExpertPairArgs expert_pair_args(const Experts& up, const Experts& down, const int32_t* ids, int64_t T,
                                       int64_t k, const uint16_t* x, uint16_t* h, uint16_t* y) {
  ExpertPairArgs p;
  p.up.w = up.table;
  p.up.ids = ids;
  p.up.T = T;
  p.up.k = k;
  p.up.x = x;
  p.up.relu2 = true;
  p.up.y = h;
  p.down = p.up;
  p.down.w = down.table;
  p.down.x = h;
  p.down.x_per_slot = true;
  p.down.relu2 = false;
  p.down.y = y;
  return p;
}

}  // namespace nemotron::testing
