// NVFP4 encoder (hand-computed cases of the reference semantics), recipe and calibration.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "fixture_util.h"
#include "kernels/numeric.h"
#include "model/cpu/cpu_forward.h"
#include "model/convert/quantize.h"
#include "util/error.h"

namespace nemotron::model {
namespace {

TEST(QuantizeNvfp4, CodeTiesGoToTheLowerMagnitude) {
  // torch argmin semantics, not the hardware's ties-to-even (which gives 0.75 -> 1.0).
  const std::pair<float, uint8_t> cases[] = {
      {0.0f, 0},  {0.25f, 0}, {0.26f, 1}, {0.75f, 1},  {0.76f, 2},  {1.25f, 2},  {1.75f, 3}, {2.5f, 4},
      {3.5f, 5},  {5.0f, 6},  {5.01f, 7}, {6.0f, 7},   {100.0f, 7}, {-0.75f, 9}, {-6.0f, 15}, {-0.1f, 8},
      {-0.0f, 0}};
  for (const auto& [q, code] : cases) EXPECT_EQ(e2m1_code_argmin(q), code) << q;
}

TEST(QuantizeNvfp4, HandComputedBlock) {
  // Row k/16 for k = 1..16: amax 1, g = 1/2688, block scale e4m3(1/(6g)) = 448 (0x7E),
  // q = w / (448 g) = 6k/16 = 0.375 k.
  std::vector<float> w(16);
  for (int k = 1; k <= 16; ++k) w[k - 1] = static_cast<float>(k) / 16.0f;
  w[3] = -w[3];  // q = -1.5
  const auto r = quantize_nvfp4(w.data(), 1, 16);
  EXPECT_EQ(r.global_scale, 1.0f / 2688.0f);
  ASSERT_EQ(r.scales.size(), 1u);
  EXPECT_EQ(r.scales[0], 0x7E);
  // q: .375 .75 1.125 -1.5 1.875 2.25 2.625 3 3.375 3.75 4.125 4.5 4.875 5.25 5.625 6
  const uint8_t codes[16] = {1, 1, 2, 11, 4, 4, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7};
  ASSERT_EQ(r.packed.size(), 8u);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(r.packed[j], codes[2 * j] | (codes[2 * j + 1] << 4)) << j;
}

TEST(QuantizeNvfp4, ZeroBlockGetsScaleOne) {
  std::vector<float> w(32, 0.0f);
  w[20] = 0.5f;  // second block only
  const auto r = quantize_nvfp4(w.data(), 1, 32);
  EXPECT_EQ(r.scales[0], kernels::float_to_e4m3(1.0f));
  EXPECT_EQ(r.scales[1], 0x7E);
  EXPECT_EQ(r.packed[2], 0);
  EXPECT_EQ(r.packed[10], 7);  // element 20: low nibble of byte 10, q = 6
}

TEST(QuantizeNvfp4, AllZeroTensorStaysFinite) {
  std::vector<float> w(16, 0.0f);
  const auto r = quantize_nvfp4(w.data(), 1, 16);
  EXPECT_EQ(r.global_scale, 0.0f);
  EXPECT_EQ(r.scales[0], kernels::float_to_e4m3(1.0f));
  for (uint8_t b : r.packed) EXPECT_EQ(b, 0);
}

TEST(QuantizeNvfp4, RejectsBadShapesAndValues) {
  std::vector<float> w(24, 1.0f);
  EXPECT_THROW(quantize_nvfp4(w.data(), 1, 24), Error);
  w.resize(16);
  w[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_nvfp4(w.data(), 1, 16), Error);
  w[3] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_nvfp4(w.data(), 1, 16), Error);
}

TEST(QuantizeRecipe, NanoPatternMatchesTheRelease) {
  const Model m = Model::load(testing::fixture_dir("nano-moe"));  // MEM*EMEM*E
  std::set<std::string> q, kept;
  for (const auto& e : nvfp4_recipe(m)) (e.quantize ? q : kept).insert(e.linear->name);
  EXPECT_EQ(q.size(), 4u + 4u * 34u);
  EXPECT_TRUE(q.count("backbone.layers.0.mixer.in_proj"));
  EXPECT_TRUE(q.count("backbone.layers.5.mixer.out_proj"));
  EXPECT_TRUE(kept.count("backbone.layers.2.mixer.in_proj"));   // precedes attention layer 3
  EXPECT_TRUE(kept.count("backbone.layers.7.mixer.out_proj"));  // precedes attention layer 8
  EXPECT_TRUE(kept.count("backbone.layers.3.mixer.q_proj"));
  EXPECT_TRUE(kept.count("backbone.layers.1.mixer.gate"));
  EXPECT_TRUE(kept.count("lm_head"));
  EXPECT_TRUE(q.count("backbone.layers.9.mixer.experts.15.down_proj"));
  EXPECT_TRUE(q.count("backbone.layers.9.mixer.shared_experts.up_proj"));
}

TEST(QuantizeRecipe, LatentProjectionsAndMtpStayBf16) {
  const Model m = Model::load(testing::fixture_dir("super-latent-mtp"));
  int mtp = 0;
  for (const auto& e : nvfp4_recipe(m)) {
    const std::string& n = e.linear->name;
    if (n.find("latent_proj") != std::string::npos) {
      EXPECT_FALSE(e.quantize) << n;
    }
    if (n.rfind("mtp.", 0) == 0) {
      EXPECT_FALSE(e.quantize) << n;
      ++mtp;
    }
    if (n.find(".gate") != std::string::npos) {
      EXPECT_FALSE(e.listed_excluded) << n;
    }
  }
  EXPECT_GT(mtp, 0);
}

TEST(QuantizeCalibration, AmaxOfEachLinearInput) {
  const Model m = Model::load(testing::fixture_dir("nano-moe"));
  const std::vector<int32_t> ids = {5, 77, 300, 12, 9, 511, 42, 8};
  // Window 3 (fresh states) must give what observing the same windows directly gives.
  const auto amax = calibrate_input_amax(m, ids, 3);
  std::map<std::string, float> direct;
  {
    const CpuModel cpu(m);
    LinearInputScope scope([&](const Linear& L, const float* x, int64_t rows) {
      for (int64_t i = 0; i < rows * L.w.in; ++i) direct[L.name] = std::fmax(direct[L.name], std::fabs(x[i]));
    });
    for (std::size_t s = 0; s < ids.size(); s += 3) {
      auto st = cpu.new_state();
      cpu.forward(st, ids.data() + s, static_cast<int64_t>(std::min<std::size_t>(3, ids.size() - s)), false);
    }
  }
  EXPECT_EQ(amax, direct);
  EXPECT_FALSE(amax.count("lm_head"));
  EXPECT_TRUE(amax.count("backbone.layers.0.mixer.in_proj"));
  // Layer 0's in_proj input is RMSNorm(embedding) * weight: check one token by hand.
  const Model& mm = m;
  const int64_t H = mm.config.hidden_size;
  float want = 0.0f;
  for (int32_t id : ids) {
    std::vector<float> e(H);
    kernels::dequantize_row(mm.weights.embeddings, id, e.data());
    double ss = 0;
    for (float v : e) ss += static_cast<double>(v) * v;
    const double inv = 1.0 / std::sqrt(ss / H + mm.config.norm_eps);
    for (int64_t i = 0; i < H; ++i)
      want = std::fmax(want, static_cast<float>(std::fabs(e[i] * inv * mm.weights.blocks[0].norm[i])));
  }
  EXPECT_NEAR(amax.at("backbone.layers.0.mixer.in_proj"), want, 1e-5 * want);
  EXPECT_THROW(calibrate_input_amax(m, ids, 0), Error);
}

}  // namespace
}  // namespace nemotron::model
