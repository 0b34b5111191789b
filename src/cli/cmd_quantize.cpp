// nemotron quantize: a BF16 checkpoint -> ModelOpt NVFP4 checkpoint (model/quantize.h).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/command.h"
#include "model/convert/quantize.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRecipe =
    "Recipe (the published Nemotron 3 Nano NVFP4 one; quant_algo NVFP4, group size 16):\n"
    "  NVFP4: routed and shared expert up/down_proj, Mamba in_proj/out_proj, dense MLP up/down_proj.\n"
    "  BF16 (exclude_modules): in/out_proj of the Mamba layer right before each attention layer,\n"
    "    attention q/k/v/o, conv1d, LatentMoE fc1/fc2_latent_proj (never NVFP4 in Super), lm_head,\n"
    "    the whole MTP head. Embeddings, norms and the router gate are never quantized.\n"
    "  weight_scale_2 = amax(W)/(6*448); weight_scale = E4M3 per-16 block amax/(6*weight_scale_2);\n"
    "  input_scale = amax of the module's input over the calibration tokens / (6*448).";

// Tokenizer files copied next to the quantized weights.
bool is_tokenizer_file(const std::string& name) {
  for (const char* p : {"tokenizer", "special_tokens_map", "generation_config", "chat_template", "added_tokens",
                        "vocab.", "merges."})
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

// Deterministic pseudo-random ids in [min(3, V-1), V) (splitmix64), used without --calib-text.
std::vector<int32_t> random_ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  const int64_t lo = std::min<int64_t>(3, vocab - 1);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (auto& id : ids) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    id = static_cast<int32_t>(lo + static_cast<int64_t>(z % static_cast<uint64_t>(vocab - lo)));
  }
  return ids;
}

void prepare_out_dir(const fs::path& model_dir, const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) throw Error("--out " + out.string() + " exists and is not a directory");
    if (fs::equivalent(out, model_dir, ec)) throw Error("--out must differ from --model");
    if (!fs::is_empty(out, ec)) throw Error("--out " + out.string() + " exists and is not empty");
  } else if (!fs::create_directories(out, ec) || ec) {
    throw Error("--out " + out.string() + ": cannot create the directory (" + ec.message() + ")");
  }
  const fs::path probe = out / ".nemotron-quantize-probe";
  {
    std::ofstream f(probe);
    if (!f) throw Error("--out " + out.string() + " is not writable");
  }
  fs::remove(probe, ec);
}

int run_quantize(int argc, char** argv) {
  CLI::App app{std::string("Write an NVFP4 (ModelOpt layout) copy of a BF16 checkpoint: model.safetensors, "
                           "config.json with quantization_config, hf_quant_config.json and the tokenizer "
                           "files.\n") + kRecipe};
  std::string model_dir, out_dir, format = "nvfp4", calib_text;
  int64_t calib_tokens = 4096;
  app.add_option("--model", model_dir, "BF16 checkpoint directory")->required();
  app.add_option("--out", out_dir, "Output directory (created; must be empty if it exists)")->required();
  app.add_option("--format", format, "Target format (only nvfp4)")->check(CLI::IsMember({"nvfp4"}));
  app.add_option("--calib-text", calib_text,
                 "Text file for the input-scale calibration (tokenized with the model's tokenizer). "
                 "Without it, --calib-tokens deterministic pseudo-random token ids are used");
  app.add_option("--calib-tokens", calib_tokens, "Calibration tokens (first N of the text; default 4096)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) throw Error("--model " + model_dir + ": no such directory");
  if (!fs::exists(fs::path(model_dir) / "config.json", ec)) throw Error("--model " + model_dir + ": no config.json");
  const auto t0 = std::chrono::steady_clock::now();
  const model::Model m = model::Model::load(model_dir);
  if (!m.quant.quant_algo.empty())
    throw Error("--model " + model_dir + " is already quantized (quant_algo " + m.quant.quant_algo +
                "); quantize needs a BF16 checkpoint");
  std::vector<int32_t> ids;
  Json calib = Json::object();
  if (!calib_text.empty()) {
    const std::string text = read_file(calib_text);
    const auto tok = text::Tokenizer::load(model_dir);
    ids = tok.encode(text, false, true);
    if (ids.empty()) throw Error("--calib-text " + calib_text + ": no tokens");
    if (static_cast<int64_t>(ids.size()) > calib_tokens) ids.resize(static_cast<std::size_t>(calib_tokens));
    calib["source"] = fs::path(calib_text).filename().string();
  } else {
    ids = random_ids(calib_tokens, m.config.vocab_size);
    calib["source"] = "pseudo-random token ids";
  }
  prepare_out_dir(model_dir, out_dir);
  calib["tokens"] = ids.size();
  calib["window"] = 512;
  const auto amax = model::calibrate_input_amax(m, ids, 512);
  const auto sum = model::write_nvfp4_checkpoint(m, model_dir, out_dir, amax, calib);
  for (const auto& e : fs::directory_iterator(model_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && is_tokenizer_file(name)) fs::copy_file(e.path(), fs::path(out_dir) / name);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("quantized %d linear modules to NVFP4, kept %d in BF16; calibrated on %zu tokens (%s)%s\n",
              sum.quantized, sum.kept, ids.size(), calib["source"].get<std::string>().c_str(),
              sum.input_scale_fallbacks
                  ? (", " + std::to_string(sum.input_scale_fallbacks) + " modules saw no token (family max)").c_str()
                  : "");
  std::printf("tensor bytes %.2f MB -> %.2f MB; wrote %s in %.1f s\n", sum.bytes_in / 1e6, sum.bytes_out / 1e6,
              out_dir.c_str(), secs);
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("quantize", "BF16 checkpoint -> NVFP4 (ModelOpt layout) with calibrated input scales", run_quantize)
}  // namespace nemotron::cli
