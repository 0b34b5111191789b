// nemotron score: logits at every position of a token sequence, as a safetensors file.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>

#include "cli/args.h"
#include "cli/backend_flags.h"
#include "cli/command.h"
#include "model/backend.h"
#include "model/checkpoint/safetensors.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::cli {
namespace {

int run_score(int argc, char** argv) {
  CLI::App app{"Compute the logits at every position of a token sequence and write them to a safetensors "
               "file as `logits` F32 [T, vocab]."};
  std::string model_dir, ids_text, out_path;
  int64_t chunk = 0;
  app.add_option("--model", model_dir, "Model directory (config.json + safetensors)")->required();
  std::string ids_file;
  auto* ids_opt = app.add_option("--ids", ids_text, "Token ids, comma-separated (e.g. 5,9,13)");
  auto* file_opt = app.add_option("--ids-file", ids_file,
                                  "File holding the comma-separated token ids (for sequences too long for a "
                                  "command line)");
  ids_opt->excludes(file_opt);
  app.add_option("--chunk", chunk, "Process the sequence as prefill chunks of N tokens (default: all at once; "
                                   "1 runs the decode path for every token)")->check(CLI::NonNegativeNumber);
  app.add_option("--out", out_path, "Output .safetensors file")->required();
  BackendFlags backend_flags;
  backend_flags.add(app);
  CLI11_PARSE(app, argc, argv);
  backend_flags.resolve();
  const std::string& device = backend_flags.device;
  const model::ParallelConfig& parallel = backend_flags.parallel;

  if (ids_text.empty() == ids_file.empty()) throw Error("give exactly one of --ids, --ids-file");
  const auto ids = ids_file.empty() ? parse_ids(ids_text, "--ids") : parse_ids(read_file(ids_file), ids_file);
  const model::Model m = model::Model::load(model_dir);
  const int64_t T = static_cast<int64_t>(ids.size());
  if (chunk <= 0) chunk = T;
  model::BackendOptions bo;
  bo.max_step_tokens = std::min(chunk, T);
  bo.kv_tokens = T;
  bo.max_spec_seqs = 0;  // scoring never rolls back
  backend_flags.apply(bo, m.config);
  const auto backend = model::make_backend(m, bo);
  const int slot = backend->acquire_slot();
  std::vector<float> logits;
  logits.reserve(static_cast<std::size_t>(T * m.config.vocab_size));
  for (int64_t s = 0; s < T; s += chunk) {
    auto r = backend->step({{.slot = slot, .ids = ids.data() + s, .T = std::min(chunk, T - s),
                             .logits = model::LogitsOut::All}});
    logits.insert(logits.end(), r[0].logits.begin(), r[0].logits.end());
  }
  model::write_safetensors(out_path, {model::make_f32_tensor("logits", {T, m.config.vocab_size}, logits)});
  std::fprintf(stderr, "wrote logits [%lld, %lld] (%s, %s) to %s\n", static_cast<long long>(T),
               static_cast<long long>(m.config.vocab_size), device.c_str(), parallel.describe().c_str(),
               out_path.c_str());
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("score", "logits for every position of a token sequence (safetensors)", run_score)
}  // namespace nemotron::cli
