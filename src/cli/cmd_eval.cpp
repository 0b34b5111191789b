// nemotron eval: perplexity and MTP draft acceptance over text / token-id files
// (protocols in runtime/evaluate.h). Tokenization happens here: the runtime has no text layer.
#include <CLI/CLI.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "cli/command.h"
#include "model/backend.h"
#include "model/ssm_state_flags.h"
#include "runtime/evaluate.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::cli {
namespace {

struct InputFile {
  std::string path;
  bool is_text = true;
};

// Whitespace-separated non-negative decimal token ids.
std::vector<int32_t> read_ids_file(const std::string& path) {
  const std::string s = read_file(path);
  std::vector<int32_t> ids;
  std::size_t i = 0;
  while (i < s.size()) {
    if (std::isspace(static_cast<unsigned char>(s[i]))) { ++i; continue; }
    const std::size_t b = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    const bool bad_end = i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]));
    if (i == b || bad_end || i - b > 10) {
      std::size_t e = b;
      while (e < s.size() && e - b < 20 && !std::isspace(static_cast<unsigned char>(s[e]))) ++e;
      throw Error(path + ": expected whitespace-separated token ids, got '" + s.substr(b, e - b) + "' at byte " +
                  std::to_string(b));
    }
    const long long v = std::stoll(s.substr(b, i - b));
    if (v > INT32_MAX) throw Error(path + ": token id " + s.substr(b, i - b) + " is out of range");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

Json ppl_json(const runtime::PerplexityResult& r, double secs) {
  // "tokens" = predictions scored (as in tests/data/demo/transformers_reference.json "scored").
  return {{"device", r.device}, {"tokens", r.scored}, {"tokens_scored", r.scored}, {"tokens_used", r.tokens},
          {"windows", r.windows}, {"nll_sum", r.nll_sum}, {"mean_nll", r.mean_nll}, {"ppl", r.ppl},
          {"window_nll", r.window_nll}, {"seconds", secs}};
}

Json mtp_json(const runtime::MtpResult& r, const runtime::MtpOptions& o, double secs) {
  Json j = {{"drafts", o.drafts}, {"prompts", o.prompts}, {"prompt_len", o.prompt_len}, {"gen", o.gen},
            {"device", "cpu"}, {"ran", r.ran}};
  if (!r.ran) {
    j["skipped"] = r.skipped;
    return j;
  }
  j["stride"] = r.stride;
  j["eligible"] = r.eligible;
  j["accepted"] = r.accepted;
  j["given"] = r.given;
  j["cumulative"] = r.cumulative;
  Json cond = Json::array();  // null where no step had drafts 1..k-1 correct
  for (std::size_t k = 0; k < r.conditional.size(); ++k)
    cond.push_back(r.given[k] ? Json(r.conditional[k]) : Json(nullptr));
  j["conditional"] = cond;
  j["tokens_per_step"] = r.tokens_per_step;
  j["generated"] = r.generated;
  j["step_drafts"] = r.drafts;
  j["seconds"] = secs;
  return j;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_eval(int argc, char** argv) {
  CLI::App app{
      "Perplexity over consecutive non-overlapping windows of --context tokens (each from a fresh state; a "
      "last window under 2 tokens is dropped; NLL of every next token, summed in double), and, for models "
      "with an MTP head, greedy MTP draft acceptance: prompts j*s..j*s+prompt_len of the same (truncated) "
      "stream, s = floor((n - prompt_len - gen) / max(prompts-1, 1)); per generation step the head drafts "
      "K tokens (chained) that are compared with the trunk's greedy continuation. Reports cumulative and "
      "conditional acceptance per draft position and tokens per step. MTP acceptance always runs on the "
      "CPU reference."};
  std::string model_dir, json_out, device;
  std::vector<std::string> text_files, ids_files;
  int64_t context = 512, max_tokens = 0;
  runtime::MtpOptions mo;
  app.add_option("--model", model_dir, "Model directory")->required();
  auto* text_opt = app.add_option("--text-file", text_files, "Text file, tokenized with the model's tokenizer "
                                                             "(no special tokens added); repeatable")
                       ->allow_extra_args(false);
  auto* ids_opt = app.add_option("--ids-file", ids_files, "File of whitespace-separated token ids; repeatable")
                      ->allow_extra_args(false);
  app.add_option("--context", context, "Perplexity window length in tokens (default 512)");
  app.add_option("--max-tokens", max_tokens, "Use the first N tokens of each file (0 = all)")
      ->check(CLI::NonNegativeNumber);
  auto* d_opt = app.add_option("--mtp-drafts", mo.drafts, "MTP drafts per step K (default 3; 0 = no MTP eval)")
                    ->check(CLI::NonNegativeNumber);
  auto* p_opt = app.add_option("--mtp-prompts", mo.prompts, "MTP prompts (default 32; 0 = no MTP eval)")
                    ->check(CLI::NonNegativeNumber);
  auto* l_opt = app.add_option("--mtp-prompt-len", mo.prompt_len, "MTP prompt length (default 128)")
                    ->check(CLI::PositiveNumber);
  auto* g_opt = app.add_option("--mtp-gen", mo.gen, "Greedy tokens generated per MTP prompt (default 32)")
                    ->check(CLI::PositiveNumber);
  app.add_option("--device", device,
                 "cpu or cuda (default: cuda when a CUDA device is present); MTP acceptance runs on the CPU reference")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--json", json_out, "Write every number to this JSON file");
  runtime::PerplexityOptions po;
  app.add_option("--step-tokens", po.step_tokens,
                 "Perplexity: feed each window N tokens per step (default: the whole window in one step; 1 runs "
                 "every position as a decode does)")
      ->check(CLI::PositiveNumber);
  model::SsmStateFlags ssm;
  model::add_ssm_state_flags(app, ssm);
  CLI11_PARSE(app, argc, argv);

  if (context < 2) throw Error("--context must be at least 2, got " + std::to_string(context));
  std::vector<InputFile> inputs;
  std::size_t ti = 0, ii = 0;
  for (const CLI::Option* opt : app.parse_order()) {
    if (opt == text_opt && ti < text_files.size()) inputs.push_back({text_files[ti++], true});
    if (opt == ids_opt && ii < ids_files.size()) inputs.push_back({ids_files[ii++], false});
  }
  if (inputs.empty()) throw Error("give at least one --text-file or --ids-file");
  for (const auto& f : inputs) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(f.path, ec)) throw Error(f.path + ": no such file");
  }
  device = model::resolve_device(device);

  const model::Model m = model::Model::load(model_dir);
  po.ssm_state = model::resolve_ssm_state(ssm, m.config);
  const bool mtp_asked = d_opt->count() || p_opt->count() || l_opt->count() || g_opt->count();
  const bool mtp_on = mo.drafts > 0 && mo.prompts > 0;
  if (mtp_asked && mtp_on && !m.config.has_mtp())
    throw Error(model_dir + ": this model has no MTP head; MTP acceptance (--mtp-*) cannot run");
  const bool run_mtp = mtp_on && m.config.has_mtp();
  std::string mtp_note = !m.config.has_mtp() ? "no MTP head"
                         : !mtp_on           ? "disabled (--mtp-drafts or --mtp-prompts 0)"
                         : device == "cuda"  ? "CPU reference (drafts chain on copies of the head's state)"
                                             : "CPU reference";
  std::unique_ptr<text::Tokenizer> tok;

  Json report = {{"model", model_dir}, {"device", device}, {"context", context}, {"max_tokens", max_tokens},
                 {"step_tokens", po.step_tokens > 0 ? po.step_tokens : context},
                 {"mamba_ssm_cache_dtype", kernels::state_dtype_name(po.ssm_state.dtype)},
                 {"mamba_ssm_rounding", po.ssm_state.stochastic ? "stochastic" : "nearest"},
                 {"mtp", mtp_note}, {"files", Json::array()}};
  std::printf("model %s: %s, perplexity on %s, context %lld\n", model_dir.c_str(), m.config.pattern().c_str(),
              device.c_str(), static_cast<long long>(context));
  std::printf("%-32s %9s %8s %9s %11s %11s %8s\n", "file", "tokens", "windows", "scored", "mean NLL", "ppl", "sec");
  std::vector<std::pair<std::string, runtime::MtpResult>> mtp_rows;
  for (const auto& f : inputs) {
    std::vector<int32_t> ids;
    if (f.is_text) {
      if (!tok) tok = std::make_unique<text::Tokenizer>(text::Tokenizer::load(model_dir));
      ids = tok->encode(read_file(f.path), false, true);
    } else {
      ids = read_ids_file(f.path);
    }
    if (ids.empty()) throw Error(f.path + ": no tokens (empty file)");
    const int64_t in_file = static_cast<int64_t>(ids.size());
    if (max_tokens > 0 && in_file > max_tokens) ids.resize(static_cast<std::size_t>(max_tokens));
    if (ids.size() < 2) throw Error(f.path + ": perplexity needs at least 2 tokens, the file has " +
                                    std::to_string(ids.size()));
    auto t0 = std::chrono::steady_clock::now();
    const auto ppl = runtime::perplexity(m, ids, context, device, po);
    const double ppl_secs = since(t0);
    std::printf("%-32s %9lld %8lld %9lld %11.6f %11.4f %8.1f\n",
                std::filesystem::path(f.path).filename().string().substr(0, 32).c_str(),
                static_cast<long long>(ppl.tokens), static_cast<long long>(ppl.windows),
                static_cast<long long>(ppl.scored), ppl.mean_nll, ppl.ppl, ppl_secs);
    std::fflush(stdout);
    Json fj = {{"path", f.path}, {"kind", f.is_text ? "text" : "ids"}, {"tokens_in_file", in_file},
               {"perplexity", ppl_json(ppl, ppl_secs)}};
    if (run_mtp) {
      t0 = std::chrono::steady_clock::now();
      auto r = runtime::mtp_acceptance(m, ids, mo);
      fj["mtp"] = mtp_json(r, mo, since(t0));
      mtp_rows.emplace_back(std::filesystem::path(f.path).filename().string(), std::move(r));
    }
    report["files"].push_back(std::move(fj));
  }
  if (run_mtp) {
    std::printf("\nMTP acceptance (%s): K=%d, %d prompts x %d tokens, %d greedy tokens each\n", mtp_note.c_str(),
                mo.drafts, mo.prompts, mo.prompt_len, mo.gen);
    std::printf("%-32s %3s %9s %9s %11s %11s\n", "file", "k", "eligible", "accepted", "cumulative", "conditional");
    for (const auto& [name, r] : mtp_rows) {
      if (!r.ran) {
        std::printf("%-32s skipped: %s\n", name.substr(0, 32).c_str(), r.skipped.c_str());
        continue;
      }
      for (int k = 0; k < mo.drafts; ++k) {
        char cond[32] = "          -";
        if (r.given[k]) std::snprintf(cond, sizeof cond, "%11.4f", r.conditional[k]);
        std::printf("%-32s %3d %9lld %9lld %11.4f %s\n", k == 0 ? name.substr(0, 32).c_str() : "", k + 1,
                    static_cast<long long>(r.eligible[k]), static_cast<long long>(r.accepted[k]), r.cumulative[k],
                    cond);
      }
      std::printf("%-32s mean tokens per step: %.4f\n", "", r.tokens_per_step);
    }
  } else {
    std::printf("\nMTP acceptance: not run (%s)\n", mtp_note.c_str());
  }
  if (!json_out.empty()) {
    std::ofstream out(json_out, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("--json " + json_out + ": cannot write");
    out << report.dump(2) << "\n";
    if (!out) throw Error("--json " + json_out + ": error writing");
  }
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("eval", "perplexity and MTP draft acceptance over text or token-id files", run_eval)
}  // namespace nemotron::cli
