// config.json parsing: every spelling of the released models and fixtures, and a specific
// error (naming the key) for each malformed or unsupported input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include "model/checkpoint/config.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::model;
using ::testing::HasSubstr;

namespace {

// A small valid config; tests patch keys.
Json base() {
  return parse_json(R"({
    "model_type": "nemotron_h", "vocab_size": 512, "hidden_size": 128,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
    "mamba_num_heads": 8, "mamba_head_dim": 16, "ssm_state_size": 16, "n_groups": 2,
    "conv_kernel": 4, "chunk_size": 16, "n_routed_experts": 16, "num_experts_per_tok": 4,
    "moe_intermediate_size": 48, "moe_shared_expert_intermediate_size": 96,
    "routed_scaling_factor": 2.5, "hybrid_override_pattern": "MEM*E", "num_hidden_layers": 5,
    "time_step_limit": [0.0, Infinity], "layer_norm_epsilon": 1e-5})", "base");
}

Config parse(const Json& j) { return parse_config(j.dump(), "test/config.json"); }

std::string error_of(const Json& j) {
  try {
    parse(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Config, ParsesBaseAndDerivedSizes) {
  const Config c = parse_config(R"({"model_type": "nemotron_h", "vocab_size": 512, "hidden_size": 128,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "mamba_num_heads": 8,
    "mamba_head_dim": 16, "ssm_state_size": 16, "n_groups": 2, "conv_kernel": 4,
    "n_routed_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 48,
    "moe_shared_expert_intermediate_size": 96, "hybrid_override_pattern": "MEM*E",
    "time_step_limit": [0.0, Infinity]})", "x");
  EXPECT_EQ(c.pattern(), "MEM*E");
  EXPECT_EQ(c.d_inner(), 128);
  EXPECT_EQ(c.conv_dim(), 128 + 2 * 2 * 16);
  EXPECT_EQ(c.in_proj_dim(), 2 * 128 + 2 * 2 * 16 + 8);
  EXPECT_TRUE(std::isinf(c.time_step_limit_max));
  EXPECT_EQ(c.time_step_limit_min, 0.0);
  EXPECT_FALSE(c.has_mtp());
}

TEST(Config, RealNanoSuperUltraShapes) {
  // Real-shape configs (copied from ../shared/configs).
  const Config nano = load_config(std::string(NEMOTRON_TEST_DATA) + "/configs/nano-30b-a3b.config.json");
  EXPECT_EQ(nano.num_layers(), 52);
  EXPECT_EQ(nano.count(LayerKind::Mamba), 23);
  EXPECT_EQ(nano.count(LayerKind::Attention), 6);
  EXPECT_EQ(nano.d_inner(), 4096);
  EXPECT_EQ(nano.in_proj_dim(), 10304);
  const Config super = load_config(std::string(NEMOTRON_TEST_DATA) + "/configs/super-120b-a12b.config.json");
  EXPECT_EQ(super.num_layers(), 88);
  EXPECT_EQ(super.moe_latent_size, 1024);
  EXPECT_TRUE(super.has_mtp());
  EXPECT_EQ(super.mtp_pattern(), "*E");
  const Config ultra = load_config(std::string(NEMOTRON_TEST_DATA) + "/configs/ultra-550b-a55b.config.json");
  EXPECT_EQ(ultra.num_layers(), 108);
  EXPECT_EQ(ultra.count(LayerKind::Attention), 12);
  EXPECT_EQ(ultra.hidden_size, 8192);
}

TEST(Config, ListFormWithNullLayerCountAndTransformersNames) {
  Json j = base();
  j.erase("hybrid_override_pattern");
  j["num_hidden_layers"] = nullptr;
  j["layers_block_type"] = Json::array({"mamba", "moe", "linear_attention", "full_attention", "moe"});
  const Config c = parse(j);
  EXPECT_EQ(c.pattern(), "MEM*E");
  j.erase("num_hidden_layers");
  EXPECT_EQ(parse(j).num_layers(), 5);
}

TEST(Config, BothSpellingsMustAgree) {
  Json j = base();
  j["layers_block_type"] = Json::array({"mamba", "moe", "mamba", "attention", "moe"});
  EXPECT_EQ(parse(j).pattern(), "MEM*E");
  j["layers_block_type"][0] = "moe";
  EXPECT_THAT(error_of(j), HasSubstr("'hybrid_override_pattern': disagrees with layers_block_type"));
}

TEST(Config, AliasKeys) {
  Json j = base();
  j.erase("n_groups");
  j.erase("conv_kernel");
  j.erase("ssm_state_size");
  j["mamba_n_groups"] = 4;
  j["mamba_d_conv"] = 3;
  j["mamba_d_state"] = 8;
  j.erase("layer_norm_epsilon");
  j["norm_eps"] = 1e-6;
  const Config c = parse(j);
  EXPECT_EQ(c.n_groups, 4);
  EXPECT_EQ(c.conv_kernel, 3);
  EXPECT_EQ(c.ssm_state_size, 8);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
}

TEST(Config, MtpSpellingsAndDefault) {
  Json j = base();
  j["num_nextn_predict_layers"] = 1;
  EXPECT_EQ(parse(j).mtp_pattern(), "*E");  // transformers' default
  j["mtp_layers_block_type"] = Json::array({"attention", "moe"});
  EXPECT_EQ(parse(j).mtp_pattern(), "*E");
  j.erase("mtp_layers_block_type");
  j["mtp_hybrid_override_pattern"] = "*E-";
  j["intermediate_size"] = 64;
  EXPECT_EQ(parse(j).mtp_pattern(), "*E-");
  j["num_nextn_predict_layers"] = 2;
  EXPECT_THAT(error_of(j), HasSubstr("'num_nextn_predict_layers': only 0 or 1"));
  j["num_nextn_predict_layers"] = 1;
  j["mtp_hybrid_override_pattern"] = "M";
  EXPECT_THAT(error_of(j), HasSubstr("Mamba blocks in the MTP head are not supported"));
}

TEST(Config, EosTokenIdIntOrList) {
  Json j = base();
  j["eos_token_id"] = 2;
  EXPECT_EQ(parse(j).eos_token_ids, (std::vector<int64_t>{2}));
  j["eos_token_id"] = Json::array({2, 11});
  EXPECT_EQ(parse(j).eos_token_ids, (std::vector<int64_t>{2, 11}));
  j["eos_token_id"] = "x";
  EXPECT_THAT(error_of(j), HasSubstr("'eos_token_id': expected a token id or a list"));
}

TEST(Config, LatentSizeNullOrAbsent) {
  Json j = base();
  j["moe_latent_size"] = nullptr;
  EXPECT_EQ(parse(j).moe_latent_size, 0);
  j["moe_latent_size"] = 64;
  EXPECT_EQ(parse(j).moe_latent_size, 64);
  EXPECT_EQ(parse(j).expert_input_dim(), 64);
}

struct BadCase {
  const char* what;
  void (*patch)(Json&);
  const char* message;
};

const BadCase kBad[] = {
    {"unknown model type", [](Json& j) { j["model_type"] = "llama"; }, "'model_type': unsupported model type \"llama\""},
    {"missing model type", [](Json& j) { j.erase("model_type"); }, "'model_type': missing"},
    {"no pattern", [](Json& j) { j.erase("hybrid_override_pattern"); }, "neither hybrid_override_pattern nor layers_block_type"},
    {"bad symbol", [](Json& j) { j["hybrid_override_pattern"] = "MEX"; }, "unknown layer symbol 'X' at position 2"},
    {"bad block type", [](Json& j) { j.erase("hybrid_override_pattern"); j["layers_block_type"] = Json::array({"mamba", "rnn"}); j.erase("num_hidden_layers"); }, "'layers_block_type': unknown block type 'rnn' at index 1"},
    {"layer count mismatch", [](Json& j) { j["num_hidden_layers"] = 7; }, "'num_hidden_layers': 7 disagrees with the layer pattern's 5 layers"},
    {"missing hidden", [](Json& j) { j.erase("hidden_size"); }, "'hidden_size': missing"},
    {"string for int", [](Json& j) { j["hidden_size"] = "128"; }, "'hidden_size': expected an integer"},
    {"negative vocab", [](Json& j) { j["vocab_size"] = -1; }, "'vocab_size': must be positive"},
    {"missing mamba key", [](Json& j) { j.erase("mamba_num_heads"); }, "'mamba_num_heads': missing"},
    {"mamba groups", [](Json& j) { j["n_groups"] = 3; }, "'n_groups': mamba_num_heads (8) must be a multiple of n_groups (3)"},
    {"mamba activation", [](Json& j) { j["mamba_hidden_act"] = "gelu"; }, "'mamba_hidden_act': unsupported activation \"gelu\""},
    {"moe activation", [](Json& j) { j["mlp_hidden_act"] = "silu"; }, "'mlp_hidden_act': unsupported activation \"silu\""},
    {"kv heads", [](Json& j) { j["num_key_value_heads"] = 3; }, "'num_key_value_heads': num_attention_heads (4) must be a multiple"},
    {"top-k too large", [](Json& j) { j["num_experts_per_tok"] = 17; }, "'num_experts_per_tok': exceeds"},
    {"router groups", [](Json& j) { j["n_group"] = 3; }, "'n_group': n_routed_experts (16) must be a multiple of n_group (3)"},
    {"topk_group", [](Json& j) { j["n_group"] = 2; j["topk_group"] = 3; }, "'topk_group': must not exceed n_group"},
    {"dt limit shape", [](Json& j) { j["time_step_limit"] = Json::array({0.0}); }, "'time_step_limit': expected [min, max]"},
    {"dt limit type", [](Json& j) { j["time_step_limit"] = Json::array({"a", 1}); }, "'time_step_limit[0]': expected a number"},
    {"mamba bias", [](Json& j) { j["use_bias"] = true; }, "'use_bias': biases on Mamba in_proj/out_proj are not supported"},
    {"attention bias", [](Json& j) { j["attention_bias"] = true; }, "'attention_bias': attention biases are not supported"},
    {"bool type", [](Json& j) { j["norm_topk_prob"] = 1; }, "'norm_topk_prob': expected true or false"},
    {"eps", [](Json& j) { j["layer_norm_epsilon"] = 0; }, "'layer_norm_epsilon': must be a positive number"},
    {"mlp without size", [](Json& j) { j["hybrid_override_pattern"] = "M-M*E"; }, "'intermediate_size': missing"},
    // Absurd sizes: their products (d_inner = Hm * P, q_dim = Hq * Dh) overflowed int64 (UBSan,
    // found by fuzzing config.json).
    {"huge mamba sizes", [](Json& j) { j["mamba_num_heads"] = int64_t{1} << 40; j["mamba_head_dim"] = int64_t{1} << 40; },
     "'mamba_num_heads': 1099511627776 is larger than the supported 16777216"},
    {"huge head_dim", [](Json& j) { j["head_dim"] = int64_t{1} << 32; }, "'head_dim': 4294967296 is larger than the supported"},
    {"huge vocab", [](Json& j) { j["vocab_size"] = (int64_t{1} << 24) + 1; }, "'vocab_size': 16777217 is larger"},
};

TEST(Config, EveryMalformedInputNamesItsKey) {
  for (const auto& bad : kBad) {
    Json j = base();
    bad.patch(j);
    const std::string msg = error_of(j);
    EXPECT_THAT(msg, HasSubstr(bad.message)) << bad.what;
    EXPECT_THAT(msg, HasSubstr("test/config.json")) << bad.what;
  }
}

// Issue 18: a NaN rope_theta was accepted while other NaN keys were refused. Every number of
// config.json, read by the parser or not, must be finite (the one exception: the upper
// time-step limit's Infinity, transformers' default). Table-driven over every numeric value
// of every config.json in the repository, so a key added to a checkpoint's config, or read
// by the parser later, cannot be missed.
void numeric_leaves(const Json& v, const Json::json_pointer& ptr, const std::string& key,
                    std::vector<std::pair<Json::json_pointer, std::string>>& out) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it)
      numeric_leaves(it.value(), ptr / it.key(), key.empty() ? it.key() : key + "." + it.key(), out);
  } else if (v.is_array()) {
    for (std::size_t i = 0; i < v.size(); ++i) numeric_leaves(v[i], ptr / i, key + "[" + std::to_string(i) + "]", out);
  } else if (v.is_number() || v == "Infinity") {
    out.emplace_back(ptr, key);
  }
}

std::vector<std::string> repository_configs() {
  namespace fs = std::filesystem;
  std::vector<std::string> files = {std::string(NEMOTRON_SOURCE_DIR) + "/models/demo/config.json"};
  for (const auto& e : fs::directory_iterator(std::string(NEMOTRON_TEST_DATA) + "/configs"))
    if (e.path().string().size() > 12 && e.path().string().ends_with(".config.json")) files.push_back(e.path().string());
  for (const auto& e : fs::directory_iterator(std::string(NEMOTRON_TEST_DATA) + "/fixtures"))
    if (fs::exists(e.path() / "config.json")) files.push_back((e.path() / "config.json").string());
  return files;
}

TEST(Config, NonFiniteNumberAtAnyKeyIsRefusedNamingFileAndKey) {
  const auto files = repository_configs();
  ASSERT_GE(files.size(), 6u);
  int cases = 0;
  for (const std::string& file : files) {
    const Json root = read_json_file(file);
    ASSERT_NO_THROW(parse_config(python_json(root), file)) << file;
    std::vector<std::pair<Json::json_pointer, std::string>> leaves;
    numeric_leaves(root, Json::json_pointer(), "", leaves);
    ASSERT_GT(leaves.size(), 20u) << file;
    for (const auto& [ptr, key] : leaves) {
      for (const char* special : {"NaN", "Infinity", "-Infinity"}) {
        Json j = root;
        j[ptr] = special;  // python_json writes it as the bare token, as Python's json.dumps does
        const bool allowed = std::string(special) == "Infinity" && (key == "time_step_limit[1]" || key == "mamba_dt_limit[1]");
        try {
          parse_config(python_json(j), file);
          EXPECT_TRUE(allowed) << file << ": " << key << " = " << special << " was accepted";
        } catch (const Error& e) {
          EXPECT_FALSE(allowed) << file << ": " << key << " = " << special << ": " << e.what();
          EXPECT_THAT(e.what(), HasSubstr(file + ": key '" + key + "'")) << special;
          EXPECT_THAT(e.what(), HasSubstr(std::string("finite number, got ") + special)) << key;
        }
        ++cases;
      }
    }
  }
  EXPECT_GT(cases, 1000);
}

TEST(Config, EveryFloatTheParserReadsIsChecked) {
  // The float keys parse_config reads, under each alias: NaN and +-Infinity are refused.
  struct FloatKey {
    const char* key;    // where the value goes
    const char* erase;  // the key it is an alias of (removed), or ""
  };
  const FloatKey keys[] = {
      {"layer_norm_epsilon", ""}, {"norm_eps", "layer_norm_epsilon"}, {"rms_norm_eps", "layer_norm_epsilon"},
      {"routed_scaling_factor", ""}, {"time_step_limit[0]", ""}, {"time_step_limit[1]", ""},
      {"mamba_dt_limit[0]", "time_step_limit"}, {"mamba_dt_limit[1]", "time_step_limit"},
      {"rope_theta", ""},  // not read (this model has no RoPE), refused all the same
  };
  for (const auto& k : keys) {
    for (const char* special : {"NaN", "Infinity", "-Infinity"}) {
      Json j = base();
      if (*k.erase) j.erase(k.erase);
      const std::string key = k.key;
      const auto bracket = key.find('[');
      if (bracket == std::string::npos) {
        j[key] = special;
      } else {
        const std::string name = key.substr(0, bracket);
        if (!j.contains(name)) j[name] = Json::array({0.0, 1.0});
        j[name][key[bracket + 1] - '0'] = special;
      }
      const bool allowed = std::string(special) == "Infinity" && key.ends_with("[1]");
      std::string msg;
      try {
        parse_config(python_json(j), "test/config.json");
      } catch (const Error& e) {
        msg = e.what();
      }
      if (allowed) {
        EXPECT_EQ(msg, "") << key;
      } else {
        EXPECT_THAT(msg, HasSubstr("test/config.json: key '" + key + "': must be a finite number, got " + special));
      }
    }
  }
  // Nested and unknown keys too.
  Json j = base();
  j["quantization_config"] = {{"quant_algo", "FP8"}, {"scale", "NaN"}};
  EXPECT_THAT(error_of(j), HasSubstr("key 'quantization_config.scale': must be a finite number, got NaN"));
  j = base();
  j["some_future_key"] = Json::array({1, "-Infinity"});
  EXPECT_THAT(error_of(j), HasSubstr("key 'some_future_key[1]': must be a finite number, got -Infinity"));
}

TEST(Config, FloatsAreReadThroughTheOneCheckedAccessor) {
  // A float read any other way than finite_number() (config.cpp) would skip the check: the
  // parser calls json_number() only there.
  std::ifstream f(std::string(NEMOTRON_SOURCE_DIR) + "/src/model/checkpoint/config.cpp");
  const std::string src((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(src.empty());
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (std::size_t p = src.find(needle); p != std::string::npos; p = src.find(needle, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("json_number("), 1);
  EXPECT_EQ(count("get<float>"), 0);
  EXPECT_EQ(count("get<double>"), 1);  // the integer accessor's check of an integral float (4.0)
}

TEST(Config, InvalidJsonAndMissingFile) {
  EXPECT_THROW(parse_config("{\"model_type\": ", "broken.json"), Error);
  try {
    parse_config("[1, 2]", "list.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("list.json: expected a JSON object"));
  }
  try {
    load_config("/nonexistent/dir");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/dir"));
  }
}

}  // namespace
