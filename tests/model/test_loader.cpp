// Checkpoint validation: each defect a copied fixture can have is rejected with a message
// naming the tensor, key or file at fault; quantization configs; wildcard matching.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "temp_dir.h"
#include "fixture_util.h"
#include "model/cpu/cpu_forward.h"
#include "model/checkpoint/weights.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::model;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

using nemotron::testing::TempDir;

using Tensors = std::vector<TensorData>;

Tensors read_all(const std::string& file) {
  auto f = SafetensorsFile::open(file);
  Tensors out;
  for (const auto& [name, t] : f->tensors()) out.push_back({name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
  return out;
}

TensorData* find(Tensors& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return &t;
  return nullptr;
}

void remove_tensor(Tensors& ts, const std::string& name) {
  std::erase_if(ts, [&](const TensorData& t) { return t.name == name; });
}

// Copies a single-file fixture into `dir`, letting `patch` change its tensors and config.
void make_variant(const std::string& fixture, const TempDir& dir, const std::function<void(Tensors&, Json&)>& patch) {
  const std::string src = nemotron::testing::fixture_dir(fixture);
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().extension() == ".json") fs::copy_file(e.path(), dir.path() / e.path().filename());
  Tensors ts = read_all(src + "/model.safetensors");
  Json config = read_json_file(src + "/config.json");
  patch(ts, config);
  write_safetensors((dir.path() / "model.safetensors").string(), ts);
  std::ofstream((dir.path() / "config.json").string()) << config.dump(2);
}

std::string load_error(const std::string& dir) {
  try {
    Model::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded without error)";
}

TensorData f32_scalar(const std::string& name, float v) {
  TensorData t{name, DType::F32, {}, std::vector<uint8_t>(4)};
  std::memcpy(t.bytes.data(), &v, 4);
  return t;
}

TEST(Loader, UnchangedCopyLoads) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors&, Json&) {});
  EXPECT_NO_THROW(Model::load(d.str()));
}

TEST(Loader, MissingTensor) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors& ts, Json&) { remove_tensor(ts, "backbone.layers.0.mixer.D"); });
  EXPECT_THAT(load_error(d.str()), HasSubstr("missing tensor backbone.layers.0.mixer.D [8]"));
}

TEST(Loader, MissingExpert) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors& ts, Json&) { remove_tensor(ts, "backbone.layers.4.mixer.experts.15.down_proj.weight"); });
  EXPECT_THAT(load_error(d.str()), HasSubstr("missing tensor backbone.layers.4.mixer.experts.15.down_proj.weight"));
}

TEST(Loader, UnexpectedTensor) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors& ts, Json&) {
    ts.push_back(f32_scalar("backbone.layers.0.mixer.mystery", 1.0f));
  });
  EXPECT_THAT(load_error(d.str()), HasSubstr("unexpected tensor backbone.layers.0.mixer.mystery"));
}

TEST(Loader, MtpTensorsWithoutMtpConfig) {
  TempDir d;
  make_variant("super-mixed-mtp", d, [](Tensors&, Json& c) { c["num_nextn_predict_layers"] = 0; });
  const std::string msg = load_error(d.str());
  EXPECT_THAT(msg, HasSubstr("unexpected tensor mtp."));
  EXPECT_THAT(msg, HasSubstr("num_nextn_predict_layers is 0"));
}

TEST(Loader, ShardedCheckpointLoads) {
  const Model m = Model::load(nemotron::testing::fixture_dir("super-latent-mtp"));
  EXPECT_TRUE(m.config.has_mtp());
  EXPECT_EQ(m.weights.mtp.blocks.size(), 2u);
}

TEST(Loader, WrongShape) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors& ts, Json&) {
    auto* t = find(ts, "lm_head.weight");
    t->shape = {511, 128};
    t->bytes.resize(511 * 128 * 2);
  });
  EXPECT_THAT(load_error(d.str()), HasSubstr("tensor lm_head.weight"));
  EXPECT_THAT(load_error(d.str()), HasSubstr("has shape [511, 128], expected [512, 128]"));
}

TEST(Loader, WrongDtypeForParameter) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors& ts, Json&) {
    auto* t = find(ts, "backbone.layers.0.mixer.A_log");
    t->dtype = DType::U8;
    t->bytes.resize(8);
  });
  EXPECT_THAT(load_error(d.str()), HasSubstr("backbone.layers.0.mixer.A_log"));
  EXPECT_THAT(load_error(d.str()), HasSubstr("must be a float tensor"));
}

TEST(Loader, FormatDisagreesWithQuantConfig) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors& ts, Json&) {
    // Layer 0's in_proj should be NVFP4; store it as BF16 instead.
    for (const char* s : {".weight", ".weight_scale", ".weight_scale_2", ".input_scale"}) remove_tensor(ts, std::string("backbone.layers.0.mixer.in_proj") + s);
    ts.push_back({"backbone.layers.0.mixer.in_proj.weight", DType::BF16, {328, 128}, std::vector<uint8_t>(328 * 128 * 2)});
  });
  const std::string msg = load_error(d.str());
  EXPECT_THAT(msg, HasSubstr("backbone.layers.0.mixer.in_proj.weight"));
  EXPECT_THAT(msg, HasSubstr("is stored as BF16 but"));
  EXPECT_THAT(msg, HasSubstr("makes it NVFP4"));
}

TEST(Loader, NvfpMissingGlobalScale) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors& ts, Json&) { remove_tensor(ts, "backbone.layers.1.mixer.experts.3.up_proj.weight_scale_2"); });
  EXPECT_THAT(load_error(d.str()), HasSubstr("missing tensor backbone.layers.1.mixer.experts.3.up_proj.weight_scale_2"));
}

TEST(Loader, NvfpBlockScaleWrongDtype) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors& ts, Json&) {
    auto* t = find(ts, "backbone.layers.1.mixer.shared_experts.up_proj.weight_scale");
    t->dtype = DType::U8;
  });
  EXPECT_THAT(load_error(d.str()), HasSubstr("shared_experts.up_proj.weight_scale"));
  EXPECT_THAT(load_error(d.str()), HasSubstr("must be F8_E4M3"));
}

TEST(Loader, NonPositiveScale) {
  TempDir d;
  make_variant("super-mixed-mtp", d, [](Tensors& ts, Json&) {
    *find(ts, "backbone.layers.0.mixer.in_proj.weight_scale") = f32_scalar("backbone.layers.0.mixer.in_proj.weight_scale", -1.0f);
  });
  EXPECT_THAT(load_error(d.str()), HasSubstr("backbone.layers.0.mixer.in_proj.weight_scale"));
  EXPECT_THAT(load_error(d.str()), HasSubstr("must be a positive finite scale"));
}

TEST(Loader, RouterGateIsNeverQuantized) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors& ts, Json&) {
    auto* t = find(ts, "backbone.layers.1.mixer.gate.weight");
    t->dtype = DType::F8_E4M3;
    t->bytes.resize(16 * 128);
  });
  EXPECT_THAT(load_error(d.str()), HasSubstr("gate.weight"));
  EXPECT_THAT(load_error(d.str()), HasSubstr("never quantized"));
}

TEST(Loader, TruncatedFile) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors&, Json&) {});
  const auto p = d.path() / "model.safetensors";
  fs::resize_file(p, fs::file_size(p) - 1000);
  const std::string msg = load_error(d.str());
  EXPECT_THAT(msg, HasSubstr("model.safetensors"));
  EXPECT_THAT(msg, HasSubstr("truncated"));
}

TEST(Loader, MissingConfig) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors&, Json&) {});
  fs::remove(d.path() / "config.json");
  EXPECT_THAT(load_error(d.str()), HasSubstr("config.json: file not found"));
  EXPECT_THAT(load_error("/nonexistent/model"), HasSubstr("/nonexistent/model: not a model directory"));
}

TEST(Loader, TiedEmbeddingsWithoutLmHead) {
  TempDir d;
  make_variant("nano-moe", d, [](Tensors& ts, Json& c) {
    remove_tensor(ts, "lm_head.weight");
    c["tie_word_embeddings"] = true;
  });
  const Model m = Model::load(d.str());
  EXPECT_EQ(m.weights.lm_head.w.data, m.weights.embeddings.data);
  TempDir d2;
  make_variant("nano-moe", d2, [](Tensors& ts, Json&) { remove_tensor(ts, "lm_head.weight"); });
  EXPECT_THAT(load_error(d2.str()), HasSubstr("missing tensor lm_head.weight"));
}

// --- quantization configs ---

TEST(QuantConfig, UnsupportedAlgorithm) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors&, Json& c) { c["quantization_config"]["quant_algo"] = "INT4_AWQ"; });
  const std::string msg = load_error(d.str());
  EXPECT_THAT(msg, HasSubstr("quant_algo"));
  EXPECT_THAT(msg, HasSubstr("INT4_AWQ"));
}

TEST(QuantConfig, FilesDisagree) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors&, Json& c) { c["quantization_config"]["exclude_modules"].push_back("backbone.layers.0.mixer.in_proj"); });
  EXPECT_THAT(load_error(d.str()), HasSubstr("list different modules"));
}

TEST(QuantConfig, OtherQuantMethod) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors&, Json& c) { c["quantization_config"]["quant_method"] = "compressed-tensors"; });
  EXPECT_THAT(load_error(d.str()), HasSubstr("only ModelOpt checkpoints"));
}

TEST(QuantConfig, GroupSize) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors&, Json& c) { c["quantization_config"]["group_size"] = 32; });
  fs::remove(d.path() / "hf_quant_config.json");
  EXPECT_THAT(load_error(d.str()), HasSubstr("'group_size': only 16 is supported"));
}

TEST(QuantConfig, ConfigJsonAloneIsEnough) {
  TempDir d;
  make_variant("nano-nvfp4", d, [](Tensors&, Json&) {});
  fs::remove(d.path() / "hf_quant_config.json");
  const Model m = Model::load(d.str());
  EXPECT_EQ(m.quant.quant_algo, "NVFP4");
  EXPECT_EQ(m.weights.blocks[0].mamba.in_proj.w.format, WeightFormat::NVFP4);
  EXPECT_EQ(m.weights.blocks[2].mamba.in_proj.w.format, WeightFormat::Dense);
}

TEST(QuantConfig, WildcardExcludes) {
  TempDir d;
  // Replace the explicit exclude list by wildcards covering the same modules.
  make_variant("nano-nvfp4", d, [](Tensors&, Json& c) {
    c["quantization_config"]["exclude_modules"] = Json::array(
        {"*conv1d*", "backbone.layers.[27].mixer.*_proj", "backbone.layers.?.mixer.[qkvo]_proj", "lm_head"});
  });
  fs::remove(d.path() / "hf_quant_config.json");
  EXPECT_NO_THROW(Model::load(d.str()));
}

TEST(QuantConfig, WildcardMatcher) {
  EXPECT_TRUE(wildcard_match("*", "anything"));
  EXPECT_TRUE(wildcard_match("backbone.layers.*.mixer.conv1d", "backbone.layers.12.mixer.conv1d"));
  EXPECT_FALSE(wildcard_match("backbone.layers.*.mixer.conv1d", "backbone.layers.12.mixer.in_proj"));
  EXPECT_TRUE(wildcard_match("*lm_head", "lm_head"));
  EXPECT_TRUE(wildcard_match("layers.?.x", "layers.7.x"));
  EXPECT_FALSE(wildcard_match("layers.?.x", "layers.17.x"));
  EXPECT_TRUE(wildcard_match("l[0-3]", "l2"));
  EXPECT_FALSE(wildcard_match("l[0-3]", "l5"));
  EXPECT_TRUE(wildcard_match("l[!0-3]", "l5"));
  EXPECT_TRUE(wildcard_match("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(wildcard_match("a*b*c", "aXXbYY"));
  EXPECT_TRUE(wildcard_match("[", "["));  // unterminated class matches literally
}

TEST(QuantConfig, MixedPrecisionUnlistedModulesAreDense) {
  const Model m = Model::load(nemotron::testing::fixture_dir("super-mixed-mtp"));
  EXPECT_EQ(m.weights.blocks[0].mamba.in_proj.w.format, WeightFormat::FP8);
  EXPECT_EQ(m.weights.blocks[0].mamba.out_proj.w.format, WeightFormat::Dense);
  EXPECT_EQ(m.weights.blocks[1].moe.up[0].w.format, WeightFormat::NVFP4);
  EXPECT_EQ(m.weights.mtp.blocks[1].moe.up[0].w.format, WeightFormat::Dense);
}

}  // namespace

// --- FP8 KV cache: kv_cache_quant_algo and the k/v scales ---

namespace {

void set_kv_algo(const TempDir& d, const Json& value, bool in_config, bool in_file) {
  if (in_config) {
    Json c = read_json_file(d.sub("config.json"));
    c["quantization_config"]["kv_cache_quant_algo"] = value;
    std::ofstream(d.sub("config.json")) << c.dump(2);
  }
  if (in_file) {
    Json q = read_json_file(d.sub("hf_quant_config.json"));
    q["quantization"]["kv_cache_quant_algo"] = value;
    std::ofstream(d.sub("hf_quant_config.json")) << q.dump(2);
  }
}

}  // namespace

TEST(QuantConfig, KvCacheQuantAlgo) {
  {
    TempDir d;
    make_variant("nano-nvfp4", d, [](Tensors&, Json&) {});
    EXPECT_EQ(Model::load(d.str()).quant.kv_cache_quant_algo, "");  // null in both files
    set_kv_algo(d, "FP8", true, true);
    EXPECT_EQ(Model::load(d.str()).quant.kv_cache_quant_algo, "FP8");
  }
  {  // Only hf_quant_config.json names it (config.json lacks the key): it holds.
    TempDir d;
    make_variant("nano-nvfp4", d, [](Tensors&, Json& c) { c["quantization_config"].erase("kv_cache_quant_algo"); });
    set_kv_algo(d, "FP8", false, true);
    EXPECT_EQ(Model::load(d.str()).quant.kv_cache_quant_algo, "FP8");
  }
  {  // config.json alone.
    TempDir d;
    make_variant("nano-nvfp4", d, [](Tensors&, Json&) {});
    fs::remove(d.path() / "hf_quant_config.json");
    set_kv_algo(d, "FP8", true, false);
    EXPECT_EQ(Model::load(d.str()).quant.kv_cache_quant_algo, "FP8");
  }
  {  // An unsupported value: an error naming the file and key.
    TempDir d;
    make_variant("nano-nvfp4", d, [](Tensors&, Json&) {});
    set_kv_algo(d, "INT8", false, true);
    const std::string msg = load_error(d.str());
    EXPECT_THAT(msg, HasSubstr("hf_quant_config.json: quantization: key 'kv_cache_quant_algo': unsupported \"INT8\""));
    set_kv_algo(d, "FP8", false, true);
    set_kv_algo(d, Json::array({"FP8"}), true, false);
    EXPECT_THAT(load_error(d.str()), HasSubstr("config.json: quantization_config: key 'kv_cache_quant_algo': unsupported"));
  }
  {  // The two files disagree.
    TempDir d;
    make_variant("nano-nvfp4", d, [](Tensors&, Json&) {});
    set_kv_algo(d, "FP8", false, true);
    EXPECT_THAT(load_error(d.str()), HasSubstr("says kv_cache_quant_algo FP8 but config.json says null"));
  }
}

TEST(Loader, KvScalesBothSpellings) {
  // nano-moe: attention at layers 3 and 8; super-mixed-mtp: trunk layer 5 and the MTP head's block 0.
  {
    TempDir d;
    make_variant("nano-moe", d, [](Tensors& ts, Json&) {
      ts.push_back(f32_scalar("backbone.layers.3.mixer.k_proj.k_scale", 0.5f));
      ts.push_back(f32_scalar("backbone.layers.3.mixer.v_proj.v_scale", 0.25f));
      TensorData t = f32_scalar("backbone.layers.8.mixer.k_scale", 0.125f);  // on the module, shape [1]
      t.shape = {1};
      ts.push_back(t);
      ts.push_back(f32_scalar("backbone.layers.8.mixer.v_scale", 3.0f));
    });
    const Model m = Model::load(d.str());
    const auto& a3 = m.weights.blocks[3].attn;
    const auto& a8 = m.weights.blocks[8].attn;
    EXPECT_TRUE(a3.has_kv_scales);
    EXPECT_EQ(a3.k_scale, 0.5f);
    EXPECT_EQ(a3.v_scale, 0.25f);
    EXPECT_EQ(a8.k_scale, 0.125f);
    EXPECT_EQ(a8.v_scale, 3.0f);
  }
  {
    TempDir d;
    make_variant("super-mixed-mtp", d, [](Tensors& ts, Json&) {
      ts.push_back(f32_scalar("mtp.layers.0.mixer.k_proj.k_scale", 0.75f));  // v_scale absent: 1
    });
    const Model m = Model::load(d.str());
    ASSERT_EQ(m.weights.mtp.blocks[0].kind, LayerKind::Attention);
    EXPECT_EQ(m.weights.mtp.blocks[0].attn.k_scale, 0.75f);
    EXPECT_EQ(m.weights.mtp.blocks[0].attn.v_scale, 1.0f);
    EXPECT_TRUE(m.weights.mtp.blocks[0].attn.has_kv_scales);
    EXPECT_FALSE(m.weights.blocks[5].attn.has_kv_scales);  // none: 1 (Nano NVFP4 ships none)
    EXPECT_EQ(m.weights.blocks[5].attn.k_scale, 1.0f);
  }
}

TEST(Loader, BadKvScales) {
  const std::string k = "backbone.layers.3.mixer.k_proj.k_scale";
  auto error_with = [&](const std::function<void(Tensors&)>& add) {
    TempDir d;
    make_variant("nano-moe", d, [&](Tensors& ts, Json&) { add(ts); });
    return load_error(d.str());
  };
  std::string msg = error_with([&](Tensors& ts) {
    TensorData t{k, DType::BF16, {}, {0x80, 0x3F}};
    ts.push_back(t);
  });
  EXPECT_THAT(msg, HasSubstr("tensor " + k));
  EXPECT_THAT(msg, HasSubstr("must be an F32 scalar ([] or [1]), got BF16"));
  msg = error_with([&](Tensors& ts) {
    TensorData t{k, DType::F32, {2}, std::vector<uint8_t>(8)};
    ts.push_back(t);
  });
  EXPECT_THAT(msg, HasSubstr("tensor " + k));
  EXPECT_THAT(msg, HasSubstr("got F32 [2]"));
  msg = error_with([&](Tensors& ts) { ts.push_back(f32_scalar(k, std::nanf(""))); });
  EXPECT_THAT(msg, HasSubstr("tensor " + k));
  EXPECT_THAT(msg, HasSubstr("must be a positive finite scale"));
  msg = error_with([&](Tensors& ts) { ts.push_back(f32_scalar("backbone.layers.8.mixer.v_scale", -0.5f)); });
  EXPECT_THAT(msg, HasSubstr("tensor backbone.layers.8.mixer.v_scale"));
  EXPECT_THAT(msg, HasSubstr("must be a positive finite scale, got -0.5"));
  msg = error_with([&](Tensors& ts) { ts.push_back(f32_scalar(k, 0.0f)); });
  EXPECT_THAT(msg, HasSubstr("must be a positive finite scale, got 0"));
  msg = error_with([&](Tensors& ts) {
    ts.push_back(f32_scalar(k, 0.5f));
    ts.push_back(f32_scalar("backbone.layers.3.mixer.k_scale", 0.5f));
  });
  EXPECT_THAT(msg, HasSubstr("same KV-cache scale spelled twice"));
  // On a block that is not attention: unexpected, with a hint where scales go.
  msg = error_with([&](Tensors& ts) { ts.push_back(f32_scalar("backbone.layers.0.mixer.k_proj.k_scale", 0.5f)); });
  EXPECT_THAT(msg, HasSubstr("unexpected tensor backbone.layers.0.mixer.k_proj.k_scale"));
  EXPECT_THAT(msg, HasSubstr("KV-cache scales are read from"));
}
