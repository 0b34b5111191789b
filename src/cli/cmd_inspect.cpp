// nemotron inspect: formats, parameter counts, bytes read per decoded token and the
// bandwidth roofline of a checkpoint.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "cli/command.h"
#include "model/accounting.h"
#include "model/checkpoint/weights.h"

namespace nemotron::cli {
namespace {

std::string human(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.3f B", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.3f M", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.3f K", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, bytes >= 1e8 ? "%.3f GB" : "%.3f MB", bytes >= 1e8 ? bytes / 1e9 : bytes / 1e6);
  return buf;
}

int run_inspect(int argc, char** argv) {
  CLI::App app{"Describe a checkpoint: layer pattern, per-module storage formats, parameter counts, bytes read "
               "per decoded token by component, and the decode ceiling for a memory bandwidth."};
  std::string model_dir;
  double bandwidth = 273.0;
  int64_t context = 0;
  app.add_option("--model", model_dir, "Model directory")->required();
  app.add_option("--bandwidth", bandwidth, "Memory bandwidth in GB/s (default 273, a DGX Spark)")
      ->check(CLI::PositiveNumber);
  app.add_option("--context", context, "Context depth for the KV-cache read term (default 0)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  const model::Model m = model::Model::load(model_dir);
  const auto& c = m.config;
  const auto a = model::account(m);
  std::printf("model       %s\n", model_dir.c_str());
  std::printf("pattern     %s (%d layers: %d mamba, %d attention, %d moe, %d mlp)\n", c.pattern().c_str(),
              c.num_layers(), c.count(model::LayerKind::Mamba), c.count(model::LayerKind::Attention),
              c.count(model::LayerKind::MoE), c.count(model::LayerKind::MLP));
  if (c.has_mtp()) std::printf("mtp head    %s\n", c.mtp_pattern().c_str());
  std::printf("hidden %lld, vocab %lld, quantization %s\n", static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.vocab_size), m.quant.quant_algo.empty() ? "none" : m.quant.quant_algo.c_str());
  std::printf("checkpoint  %s of tensors\n\n", gb(static_cast<double>(m.checkpoint.total_bytes())).c_str());

  std::printf("%-32s %-28s %14s %12s\n", "module class", "formats", "params", "stored");
  for (const auto& mod : a.modules) {
    std::string formats;
    for (const auto& [f, n] : mod.formats) formats += (formats.empty() ? "" : ", ") + std::to_string(n) + " " + f;
    std::printf("%-32s %-28s %14s %12s\n", mod.module_class.c_str(), formats.c_str(),
                human(static_cast<double>(mod.params)).c_str(), gb(static_cast<double>(mod.bytes)).c_str());
  }
  std::printf("\nparameters: %s total (trunk), %s active per token (excl. embedding table)",
              human(static_cast<double>(a.total_params)).c_str(), human(static_cast<double>(a.active_params)).c_str());
  if (a.mtp_params) std::printf(", MTP head %s", human(static_cast<double>(a.mtp_params)).c_str());
  std::printf("\n\nbytes read per decoded token (batch 1):\n");
  for (const auto& comp : a.per_token)
    std::printf("  %-30s %14s params %12s\n", comp.component.c_str(), human(static_cast<double>(comp.params)).c_str(),
                gb(static_cast<double>(comp.bytes)).c_str());
  const double kv = static_cast<double>(a.kv_bytes_per_token_per_position) * static_cast<double>(context);
  const double total = static_cast<double>(a.weight_bytes_per_token + a.state_bytes_per_token) + kv;
  std::printf("  %-30s %27s\n", "weights", gb(static_cast<double>(a.weight_bytes_per_token)).c_str());
  std::printf("  %-30s %27s\n", "SSM + conv state (read+write)", gb(static_cast<double>(a.state_bytes_per_token)).c_str());
  std::printf("  %-30s %27s\n", ("KV cache at context " + std::to_string(context)).c_str(), gb(kv).c_str());
  std::printf("  %-30s %27s\n", "total", gb(total).c_str());
  std::printf("\ndecode ceiling at %.1f GB/s: %.1f tok/s (single stream)\n", bandwidth, bandwidth * 1e9 / total);
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("inspect", "formats, parameter counts, bytes per token, roofline", run_inspect)
}  // namespace nemotron::cli
