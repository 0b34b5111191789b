// `synth` checkpoints: loadable by Model::load in every format, byte-identical per seed,
// in the exact tensor set / dtypes / shapes of the transformers-made fixtures, quantized
// within the error the formats allow, and with the Super MIXED_PRECISION table applied.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "temp_dir.h"
#include "fixture_util.h"
#include "kernels/numeric.h"
#include "model/cpu/cpu_forward.h"
#include "model/convert/synth.h"
#include "model/checkpoint/weights.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::model;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

using nemotron::testing::TempDir;

const std::vector<std::string> kFixtures = {"nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4", "super-mixed-mtp"};

Json fixture_config(const std::string& name) {
  return read_json_file(nemotron::testing::fixture_dir(name) + "/config.json");
}

// Writes `config` as <dir>/<file> and returns its path.
std::string write_json(const TempDir& dir, const std::string& file, const Json& j) {
  const std::string p = dir.sub(file);
  std::ofstream(p) << j.dump(2);
  return p;
}

synth::Result run_synth(const std::string& config, const std::string& out, uint64_t seed = 0,
                        const std::string& quant = "", bool super_mixed = false, double shard_gb = 5.0) {
  synth::Options o;
  o.config_path = config;
  o.quant_path = quant;
  o.super_mixed = super_mixed;
  o.out_dir = out;
  o.seed = seed;
  o.shard_gb = shard_gb;
  o.progress = false;
  return synth::synthesize(o);
}

// Every linear of the loaded model with its name.
std::vector<const Linear*> all_linears(const Model& m) {
  std::vector<const Linear*> out;
  auto block = [&](const BlockWeights& b) {
    for (const Linear* l : {&b.mamba.in_proj, &b.mamba.out_proj, &b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o,
                            &b.moe.gate, &b.moe.shared_up, &b.moe.shared_down, &b.moe.fc1_latent,
                            &b.moe.fc2_latent, &b.mlp.up, &b.mlp.down})
      if (!l->name.empty()) out.push_back(l);
    for (const auto& l : b.moe.up) out.push_back(&l);
    for (const auto& l : b.moe.down) out.push_back(&l);
  };
  for (const auto& b : m.weights.blocks) block(b);
  if (m.weights.has_mtp) {
    out.push_back(&m.weights.mtp.eh_proj);
    for (const auto& b : m.weights.mtp.blocks) block(b);
  }
  out.push_back(&m.weights.lm_head);
  return out;
}

// Runs the CPU forward on a few tokens: logits must be finite and not constant.
void expect_sane_forward(const Model& m) {
  const CpuModel cpu(m);
  auto st = cpu.new_state();
  const int64_t V = m.config.vocab_size;
  std::vector<int32_t> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(static_cast<int32_t>((i * 7919 + 3) % V));
  const auto r = cpu.forward(st, ids.data(), static_cast<int64_t>(ids.size()), true);
  ASSERT_EQ(r.logits.size(), ids.size() * static_cast<std::size_t>(V));
  double sum = 0, sq = 0;
  for (float x : r.logits) {
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += double(x) * x;
  }
  const double n = static_cast<double>(r.logits.size());
  const double stdev = std::sqrt(sq / n - (sum / n) * (sum / n));
  EXPECT_GT(stdev, 0.1);
  EXPECT_LT(stdev, 100.0);
  // Different positions predict different tokens somewhere (not one token forever).
  std::set<int32_t> top;
  for (std::size_t t = 0; t < ids.size(); ++t) top.insert(argmax(r.logits.data() + t * V, V));
  EXPECT_GT(top.size(), 1u);
  if (m.config.has_mtp()) {
    auto ms = cpu.new_mtp_state();
    const auto d = cpu.mtp_forward(ms, ids.data() + 1, r.hidden.data(), 5, true);
    for (float x : d.logits) ASSERT_TRUE(std::isfinite(x));
  }
}

std::string file_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Name -> (dtype, shape) of all tensors of a checkpoint directory.
std::map<std::string, std::pair<DType, std::vector<int64_t>>> tensor_table(const std::string& dir) {
  std::map<std::string, std::pair<DType, std::vector<int64_t>>> out;
  const auto ck = Checkpoint::open(dir);
  for (const auto& [name, t] : ck.all()) out[name] = {t->dtype, t->shape};
  return out;
}

}  // namespace

// The fixtures were exported with transformers (and ModelOpt-style quantization): a synth of the same config
// (with the same quantization config) must hold exactly the same tensors, dtypes and shapes.
TEST(Synth, TensorSetMatchesTheReferenceFixtures) {
  for (const auto& name : kFixtures) {
    SCOPED_TRACE(name);
    TempDir dir;
    run_synth(nemotron::testing::fixture_dir(name) + "/config.json", dir.str(), 3);
    const auto ours = tensor_table(dir.str());
    const auto ref = tensor_table(nemotron::testing::fixture_dir(name));
    ASSERT_EQ(ours.size(), ref.size());
    for (const auto& [t, info] : ref) {
      auto it = ours.find(t);
      ASSERT_NE(it, ours.end()) << t;
      // dense-mlp exercises F32 storage (every tensor F32); synth keeps the releases' BF16 policy.
      if (name != "dense-mlp") {
        EXPECT_EQ(dtype_name(it->second.first), std::string(dtype_name(info.first))) << t;
      }
      EXPECT_EQ(it->second.second, info.second) << t;
    }
  }
}

TEST(Synth, Bf16OfEveryFixtureConfigLoadsAndRuns) {
  for (const auto& name : kFixtures) {
    SCOPED_TRACE(name);
    TempDir dir;
    Json c = fixture_config(name);
    c.erase("quantization_config");
    run_synth(write_json(dir, "in.json", c), dir.sub("out"), 1);
    EXPECT_FALSE(fs::exists(dir.sub("out/hf_quant_config.json")));
    const Model m = Model::load(dir.sub("out"));
    EXPECT_EQ(m.quant.quant_algo, "");
    for (const Linear* l : all_linears(m)) EXPECT_EQ(l->w.format, WeightFormat::Dense) << l->name;
    const auto ck = Checkpoint::open(dir.sub("out"));
    for (const auto& [t, info] : ck.all()) {
      const bool f32 = t.ends_with("A_log") || t.ends_with(".D") || t.ends_with("e_score_correction_bias");
      EXPECT_EQ(info->dtype, f32 ? DType::F32 : DType::BF16) << t;
    }
    expect_sane_forward(m);
  }
}

TEST(Synth, Nvfp4WithWildcardExcludesFollowsTheQuantConfig) {
  for (const std::string name : {"nano-moe", "super-latent-mtp"}) {
    SCOPED_TRACE(name);
    TempDir dir;
    const Json hf = {{"producer", {{"name", "modelopt"}}},
                     {"quantization",
                      {{"quant_algo", "NVFP4"},
                       {"group_size", 16},
                       {"exclude_modules",
                        {"lm_head", "backbone.layers.*.mixer.[qkv]_proj", "*shared_experts.down_proj",
                         "backbone.layers.0.mixer.in_proj", "mtp.layers.0.eh_proj"}}}}};
    const std::string quant = write_json(dir, "hf.json", hf);
    run_synth(nemotron::testing::fixture_dir(name) + "/config.json", dir.sub("out"), 2, quant);
    const Model m = Model::load(dir.sub("out"));
    ASSERT_EQ(m.quant.quant_algo, "NVFP4");
    EXPECT_EQ(read_json_file(dir.sub("out/config.json"))["quantization_config"]["quant_method"], "modelopt");
    EXPECT_EQ(file_bytes(dir.sub("out/hf_quant_config.json")), file_bytes(quant));  // copied verbatim
    int nvfp4 = 0, dense = 0;
    for (const Linear* l : all_linears(m)) {
      const std::string& n = l->name;
      const bool qkv = n.ends_with(".q_proj") || n.ends_with(".k_proj") || n.ends_with(".v_proj");
      const bool excluded = n == "lm_head" || (qkv && n.starts_with("backbone.")) || n.ends_with("shared_experts.down_proj") ||
                            n == "backbone.layers.0.mixer.in_proj" || n == "mtp.layers.0.eh_proj" ||
                            n.ends_with(".gate");
      EXPECT_EQ(l->w.format, excluded ? WeightFormat::Dense : WeightFormat::NVFP4) << n;
      (excluded ? dense : nvfp4)++;
    }
    EXPECT_GT(nvfp4, 50);
    EXPECT_GT(dense, 5);
    expect_sane_forward(m);
  }
}

TEST(Synth, MixedPrecisionConfigSectionIsHonoured) {
  // super-mixed-mtp carries its MIXED_PRECISION map in config.json only.
  TempDir dir;
  run_synth(nemotron::testing::fixture_dir("super-mixed-mtp") + "/config.json", dir.str(), 4);
  const Model m = Model::load(dir.str());
  ASSERT_EQ(m.quant.quant_algo, "MIXED_PRECISION");
  const Json ql = fixture_config("super-mixed-mtp")["quantization_config"]["quantized_layers"];
  int fp8 = 0, nvfp4 = 0;
  for (const Linear* l : all_linears(m)) {
    WeightFormat want = WeightFormat::Dense;
    if (ql.contains(l->name)) want = ql[l->name]["quant_algo"] == "FP8" ? WeightFormat::FP8 : WeightFormat::NVFP4;
    EXPECT_EQ(l->w.format, want) << l->name;
    fp8 += want == WeightFormat::FP8;
    nvfp4 += want == WeightFormat::NVFP4;
  }
  EXPECT_GT(fp8, 0);
  EXPECT_GT(nvfp4, 0);
  // The written hf_quant_config.json agrees with config.json (the loader checks both).
  EXPECT_EQ(read_json_file(dir.sub("hf_quant_config.json"))["quantization"]["quantized_layers"], ql);
  expect_sane_forward(m);
}

TEST(Synth, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir dir;
  const std::string cfg = nemotron::testing::fixture_dir("nano-nvfp4") + "/config.json";
  run_synth(cfg, dir.sub("a"), 7);
  run_synth(cfg, dir.sub("b"), 7);
  run_synth(cfg, dir.sub("c"), 8);
  const std::string a = file_bytes(dir.sub("a/model.safetensors"));
  ASSERT_GT(a.size(), 100000u);
  EXPECT_EQ(a, file_bytes(dir.sub("b/model.safetensors")));
  const std::string c = file_bytes(dir.sub("c/model.safetensors"));
  ASSERT_EQ(a.size(), c.size());  // same layout
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != c[i];
  EXPECT_GT(differ, a.size() / 2);
}

TEST(Synth, ShardedCheckpointHasAValidIndexAndTheSameTensors) {
  TempDir dir;
  const std::string cfg = nemotron::testing::fixture_dir("super-latent-mtp") + "/config.json";
  const auto single = run_synth(cfg, dir.sub("one"), 5);
  EXPECT_EQ(single.shards, 1);
  const auto sharded = run_synth(cfg, dir.sub("many"), 5, "", false, 0.0002);  // 200 KB shards
  ASSERT_GT(sharded.shards, 3);
  const Json index = read_json_file(dir.sub("many/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), sharded.bytes);
  std::set<std::string> files;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) files.insert(it.value());
  EXPECT_EQ(static_cast<int>(files.size()), sharded.shards);
  for (const auto& f : files) {
    EXPECT_TRUE(fs::exists(dir.sub("many/" + f))) << f;
    EXPECT_LE(fs::file_size(dir.sub("many/" + f)), 200000u + 65536u) << f;  // data + header
  }
  EXPECT_FALSE(fs::exists(dir.sub("many/model.safetensors")));
  const Model m = Model::load(dir.sub("many"));
  const auto a = Checkpoint::open(dir.sub("one"));
  ASSERT_EQ(a.all().size(), m.checkpoint.all().size());
  for (const auto& [name, t] : a.all()) {
    const TensorInfo& u = m.checkpoint.get(name);
    ASSERT_EQ(t->nbytes, u.nbytes) << name;
    EXPECT_EQ(std::memcmp(t->data, u.data, t->nbytes), 0) << name;
  }
  expect_sane_forward(m);

  // Re-synthesizing unsharded into the same directory replaces the shards and the index,
  // and keeps files that are not synth outputs.
  std::ofstream(dir.sub("many/tokenizer.json")) << "{}";
  run_synth(cfg, dir.sub("many"), 5);
  EXPECT_FALSE(fs::exists(dir.sub("many/model.safetensors.index.json")));
  EXPECT_FALSE(fs::exists(dir.sub("many/" + *files.begin())));
  EXPECT_TRUE(fs::exists(dir.sub("many/tokenizer.json")));
  EXPECT_EQ(file_bytes(dir.sub("many/model.safetensors")), file_bytes(dir.sub("one/model.safetensors")));
}

// Error bounds derived from the formats, per element w with dequantized value q:
//   FP8 (E4M3, 3 mantissa bits, RNE): |q - w| <= |w| * 2^-4 for |w/s| >= 2^-6 (normals),
//       <= 2^-10 * s below (subnormal spacing 2^-9); no saturation since amax maps to 448.
//   NVFP4: x = w / (bs * s2) is rounded on {0,.5,1,1.5,2,3,4,6}: half-spacing 0.25 below 2,
//       <= |x|/4 above; the block's E4M3 scale is within 2^-4 of amax_b/(6*s2), so |x| <= 6*(1+2^-4)
//       and saturation at 6 costs at most 0.375 <= |x|/4. Hence |q - w| <= max(0.25*bs*s2, |w|/4),
//       and bs*s2 <= amax_b/6 * (1 + 2^-4).
TEST(Synth, QuantizedWeightsMatchTheMasterValuesWithinFormatBounds) {
  TempDir dir;
  const uint64_t seed = 11;
  const Json hf = {{"quantization", {{"quant_algo", "NVFP4"}, {"group_size", 16}, {"exclude_modules", {"lm_head"}}}}};
  run_synth(nemotron::testing::fixture_dir("nano-moe") + "/config.json", dir.sub("nv"), seed, write_json(dir, "nv.json", hf));
  run_synth(nemotron::testing::fixture_dir("super-mixed-mtp") + "/config.json", dir.sub("mx"), seed);
  run_synth(nemotron::testing::fixture_dir("nano-moe") + "/config.json", dir.sub("bf"), seed);
  std::map<WeightFormat, int> checked;
  std::map<WeightFormat, double> err2, ref2;
  for (const std::string d : {"nv", "mx", "bf"}) {
    const Model m = Model::load(dir.sub(d));
    const synth::Plan plan = synth::plan_checkpoint(m.config, m.quant);
    std::map<std::string, synth::Master> laws;
    for (const auto& t : plan.tensors) laws[t.master] = t.law;
    for (const Linear* l : all_linears(m)) {
      SCOPED_TRACE(l->name);
      const auto& w = l->w;
      const int64_t out = w.out, in = w.in;
      ASSERT_TRUE(laws.count(l->name + ".weight"));
      std::vector<float> ref(static_cast<std::size_t>(out * in)), row(static_cast<std::size_t>(in));
      synth::master_values(seed, l->name + ".weight", laws[l->name + ".weight"], 0, out * in, ref.data());
      float amax = 0;
      for (float x : ref) amax = std::max(amax, std::fabs(x));
      if (w.format == WeightFormat::FP8) {
        EXPECT_FLOAT_EQ(w.scale, amax / 448.0f);
      }
      if (w.format == WeightFormat::NVFP4) {
        EXPECT_FLOAT_EQ(w.scale, amax / (6.0f * 448.0f));
      }
      for (int64_t r = 0; r < out; ++r) {
        kernels::dequantize_row(w, r, row.data());
        const float* ref_row = ref.data() + r * in;
        for (int64_t k = 0; k < in; ++k) {
          const float x = ref_row[k], q = row[static_cast<std::size_t>(k)], e = std::fabs(q - x);
          float bound = 0;
          switch (w.format) {
            case WeightFormat::Dense: bound = std::fabs(x) * 0x1p-8f; break;
            case WeightFormat::FP8: bound = std::max(std::fabs(x) * 0x1p-4f, 0x1p-10f * w.scale); break;
            case WeightFormat::NVFP4: {
              const int64_t b = k / 16;
              float amax_b = 0;
              for (int j = 0; j < 16; ++j) amax_b = std::max(amax_b, std::fabs(ref_row[16 * b + j]));
              const float unit = kernels::e4m3_to_float(w.block_scale[r * (in / 16) + b]) * w.scale;
              ASSERT_LE(unit, amax_b / 6.0f * (1.0f + 0x1p-4f) * 1.0001f);
              ASSERT_GE(unit, amax_b / 6.0f * (1.0f - 0x1p-4f) * 0.9999f);
              bound = std::max(0.25f * unit, std::fabs(x) / 4.0f);
              break;
            }
          }
          ASSERT_LE(e, bound * 1.0001f + 1e-12f) << "row " << r << " col " << k << ": " << q << " vs " << x;
          err2[w.format] += double(e) * e;
          ref2[w.format] += double(x) * x;
        }
      }
      ++checked[w.format];
    }
  }
  EXPECT_GT(checked[WeightFormat::NVFP4], 50);
  EXPECT_GT(checked[WeightFormat::FP8], 3);
  EXPECT_GT(checked[WeightFormat::Dense], 20);
  // Relative RMS error: BF16 ~2^-9, FP8 ~2^-5, NVFP4 ~0.1 for bell-shaped weights.
  EXPECT_LT(std::sqrt(err2[WeightFormat::Dense] / ref2[WeightFormat::Dense]), 0x1p-8);
  EXPECT_LT(std::sqrt(err2[WeightFormat::FP8] / ref2[WeightFormat::FP8]), 0x1p-4);
  EXPECT_LT(std::sqrt(err2[WeightFormat::NVFP4] / ref2[WeightFormat::NVFP4]), 0.15);
}

// A BF16 and an NVFP4 synth of one config and seed are the same model up to quantization.
TEST(Synth, QuantizedAndBf16SynthsAgreeOnTheSameSeed) {
  TempDir dir;
  const std::string cfg = nemotron::testing::fixture_dir("nano-moe") + "/config.json";
  const Json hf = {{"quantization", {{"quant_algo", "FP8"}, {"exclude_modules", {"lm_head"}}}}};
  run_synth(cfg, dir.sub("bf"), 21);
  run_synth(cfg, dir.sub("fp8"), 21, write_json(dir, "fp8.json", hf));
  const Model a = Model::load(dir.sub("bf")), b = Model::load(dir.sub("fp8"));
  EXPECT_EQ(b.weights.blocks[0].mamba.in_proj.w.format, WeightFormat::FP8);
  const std::vector<int32_t> ids = {5, 17, 300, 42};
  auto sa = CpuModel(a).new_state(), sb = CpuModel(b).new_state();
  const auto ra = CpuModel(a).forward(sa, ids.data(), 4, true), rb = CpuModel(b).forward(sb, ids.data(), 4, true);
  double d2 = 0, n2 = 0;
  for (std::size_t i = 0; i < ra.logits.size(); ++i) {
    d2 += double(ra.logits[i] - rb.logits[i]) * (ra.logits[i] - rb.logits[i]);
    n2 += double(ra.logits[i]) * ra.logits[i];
  }
  EXPECT_LT(std::sqrt(d2 / n2), 0.1);
}

// Architecture doc §4.3 (Super NVFP4), transcribed independently of the implementation.
TEST(Synth, SuperMixedLayoutFollowsTheReleaseTable) {
  const std::set<int> in_fp8 = {0, 2, 4, 6, 9, 11, 13, 15, 18, 20, 27, 29, 31, 40, 49, 51, 53, 55, 57, 60, 62, 66, 68, 71, 73, 82, 84, 86};
  const std::set<int> out_fp8 = {0, 2, 4, 9, 11, 13, 18, 38, 40, 42, 44, 49, 51, 53, 55, 57, 60, 62, 64, 66, 68, 71, 73, 75, 77, 80, 82, 84, 86};
  // The real Super config: 139 FP8 + 40,961 NVFP4 listed modules.
  const Config super = load_config(std::string(NEMOTRON_TEST_DATA) + "/configs/super-120b-a12b.config.json");
  const Json real = synth::super_mixed_section(super);
  int fp8 = 0, nvfp4 = 0;
  for (auto it = real["quantized_layers"].begin(); it != real["quantized_layers"].end(); ++it)
    (it.value()["quant_algo"] == "FP8" ? fp8 : nvfp4)++;
  EXPECT_EQ(fp8, 139);
  EXPECT_EQ(nvfp4, 40961);

  // The real 88-layer pattern and MTP at fixture widths: synthesize, load, check every module.
  TempDir dir;
  Json c = fixture_config("super-latent-mtp");
  c.erase("layers_block_type");
  c["hybrid_override_pattern"] = super.pattern();
  c["num_hidden_layers"] = super.num_layers();
  c["n_routed_experts"] = 8;
  c["num_experts_per_tok"] = 2;
  run_synth(write_json(dir, "in.json", c), dir.sub("out"), 0, "", true);
  const Model m = Model::load(dir.sub("out"));
  ASSERT_EQ(m.quant.quant_algo, "MIXED_PRECISION");
  EXPECT_EQ(read_json_file(dir.sub("out/hf_quant_config.json"))["quantization"]["quant_algo"], "MIXED_PRECISION");
  std::map<std::string, int> seen;
  for (const Linear* l : all_linears(m)) {
    const std::string& n = l->name;
    WeightFormat want = WeightFormat::Dense;
    int layer = -1;
    if (n.starts_with("backbone.layers.")) layer = std::stoi(n.substr(16));
    auto is = [&](const char* suffix) { return n.ends_with(suffix); };
    if (layer >= 0) {
      if (is("mixer.in_proj") && in_fp8.count(layer)) want = WeightFormat::FP8;
      if (is("mixer.out_proj") && out_fp8.count(layer)) want = WeightFormat::FP8;
      if (is("shared_experts.up_proj") && layer != 41) want = WeightFormat::FP8;
      if (is("shared_experts.down_proj"))
        want = layer == 1 ? WeightFormat::NVFP4 : (layer == 8 || layer == 76) ? WeightFormat::Dense : WeightFormat::FP8;
      if (is("fc1_latent_proj") && (layer == 1 || layer == 3 || layer == 5)) want = WeightFormat::FP8;
      if (is("fc2_latent_proj") && layer == 3) want = WeightFormat::FP8;
      if (is("o_proj") && (layer == 69 || layer == 78)) want = WeightFormat::FP8;
      if (n.find(".experts.") != std::string::npos) want = WeightFormat::NVFP4;
    }
    EXPECT_EQ(weight_format_name(l->w.format), std::string(weight_format_name(want))) << n;
    seen[weight_format_name(l->w.format)]++;
  }
  EXPECT_EQ(seen["FP8"], 139);
  EXPECT_EQ(seen["NVFP4"], 1 + 40 * 8 * 2);
  // kv_cache_quant_algo FP8: every attention block (trunk and MTP head) has k/v scales.
  EXPECT_EQ(m.quant.kv_cache_quant_algo, "FP8");
  int attention = 0;
  auto check_scales = [&](const BlockWeights& b) {
    if (b.kind != LayerKind::Attention) return;
    ++attention;
    EXPECT_TRUE(b.attn.has_kv_scales) << b.prefix;
    EXPECT_EQ(b.attn.k_scale, synth::kSynthKvScale) << b.prefix;
    EXPECT_EQ(b.attn.v_scale, synth::kSynthKvScale) << b.prefix;
    EXPECT_NE(m.checkpoint.find(b.prefix + "mixer.k_proj.k_scale"), nullptr) << b.prefix;
  };
  for (const auto& b : m.weights.blocks) check_scales(b);
  for (const auto& b : m.weights.mtp.blocks) check_scales(b);
  EXPECT_EQ(attention, super.count(LayerKind::Attention) + static_cast<int>(std::count(
                           m.config.mtp_layers.begin(), m.config.mtp_layers.end(), LayerKind::Attention)));
  expect_sane_forward(m);
}

TEST(Synth, BadRequestsAreClearErrors) {
  TempDir dir;
  const std::string cfg = nemotron::testing::fixture_dir("nano-moe") + "/config.json";
  EXPECT_THROW(run_synth(dir.sub("missing.json"), dir.sub("o")), Error);
  try {
    run_synth(cfg, dir.sub("o"), 0, cfg, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not both"));
  }
  EXPECT_THROW(run_synth(cfg, dir.sub("o"), 0, "", false, 0.0), Error);
  // hf_quant_config without a 'quantization' object.
  try {
    run_synth(cfg, dir.sub("o"), 0, write_json(dir, "bad.json", Json{{"x", 1}}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("quantization"));
  }
  // NVFP4 needs in_features divisible by 16: a width of 120 cannot be quantized.
  Json c = fixture_config("nano-moe");
  c["moe_intermediate_size"] = 40;
  const Json hf = {{"quantization", {{"quant_algo", "NVFP4"}, {"group_size", 16}}}};
  try {
    run_synth(write_json(dir, "odd.json", c), dir.sub("o2"), 0, write_json(dir, "nv.json", hf));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a multiple of 16"));
  }
  // An unsupported algorithm in the quant config is rejected by the loader's parser.
  const Json bad_algo = {{"quantization", {{"quant_algo", "INT4"}}}};
  EXPECT_THROW(run_synth(cfg, dir.sub("o3"), 0, write_json(dir, "int4.json", bad_algo)), Error);
  EXPECT_FALSE(fs::exists(dir.sub("o3")));  // validated before anything is written
}

// The master laws: norms near 1, A_log = log(U[1,16]), softplus(dt_bias) in [1e-3, 1e-1],
// linear weights with std 1/sqrt(in) (residual writers smaller).
TEST(Synth, MasterValueLawsLookLikeTrainedWeights) {
  const Config c = load_config(nemotron::testing::fixture_dir("nano-moe"));
  const synth::Plan plan = synth::plan_checkpoint(c, QuantConfig{});
  int seen = 0;
  for (const auto& t : plan.tensors) {
    const int64_t n = t.rows * t.cols;
    std::vector<float> v(static_cast<std::size_t>(n));
    synth::master_values(9, t.master, t.law, 0, n, v.data());
    double sum = 0, sq = 0;
    for (float x : v) { sum += x; sq += double(x) * x; }
    const double mean = sum / n, sd = std::sqrt(std::max(0.0, sq / n - mean * mean));
    SCOPED_TRACE(t.name);
    if (t.name.ends_with("A_log")) {
      for (float x : v) { EXPECT_GE(x, 0.0f); EXPECT_LE(x, std::log(16.0f) + 1e-6f); }
      ++seen;
    } else if (t.name.ends_with("dt_bias")) {
      for (float x : v) {
        const float dt = std::log1p(std::exp(x));
        EXPECT_GE(dt, 0.999e-3f);
        EXPECT_LE(dt, 1.001e-1f);
      }
      ++seen;
    } else if (t.name.ends_with("norm.weight") || t.name.ends_with("norm_f.weight")) {
      EXPECT_NEAR(mean, 1.0, 0.02);
      EXPECT_LT(sd, 0.05);
      ++seen;
    } else if (t.name.ends_with("in_proj.weight") && n > 10000) {
      EXPECT_NEAR(mean, 0.0, 0.01);
      EXPECT_NEAR(sd, 1.0 / std::sqrt(double(t.cols)), 0.02 / std::sqrt(double(t.cols)) * 5);
      ++seen;
    } else if (t.name.ends_with("out_proj.weight")) {
      EXPECT_LT(sd, 0.6 / std::sqrt(double(t.cols)));  // scaled down by 1/sqrt(2*num_layers)
      ++seen;
    } else if (t.name == "backbone.embeddings.weight") {
      EXPECT_NEAR(sd, 1.0, 0.01);
      ++seen;
    }
  }
  EXPECT_GT(seen, 15);
}

// tie_word_embeddings: no lm_head tensor is written; the loader reuses the embedding table.
TEST(Synth, TiedEmbeddingsWriteNoLmHead) {
  TempDir dir;
  Json c = fixture_config("nano-moe");
  c["tie_word_embeddings"] = true;
  run_synth(write_json(dir, "in.json", c), dir.sub("out"));
  const Model m = Model::load(dir.sub("out"));
  EXPECT_EQ(m.checkpoint.find("lm_head.weight"), nullptr);
  EXPECT_EQ(m.weights.lm_head.w.data, m.weights.embeddings.data);
}
