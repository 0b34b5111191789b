// NVFP4 weight encoder and the Nano NVFP4 module recipe (see quantize.h for both).
#include <cmath>
#include <string>

#include "kernels/numeric.h"
#include "model/convert/quantize.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::model {

uint8_t e2m1_code_argmin(float q) {
  // Literal argmin over |(|q| - m)| in fp32, first index on ties (torch.argmin).
  constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float a = std::fabs(q);
  uint8_t best = 0;
  float best_d = std::fabs(a - kMag[0]);
  for (uint8_t i = 1; i < 8; ++i) {
    const float d = std::fabs(a - kMag[i]);
    if (d < best_d) {
      best_d = d;
      best = i;
    }
  }
  return static_cast<uint8_t>(best | (q < 0.0f ? 8u : 0u));
}

Nvfp4Weight quantize_nvfp4(const float* w, int64_t out, int64_t in) {
  if (out <= 0 || in <= 0 || in % 16 != 0)
    throw Error("NVFP4 needs in_features divisible by 16, got [" + std::to_string(out) + ", " + std::to_string(in) + "]");
  const int64_t n = out * in, nb = in / 16;
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(w[i])) throw Error("weight value " + std::to_string(i) + " is not finite");
    amax = std::fmax(amax, std::fabs(w[i]));
  }
  Nvfp4Weight r;
  // torch: w.abs().max().float() / (6 * 448): one fp32 division by 2688.
  const float g = amax / 2688.0f;
  r.global_scale = g;
  r.packed.assign(static_cast<std::size_t>(n / 2), 0);
  r.scales.assign(static_cast<std::size_t>(out * nb), 0);
  const float six_g = 6.0f * g;
  parallel_for(static_cast<std::size_t>(out), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t row = r0; row < r1; ++row) {
      const float* wr = w + static_cast<int64_t>(row) * in;
      for (int64_t b = 0; b < nb; ++b) {
        const float* blk = wr + b * 16;
        float bmax = 0.0f;
        for (int j = 0; j < 16; ++j) bmax = std::fmax(bmax, std::fabs(blk[j]));
        // An all-zero tensor (g = 0) would give 0/0 = NaN scales in the reference (and NaN
        // weights after dequantization); it gets scale 1.0 and zero codes instead.
        uint8_t s = g > 0.0f ? kernels::float_to_e4m3(bmax / six_g) : 0;
        if (kernels::e4m3_to_float(s) == 0.0f) s = kernels::float_to_e4m3(1.0f);
        r.scales[row * nb + b] = s;
        const float sg = kernels::e4m3_to_float(s) * g;
        if (!(sg > 0.0f)) continue;  // g = 0: codes stay 0
        uint8_t* dst = r.packed.data() + static_cast<int64_t>(row) * (in / 2) + b * 8;
        for (int j = 0; j < 8; ++j) {
          const uint8_t lo = e2m1_code_argmin(blk[2 * j] / sg);
          const uint8_t hi = e2m1_code_argmin(blk[2 * j + 1] / sg);
          dst[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
    }
  }, 4);
  return r;
}

std::vector<QuantPlanEntry> nvfp4_recipe(const Model& m) {
  const Config& c = m.config;
  const ModelWeights& w = m.weights;
  std::vector<QuantPlanEntry> plan;
  auto add = [&](const Linear& L, bool quantize) { plan.push_back({&L, quantize, !quantize}); };
  for (std::size_t l = 0; l < w.blocks.size(); ++l) {
    const BlockWeights& b = w.blocks[l];
    switch (b.kind) {
      case LayerKind::Mamba: {
        // Nano keeps the Mamba layer right before each attention layer in BF16.
        const bool before_attention = l + 1 < c.layers.size() && c.layers[l + 1] == LayerKind::Attention;
        add(b.mamba.in_proj, !before_attention);
        add(b.mamba.out_proj, !before_attention);
        break;
      }
      case LayerKind::Attention:
        for (const Linear* L : {&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o}) add(*L, false);
        break;
      case LayerKind::MoE:
        plan.push_back({&b.moe.gate, false, false});  // router: never quantized, never listed
        for (std::size_t e = 0; e < b.moe.up.size(); ++e) {
          add(b.moe.up[e], true);
          add(b.moe.down[e], true);
        }
        if (c.n_shared_experts > 0) {
          add(b.moe.shared_up, true);
          add(b.moe.shared_down, true);
        }
        if (c.moe_latent_size > 0) {
          add(b.moe.fc1_latent, false);
          add(b.moe.fc2_latent, false);
        }
        break;
      case LayerKind::MLP:
        add(b.mlp.up, true);
        add(b.mlp.down, true);
        break;
    }
  }
  add(w.lm_head, false);
  if (w.has_mtp) {
    add(w.mtp.eh_proj, false);
    for (const BlockWeights& b : w.mtp.blocks) {
      switch (b.kind) {
        case LayerKind::Mamba: add(b.mamba.in_proj, false); add(b.mamba.out_proj, false); break;
        case LayerKind::Attention:
          for (const Linear* L : {&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o}) add(*L, false);
          break;
        case LayerKind::MoE:
          plan.push_back({&b.moe.gate, false, false});
          for (std::size_t e = 0; e < b.moe.up.size(); ++e) {
            add(b.moe.up[e], false);
            add(b.moe.down[e], false);
          }
          if (c.n_shared_experts > 0) {
            add(b.moe.shared_up, false);
            add(b.moe.shared_down, false);
          }
          if (c.moe_latent_size > 0) {
            add(b.moe.fc1_latent, false);
            add(b.moe.fc2_latent, false);
          }
          break;
        case LayerKind::MLP: add(b.mlp.up, false); add(b.mlp.down, false); break;
      }
    }
  }
  return plan;
}

}  // namespace nemotron::model
