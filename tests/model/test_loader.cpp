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
