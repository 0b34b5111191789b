#include "cli/bench_speculation.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "model/accounting.h"
#include "model/backend.h"
#include "model/cuda/cuda_model.h"
#include "model/step_bytes.h"
#include "runtime/engine.h"
#include "text/jinja/chat_template.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"

namespace nemotron::cli {

std::vector<int32_t> synthetic_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  uint32_t x = seed * 2654435761u + 12345u;
  const int64_t lo = std::min<int64_t>(1000, vocab / 2);
  for (auto& id : ids) {
    x = x * 1664525u + 1013904223u;
    id = static_cast<int32_t>(lo + (x >> 8) % static_cast<uint32_t>(vocab - lo));
  }
  return ids;
}

std::vector<double> demo_accept_rates() { return {0.91, 0.77, 0.74}; }

std::vector<double> parse_accept_rates(const std::string& text) {
  if (text.empty() || text == "real") return {};
  if (text == "demo") return demo_accept_rates();
  std::vector<double> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || !(v >= 0.0 && v <= 1.0))
      throw Error("--spec-accept: '" + item + "' is not a rate in [0, 1] (a list like 0.9,0.8, or demo, or real)");
    out.push_back(v);
    at = comma + 1;
  }
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

// Request i's prompt: with a tokenizer and a chat template, a chat prompt around a short
// coding request (real text: the demo model's drafts are then accepted as in use); else
// `tokens` synthetic ids.
std::vector<int32_t> prompt_for(const model::Model& m, const std::optional<text::Tokenizer>& tok, int64_t tokens,
                                int64_t i) {
  static const char* kAsks[] = {
      "Write a Python function that reverses a list.",
      "Explain what a hash map is and when to use one.",
      "Write a C function that counts the set bits of an integer.",
      "How do I read a file line by line in Python?",
  };
  if (!tok || tok->chat_template().empty())
    return synthetic_ids(tokens, m.config.vocab_size, static_cast<uint32_t>(7919 * (i + 1)));
  text::ChatTemplateOptions opts;
  opts.bos_token = tok->bos_token();
  opts.eos_token = tok->eos_token();
  const std::string ask = std::string(kAsks[i % 4]) + (i >= 4 ? " (variant " + std::to_string(i / 4) + ")" : "");
  return tok->encode(text::render_chat_template(
      tok->chat_template(), Json::array({{{"role", "user"}, {"content", ask}}}), Json(), opts));
}

struct RunResult {
  double decode_tok_s = 0;   // sum over requests of (tokens - 1) / (last - first token)
  double e2e_tok_s = 0;      // all tokens / (last token of all - submit)
  double tokens_per_verify = 0;
  double drafts_per_verify = 0;    // mean drafts of a verify (K, or less where the engine chose fewer)
  double verifies_per_request = 0;  // verify chunks (steps that verified drafts) per request
  int64_t tokens = 0;
};

// B requests at once on `engine`; the stats are taken as differences around the run.
RunResult run_batch(runtime::Engine& engine, const std::vector<std::vector<int32_t>>& prompts, int64_t new_tokens) {
  const runtime::EngineStats before = engine.stats();
  const std::size_t B = prompts.size();
  std::vector<std::vector<runtime::TimedEvent>> events(B);
  std::vector<std::string> errors(B);
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < B; ++i)
    threads.emplace_back([&, i] {
      runtime::GenerationRequest r;
      r.prompt = prompts[i];
      r.sampling.temperature = 0.0f;
      r.max_tokens = new_tokens;
      try {
        events[i] = runtime::generate_blocking(engine, std::move(r));
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw Error("bench --speculative-tokens: a request failed: " + e);
  const runtime::EngineStats after = engine.stats();
  RunResult r;
  Clock::time_point end = t0;
  for (const auto& ev : events) {
    int64_t n = 0;
    Clock::time_point first{}, last{};
    for (const auto& e : ev)
      if (e.event.token >= 0) {
        if (n == 0) first = e.at;
        last = e.at;
        ++n;
      }
    r.tokens += n;
    end = std::max(end, last);
    const double s = std::chrono::duration<double>(last - first).count();
    if (n > 1 && s > 0) r.decode_tok_s += static_cast<double>(n - 1) / s;
  }
  r.e2e_tok_s = static_cast<double>(r.tokens) / std::max(1e-9, std::chrono::duration<double>(end - t0).count());
  const double drafts = static_cast<double>(after.spec_drafts - before.spec_drafts);
  const double accepted = static_cast<double>(after.spec_accepted_tokens - before.spec_accepted_tokens);
  r.tokens_per_verify = drafts > 0 ? 1.0 + accepted / drafts : 1.0;
  r.drafts_per_verify =
      drafts > 0 ? static_cast<double>(after.spec_draft_tokens - before.spec_draft_tokens) / drafts : 0.0;
  r.verifies_per_request = drafts / static_cast<double>(B);
  return r;
}

}  // namespace

// --profile: one more run of the same requests with every step eager and timed op by op (the
// trunk's steps, verify steps included, and the MTP head's as "mtp.<op>"): ms per generated
// token of each op, to set K > 0 against K = 0.
struct Profile {
  int64_t K = 0, B = 0;
  std::string mode;
  int64_t tokens = 0;
  std::vector<model::CudaModel::OpTime> ops;
};

Profile profile_run(runtime::Engine& engine, model::CudaModel& cuda, const std::vector<std::vector<int32_t>>& ps,
                    int64_t K, const char* mode, int64_t B) {
  Profile p;
  p.K = K;
  p.B = B;
  p.mode = mode;
  cuda.set_profiling(true);
  try {
    p.tokens = run_batch(engine, ps, 32).tokens;
  } catch (...) {
    cuda.set_profiling(false);
    throw;
  }
  p.ops = cuda.profile();
  cuda.set_profiling(false);
  return p;
}

void print_profile(const Profile& p, Json& j) {
  double total = 0;
  for (const auto& op : p.ops) total += op.ms;
  const double per = static_cast<double>(std::max<int64_t>(1, p.tokens));
  std::printf("\nprofile: K = %lld %s, B = %lld, %lld tokens (eager): %.4f ms per token\n%-24s %12s %8s %8s\n",
              static_cast<long long>(p.K), p.mode.c_str(), static_cast<long long>(p.B), static_cast<long long>(p.tokens),
              total / per, "op", "ms/token", "share", "calls");
  Json t = {{"K", p.K}, {"mode", p.mode}, {"batch", p.B}, {"tokens", p.tokens}, {"ms_per_token", total / per},
            {"ops", Json::array()}};
  for (const auto& op : p.ops) {
    std::printf("%-24s %12.4f %7.1f%% %8lld\n", op.op.c_str(), op.ms / per, total > 0 ? 100.0 * op.ms / total : 0.0,
                static_cast<long long>(op.calls));
    t["ops"].push_back({{"op", op.op}, {"ms_per_token", op.ms / per}, {"calls", op.calls}});
  }
  j["profiles"].push_back(std::move(t));
}

Json run_speculation_bench(const model::Model& m, const SpecBenchOptions& o) {
  if (o.Ks.empty() || o.batches.empty()) throw Error("bench --speculative-tokens: no K or no batch size");
  const int64_t Kmax = *std::max_element(o.Ks.begin(), o.Ks.end());
  const int64_t Bmax = *std::max_element(o.batches.begin(), o.batches.end());
  std::vector<int64_t> Ks = o.Ks;  // ascending: K = 0 (the baseline) first
  std::sort(Ks.begin(), Ks.end());
  Ks.erase(std::unique(Ks.begin(), Ks.end()), Ks.end());
  for (int64_t K : Ks)
    if (K < 0 || K > 16) throw Error("--speculative-tokens: K must be in [0, 16], got " + std::to_string(K));
  for (int64_t B : o.batches)
    if (B < 1 || B > 1024) throw Error("--spec-batch: batch sizes must be in [1, 1024], got " + std::to_string(B));
  if (Kmax > 0 && !m.config.has_mtp())
    throw Error("--speculative-tokens: " + m.config.path + " has no MTP head (num_nextn_predict_layers is 0)");
  std::optional<text::Tokenizer> tok;
  if (std::filesystem::exists(std::filesystem::path(m.checkpoint.dir()) / "tokenizer.json"))
    tok = text::Tokenizer::load(m.checkpoint.dir());
  std::vector<std::vector<int32_t>> prompts;
  int64_t longest = 0;
  for (int64_t i = 0; i < Bmax; ++i) {
    prompts.push_back(prompt_for(m, tok, o.prompt_tokens, i));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts.back().size()));
  }
  const char* prompt_kind = tok && !tok->chat_template().empty() ? "chat prompts (tokenizer)" : "synthetic ids";

  Json j;
  j["settings"] = {{"device", o.device},        {"K", Ks},
                   {"batches", o.batches},      {"accept_rates", o.accept_rates},
                   {"auto_mode", o.auto_mode},  {"prompt_tokens_max", longest},
                   {"prompts", prompt_kind},    {"new_tokens", o.new_tokens}};
  j["runs"] = Json::array();
  std::string rates = "the target's own";
  if (!o.accept_rates.empty()) {
    rates = "forced:";
    for (double r : o.accept_rates) rates += " " + std::to_string(r).substr(0, 4);
  }
  std::printf("speculative decoding through the engine (%s): %s of up to %lld tokens, %lld greedy tokens each, "
              "acceptance %s\n",
              o.device.c_str(), prompt_kind, static_cast<long long>(longest), static_cast<long long>(o.new_tokens),
              rates.c_str());
  // The bytes bound: tokens per step over bytes per step (step_bytes.h, random routing)
  // against plain decoding's, at the run's measured tokens per verify (always rows).
  const model::StepBytes bytes(m, model::account(m, o.ssm_state.dtype), /*fp8_draft_head=*/o.device == "cuda");
  std::printf("%4s %-7s %5s %12s %12s %14s %14s %10s %10s %12s\n", "K", "mode", "B", "decode tok/s", "e2e tok/s",
              "tokens/verify", "drafts/verify", "verifies", "vs K=0", "bytes bound");
  std::vector<double> base(o.batches.size(), 0.0);
  std::vector<Profile> profiles;
  j["profiles"] = Json::array();
  if (o.profile && o.device != "cuda") std::printf("(--profile times the CUDA backend's ops; not on %s)\n", o.device.c_str());
  for (int64_t K : Ks) {
    for (const bool always : {true, false}) {
      if (K == 0 && !always) continue;
      if (K > 0 && !always && !o.auto_mode) continue;
      model::BackendOptions bo;
      bo.device = o.device;
      bo.parallel = o.parallel;
      bo.ssm_state = o.ssm_state;
      bo.max_seqs = static_cast<int>(Bmax);
      bo.max_step_tokens = std::max<int64_t>(512, Bmax * (Kmax + 1));
      bo.kv_tokens = Bmax * (longest + o.new_tokens + Kmax + 32) + 64;
      bo.max_spec_seqs = static_cast<int>(Bmax);
      bo.max_spec_rows = std::max<int64_t>(1, Kmax + 1);
      runtime::EngineOptions eo;
      eo.limits = {static_cast<int>(Bmax), bo.max_step_tokens, bo.kv_tokens};
      eo.max_model_len = longest + o.new_tokens + Kmax + 1;
      eo.speculative_tokens = static_cast<int>(K);
      eo.speculate_always = always;
      eo.spec_accept_rates = K > 0 ? o.accept_rates : std::vector<double>{};
      auto backend = model::make_backend(m, bo);
      auto* cuda = dynamic_cast<model::CudaModel*>(backend.get());  // --profile
      runtime::Engine engine(std::move(backend), eo);
      for (std::size_t bi = 0; bi < o.batches.size(); ++bi) {
        const int64_t B = o.batches[bi];
        const std::vector<std::vector<int32_t>> ps(prompts.begin(), prompts.begin() + B);
        run_batch(engine, ps, std::min<int64_t>(o.new_tokens, 16));  // warm-up: graphs, the controller's first probes
        const RunResult r = run_batch(engine, ps, o.new_tokens);
        if (K == 0) base[bi] = r.decode_tok_s;
        const double vs = base[bi] > 0 ? r.decode_tok_s / base[bi] : 0.0;
        const char* mode = K == 0 ? "off" : always ? "always" : "auto";
        // Always rows: every step verifies K drafts (tokens per verify measured); auto rows mix k.
        const double bound = always ? r.tokens_per_verify * bytes.spec_step(B, 0) / bytes.spec_step(B, K) : 0.0;
        char bound_text[24] = "-";
        if (always) std::snprintf(bound_text, sizeof bound_text, "%.2fx", bound);
        std::printf("%4lld %-7s %5lld %12.1f %12.1f %14.2f %14.2f %10.1f %9.2fx %12s\n", static_cast<long long>(K),
                    mode, static_cast<long long>(B), r.decode_tok_s, r.e2e_tok_s, r.tokens_per_verify,
                    r.drafts_per_verify, r.verifies_per_request, vs, bound_text);
        j["runs"].push_back({{"K", K},
                             {"mode", mode},
                             {"batch", B},
                             {"decode_tok_s", r.decode_tok_s},
                             {"e2e_tok_s", r.e2e_tok_s},
                             {"tokens_per_verify", r.tokens_per_verify},
                             {"drafts_per_verify", r.drafts_per_verify},
                             {"verifies_per_request", r.verifies_per_request},
                             {"tokens", r.tokens},
                             {"vs_k0", vs},
                             {"bytes_bound", always ? Json(bound) : Json()},
                             {"step_gb", bytes.spec_step(B, always ? K : 0) / 1e9}});
        if (o.profile && cuda) profiles.push_back(profile_run(engine, *cuda, ps, K, mode, B));
      }
    }
  }
  for (const auto& pr : profiles) print_profile(pr, j);
  std::printf("\ndecode tok/s = the sum over the B requests of (tokens - 1) / (last - first token time); e2e = all\n"
              "tokens / wall time from submitting (prefill included). always = drafts verified in every decode\n"
              "step; auto = the engine's measured rule (what serve does: k = 0..K drafts per step, whichever gives\n"
              "the most tokens per second at the batch size). drafts/verify = the mean k of the steps that verified;\n"
              "verifies = steps that verified drafts, per request. bytes bound = the speed-up over K = 0 that the bytes\n"
              "a step reads allow at the measured tokens per verify: trunk weights for B (K + 1) rows (routed experts:\n"
              "the expected distinct ones under random routing), states plus the roll-back copy, K MTP head steps with\n"
              "the lm_head (step_bytes.h); a trained router's neighbouring tokens share more experts. vs K=0 = decode\n"
              "tok/s over the K = 0 run at the same B (needs K = 0 in the list).\n");
  return j;
}

}  // namespace nemotron::cli
