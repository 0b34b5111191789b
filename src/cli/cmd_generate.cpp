// nemotron generate: greedy continuation of a token sequence, optionally with the MTP
// head's chained drafts after the prompt.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <cstdio>

#include "cli/args.h"
#include "cli/backend_flags.h"
#include "cli/command.h"
#include "model/backend.h"
#include "model/cpu/cpu_forward.h"
#include "runtime/engine.h"
#include "text/jinja/chat_template.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"

namespace nemotron::cli {
namespace {

int run_generate(int argc, char** argv) {
  CLI::App app{"Greedy generation from token ids or text. Prints the generated ids (and, with a tokenizer, the "
               "text); with --json the last line is {\"ids\": [...], \"mtp_drafts\": [...]}."};
  std::string model_dir, ids_text, prompt_text, stop_text;
  bool chat = false;
  int64_t max_tokens = 16;
  int mtp_drafts = 0, spec_tokens = -1;
  bool json = false, ignore_eos = false, spec_always = false;
  app.add_option("--model", model_dir, "Model directory")->required();
  auto* ids_opt = app.add_option("--ids", ids_text, "Prompt token ids, comma-separated");
  auto* prompt_opt = app.add_option("--prompt", prompt_text, "Prompt text (needs tokenizer.json in the model directory)");
  ids_opt->excludes(prompt_opt);
  app.add_flag("--chat", chat, "With --prompt: wrap the text as one user message in the model's chat template");
  app.add_option("--max-tokens", max_tokens, "Tokens to generate")->check(CLI::PositiveNumber);
  app.add_option("--mtp-drafts", mtp_drafts,
                 "Also report K chained greedy drafts of the MTP head right after the prompt")
      ->check(CLI::Range(0, 64));
  app.add_option("--stop-ids", stop_text, "Stop after any of these ids (default: the config's eos_token_id, one id or a list)");
  app.add_flag("--ignore-eos", ignore_eos, "Never stop early: generate exactly --max-tokens tokens");
  app.add_flag("--json", json, "Print a JSON result line");
  app.add_option("--speculative-tokens", spec_tokens,
                 "MTP drafts verified per step (0 = off; default 3 when the model has an MTP head and the backend "
                 "can roll back, else 0); the ids are the same either way")
      ->check(CLI::Range(0, 16));
  app.add_flag("--speculate-always", spec_always,
               "Verify drafts in every decode step (default: only while measured faster); for measurements");
  BackendFlags backend_flags;
  backend_flags.add(app);
  CLI11_PARSE(app, argc, argv);
  backend_flags.resolve();
  const std::string& device = backend_flags.device;

  if (ids_text.empty() && prompt_text.empty()) throw Error("give the prompt with --ids or --prompt");
  if (chat && prompt_text.empty()) throw Error("--chat needs --prompt");
  const model::Model m = model::Model::load(model_dir);
  std::optional<text::Tokenizer> tokenizer;
  std::vector<int32_t> prompt;
  if (!prompt_text.empty()) {
    tokenizer = text::Tokenizer::load(model_dir);
    std::string rendered = prompt_text;
    if (chat) {
      if (tokenizer->chat_template().empty()) throw Error(model_dir + ": tokenizer_config.json has no chat_template");
      text::ChatTemplateOptions opts;
      opts.bos_token = tokenizer->bos_token();
      opts.eos_token = tokenizer->eos_token();
      rendered = text::render_chat_template(tokenizer->chat_template(),
                                            Json::array({{{"role", "user"}, {"content", prompt_text}}}), Json(), opts);
    }
    prompt = tokenizer->encode(rendered);
    if (prompt.empty()) throw Error("--prompt: the text encodes to no tokens");
  } else {
    prompt = parse_ids(ids_text, "--ids");
  }
  if (mtp_drafts > 0 && !m.config.has_mtp())
    throw Error("--mtp-drafts: " + m.config.path + " has no MTP head (num_nextn_predict_layers is 0)");
  std::vector<int32_t> stop;
  if (!stop_text.empty()) stop = parse_ids(stop_text, "--stop-ids");
  else
    for (int64_t id : m.config.eos_token_ids) stop.push_back(static_cast<int32_t>(id));
  if (ignore_eos) stop.clear();

  const int64_t V = m.config.vocab_size, H = m.config.hidden_size, T = static_cast<int64_t>(prompt.size());
  model::BackendOptions bo;
  backend_flags.apply(bo, m.config);
  bo.max_step_tokens = std::max<int64_t>(T, 1 + 16);  // a prompt in one step; a verify of up to 16 drafts
  bo.kv_tokens = T + max_tokens + 16;
  auto backend = model::make_backend(m, bo);
  const int K = spec_tokens >= 0 ? spec_tokens : runtime::default_speculative_tokens(*backend);

  std::vector<int32_t> drafts;
  if (mtp_drafts > 0) {
    // The MTP head sees every prompt position i fed (token i+1, trunk hidden i); the last
    // position is fed the first greedy token. Then drafts chain on its own output. (A pass of
    // its own before the generation, which the engine below runs on the same backend.)
    const int slot = backend->acquire_slot();
    const int32_t first = backend->step({{.slot = slot, .ids = prompt.data(), .T = T, .sample = true}})[0].sample.token;
    const std::vector<float> hidden = backend->last_hidden();
    std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
    next.push_back(first);
    auto logits = backend->mtp_forward(slot, next.data(), hidden.data(), T, false);
    drafts.push_back(model::argmax(logits.data(), V));
    while (static_cast<int>(drafts.size()) < mtp_drafts) {
      const std::vector<float> all = backend->last_hidden();
      const std::vector<float> h(all.end() - H, all.end());
      const int32_t tok = drafts.back();
      logits = backend->mtp_forward(slot, &tok, h.data(), 1, false);
      drafts.push_back(model::argmax(logits.data(), V));
    }
    backend->release_slot(slot);
  }

  // Greedy generation through the engine (speculative with K MTP drafts per step when K > 0;
  // the ids are those of plain greedy decoding either way).
  runtime::EngineOptions eo;
  eo.limits = {1, bo.max_step_tokens, bo.kv_tokens};
  eo.max_model_len = T + max_tokens;
  eo.speculative_tokens = K;
  eo.speculate_always = spec_always;
  runtime::Engine engine(std::move(backend), eo);
  runtime::GenerationRequest req;
  req.prompt = prompt;
  req.sampling.temperature = 0.0f;
  req.max_tokens = max_tokens;
  req.stop_token_ids = stop;
  const auto t0 = std::chrono::steady_clock::now();
  const auto events = runtime::generate_blocking(engine, std::move(req));
  std::vector<int32_t> out;
  for (const auto& e : events)
    if (e.event.token >= 0) out.push_back(e.event.token);
  const auto t1 = events.front().at, t2 = events.back().at;
  const runtime::EngineStats st = engine.stats();

  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::string spec = "";
  if (K > 0 && st.spec_drafts > 0)
    spec = ", " + std::to_string(K) + " MTP drafts: " +
           std::to_string(1.0 + static_cast<double>(st.spec_accepted_tokens) / static_cast<double>(st.spec_drafts))
               .substr(0, 4) +
           " tokens per verify step, " + std::to_string(st.spec_drafts) + " of " + std::to_string(st.steps_total) +
           " steps verified drafts";
  std::fprintf(stderr, "prompt %lld tokens in %.3f s (%.1f tok/s); generated %zu tokens, %.1f tok/s decode (%s%s)\n",
               static_cast<long long>(T), prefill_s, T / std::max(prefill_s, 1e-9), out.size(),
               out.size() > 1 ? (out.size() - 1) / std::max(decode_s, 1e-9) : 0.0, device.c_str(), spec.c_str());
  if (json) {
    std::printf("{\"ids\": %s, \"mtp_drafts\": %s}\n", ids_json(out).c_str(), ids_json(drafts).c_str());
  } else if (tokenizer) {
    std::printf("%s\n", tokenizer->decode(out).c_str());
    if (!drafts.empty()) std::printf("mtp drafts: %s\n", ids_json(drafts).c_str());
  } else {
    std::printf("%s\n", ids_json(out).c_str());
    if (!drafts.empty()) std::printf("mtp drafts: %s\n", ids_json(drafts).c_str());
  }
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("generate", "greedy continuation of token ids (with MTP drafts)", run_generate)
}  // namespace nemotron::cli
