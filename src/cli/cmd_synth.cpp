// nemotron synth: a random-weight checkpoint in the exact Hub layout of a config, for
// benchmarks and tests at real scale (see model/synth.h for the formats and value laws).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "cli/command.h"
#include "model/convert/synth.h"
#include "util/error.h"

namespace nemotron::cli {
namespace {

int run_synth(int argc, char** argv) {
  CLI::App app{"Write a random-weight checkpoint (config.json, [hf_quant_config.json], safetensors) in the "
               "exact layout of a config. Deterministic from --seed; streams tensors to disk."};
  model::synth::Options o;
  std::string layout;
  app.add_option("--config", o.config_path, "config.json of the model to synthesize")->required();
  app.add_option("--quant", o.quant_path, "hf_quant_config.json giving the per-module formats (ModelOpt)");
  app.add_option("--layout", layout, "Quantization layout preset: super-mixed (the Super NVFP4 release's "
                                     "MIXED_PRECISION module table)")
      ->check(CLI::IsMember({"super-mixed"}));
  app.add_option("--out", o.out_dir, "Output directory (created; other files in it are kept)")->required();
  app.add_option("--seed", o.seed, "Seed of the weights (default 0)");
  app.add_option("--shard-gb", o.shard_gb, "Split into shards of at most this many GB (default 5)")
      ->check(CLI::PositiveNumber);
  bool quiet = false;
  app.add_flag("--quiet", quiet, "No progress on stderr");
  CLI11_PARSE(app, argc, argv);
  o.super_mixed = layout == "super-mixed";
  o.progress = !quiet;
  const auto r = model::synth::synthesize(o);
  std::printf("wrote %zu tensors, %.3f GB in %d file(s) to %s in %.1f s\n", r.tensors, static_cast<double>(r.bytes) / 1e9,
              r.shards, o.out_dir.c_str(), r.seconds);
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("synth", "random-weight checkpoint in the exact Hub layout of a config", run_synth)

}  // namespace nemotron::cli
