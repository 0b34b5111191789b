#include "server/service.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <thread>

#include "model/backend.h"
#include "runtime/warm_up.h"
#include "server/api_error.h"
#include "server/grammar_constraint.h"
#include "text/parsers/reasoning_parser.h"
#include "util/env.h"
#include "util/error.h"

namespace nemotron::server {

ModelService::~ModelService() {
  engine_.reset();  // stops the engine thread before the model it reads goes away
}

std::unique_ptr<ModelService> ModelService::load(const ServiceConfig& config, std::ostream& log) {
  std::unique_ptr<ModelService> s(new ModelService());
  s->model_dir_ = config.model_dir;
  s->name_ = config.served_model_name;
  if (s->name_.empty()) {
    // The directory's own name (of its absolute path: `--model .` too), never a path.
    std::error_code ec;
    std::filesystem::path p = std::filesystem::absolute(config.model_dir, ec).lexically_normal();
    while (!p.empty() && p.filename().empty() && p != p.root_path()) p = p.parent_path();
    s->name_ = p.filename().string();
    if (s->name_.empty() || s->name_ == "." || s->name_ == "..") s->name_ = "model";
  }
  s->model_ = std::make_unique<model::Model>(model::Model::load(config.model_dir));
  s->tokenizer_ = text::Tokenizer::load(config.model_dir);
  std::string source = s->tokenizer_.chat_template();
  if (source.empty()) {
    const auto path = std::filesystem::path(config.model_dir) / "chat_template.jinja";
    if (std::filesystem::exists(path)) source = read_file(path.string());
  }
  if (source.empty())
    throw Error(config.model_dir + ": no chat template (tokenizer_config.json has no chat_template and there is no "
                                   "chat_template.jinja)");
  s->template_ = std::make_unique<text::ChatTemplate>(source);

  for (int64_t id : s->model_->config.eos_token_ids) s->eos_ids_.push_back(static_cast<int32_t>(id));
  if (!s->tokenizer_.eos_token().empty()) {
    const int32_t id = s->tokenizer_.token_to_id(s->tokenizer_.eos_token());
    if (id >= 0 && std::find(s->eos_ids_.begin(), s->eos_ids_.end(), id) == s->eos_ids_.end()) s->eos_ids_.push_back(id);
  }
  for (const char* t : {"<think>", "</think>", "<tool_call>", "</tool_call>"}) {
    const int32_t id = s->tokenizer_.token_to_id(t);
    if (id >= 0) s->keep_special_ids_.push_back(id);
  }

  s->defaults_ = SamplingDefaults::load(config.model_dir);

  // The grammar matcher's vocabulary (a trie over every token's bytes: ~0.1 s at 131K tokens,
  // which the first constrained request would otherwise wait for), built beside the plan and
  // the weights' upload. A failure here is left for that request to meet (call_once retries).
  std::thread vocabulary([svc = s.get()] {
    try {
      svc->grammar_vocabulary();
    } catch (...) {
    }
  });
  struct Join {
    std::thread& t;
    ~Join() { t.join(); }
  } join_vocabulary{vocabulary};

  runtime::MemoryPlanRequest plan = config.plan;
  model::require_parallel_supported(plan.device, plan.parallel);  // before "no CUDA device"
  plan.device = model::resolve_device(plan.device);
  plan.speculative_tokens = config.speculative_tokens;
  s->plan_ = runtime::plan_memory(*s->model_, plan);
  log << s->plan_.describe();
  log.flush();
  auto backend = model::make_backend(*s->model_, s->plan_.backend_options());
  // On the GPU every decode batch size's CUDA graph is captured now rather than inside the first
  // requests' steps (NEMOTRON_DECODE_WARM_UP=0: lazily, for A/B runs of start-up and first TTFT).
  // It only moves work earlier: a failure is reported and serving goes on (graphs then lazily).
  if (s->plan_.device == "cuda" && !env_equals("NEMOTRON_DECODE_WARM_UP", "0")) {
    try {
      const runtime::MemoryPlan& pl = s->plan_;
      const runtime::WarmUpResult w =
          runtime::warm_up_decode_steps(*backend, pl.max_num_seqs, pl.max_step_tokens, pl.max_model_len);
      char line[128];
      std::snprintf(line, sizeof line,
                    "decode steps warmed up: batch sizes 1-%d in %.2f s (their CUDA graphs captured)\n", w.batch_sizes,
                    w.seconds);
      log << line;
    } catch (const Error& e) {
      log << "decode warm-up failed, graphs will be captured by the first requests: " << e.what() << "\n";
    }
  }
  runtime::EngineOptions eo = s->plan_.engine_options();
  eo.speculative_tokens =
      config.speculative_tokens >= 0 ? config.speculative_tokens : runtime::default_speculative_tokens(*backend);
  eo.prefix_cache_dir = config.prefix_cache_dir;
  eo.step_log = config.step_log;
  if (eo.speculative_tokens > 0)
    log << "speculative decoding: up to " << eo.speculative_tokens
        << " MTP drafts per decode step, as many as measure fastest (--speculative-tokens 0: off)\n";
  s->engine_ = std::make_unique<runtime::Engine>(std::move(backend), eo);
  s->metrics_ = std::make_unique<Metrics>(s->name_);
  return s;
}

SamplingDefaults SamplingDefaults::load(const std::string& model_dir) {
  SamplingDefaults d;
  const auto path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  if (!std::filesystem::exists(path)) return d;
  // Python's json.dumps writes NaN and Infinity as bare tokens: parse_json reads them (as the
  // strings "NaN", "Infinity", "-Infinity"), so that the error names the key.
  const Json j = parse_json(read_file(path), path);
  if (!j.is_object()) throw Error(path + ": expected a JSON object");
  auto number = [&](const char* key, double lo, double hi, bool lo_open) -> std::optional<float> {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    const bool special = it->is_string() && (*it == "NaN" || *it == "Infinity" || *it == "-Infinity");
    if (!it->is_number() && !special) throw Error(path + ": '" + key + "' must be a number");
    const double v = json_number(*it, path + ": '" + key + "'");
    if (!std::isfinite(v))
      throw Error(path + ": '" + key + "' must be a finite number, got " + it->get<std::string>());
    if (v < lo || v > hi || (lo_open && v == lo))
      throw Error(path + ": '" + key + "' = " + std::to_string(v) + " is out of range");
    return static_cast<float>(v);
  };
  d.temperature = number("temperature", 0, 2, false);
  d.top_p = number("top_p", 0, 1, true);
  d.min_p = number("min_p", 0, 1, false);
  d.repetition_penalty = number("repetition_penalty", 0, 2, true);
  if (const auto it = j.find("top_k"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < -1 || it->get<int64_t>() > 1'000'000)
      throw Error(path + ": 'top_k' must be -1 or a non-negative integer");
    d.top_k = static_cast<int32_t>(it->get<int64_t>());
  }
  return d;
}

void SamplingDefaults::apply(const SamplingGiven& given, kernels::SamplingParams& p) const {
  if (!given.temperature && temperature) p.temperature = *temperature;
  if (!given.top_p && top_p) p.top_p = *top_p;
  if (!given.top_k && top_k) p.top_k = *top_k;
  if (!given.min_p && min_p) p.min_p = *min_p;
  if (!given.repetition_penalty && repetition_penalty) p.repetition_penalty = *repetition_penalty;
}

void ModelService::check_model(const std::string& model) const {
  if (!model.empty() && model != name_)
    throw ApiError(404, "The model '" + model + "' does not exist (this server serves '" + name_ + "')", "model",
                   "model_not_found");
}

ChatPrompt ModelService::render_chat(const ChatRequest& r) const {
  ChatPrompt p;
  p.tools = r.tools;
  if (r.tool_choice == ToolChoice::kNamed) {
    p.tools = Json::array();
    for (const Json& t : r.tools)
      if (t["function"]["name"] == r.tool_choice_name) p.tools.push_back(t);
  }
  text::ChatTemplateOptions opts;
  opts.add_generation_prompt = r.add_generation_prompt;
  opts.kwargs = r.chat_template_kwargs;
  opts.bos_token = tokenizer_.bos_token();
  opts.eos_token = tokenizer_.eos_token();
  try {
    p.text = template_->render(r.messages, p.tools, opts);
  } catch (const Error& e) {
    throw bad_param("messages", std::string("cannot render the chat template: ") + e.what());
  }
  p.ids = tokenizer_.encode(p.text, false, true);
  p.thinking = text::prompt_ends_in_reasoning(p.text);
  if (r.add_generation_prompt) {
    // The same conversation without the generation prompt: where the next turn diverges.
    opts.add_generation_prompt = false;
    try {
      const std::string history = template_->render(r.messages, p.tools, opts);
      if (p.text.compare(0, history.size(), history) == 0) {
        const auto h = tokenizer_.encode(history, false, true);
        if (h.size() < p.ids.size() && std::equal(h.begin(), h.end(), p.ids.begin()))
          p.history_tokens = static_cast<int64_t>(h.size());
      }
    } catch (const Error&) {
      // A template that cannot render without the generation prompt: no snapshot point.
    }
  }
  return p;
}

std::vector<int32_t> ModelService::completion_prompt(const CompletionRequest& r) const {
  if (!r.prompt_is_ids) return tokenizer_.encode(r.prompt_text, true, true);
  const int64_t vocab = engine_->vocab_size();
  for (int32_t id : r.prompt_ids)
    if (id >= vocab) throw bad_param("prompt", "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                                  std::to_string(vocab) + ")");
  return r.prompt_ids;
}

int64_t ModelService::resolve_max_tokens(const GenerationOptions& gen, int64_t prompt_len,
                                         const std::string& prompt_param) const {
  const int64_t limit = plan_.max_model_len;
  if (prompt_len == 0) throw bad_param(prompt_param, "the prompt encodes to no tokens");
  if (gen.max_tokens ? prompt_len + *gen.max_tokens > limit : prompt_len >= limit) {
    const int64_t want = gen.max_tokens.value_or(1);
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(limit) + " tokens. However, you requested " +
                       std::to_string(want) + " output tokens and your prompt contains at least " +
                       std::to_string(prompt_len) + " input tokens, for a total of at least " +
                       std::to_string(prompt_len + want) +
                       " tokens. Please reduce the length of the input prompt or the number of requested output tokens.",
                   gen.max_tokens ? "max_tokens" : prompt_param, "context_length_exceeded");
  }
  return gen.max_tokens.value_or(limit - prompt_len);
}

std::shared_ptr<const text::grammar::Vocabulary> ModelService::grammar_vocabulary() const {
  std::call_once(vocabulary_once_, [&] { vocabulary_ = text::grammar::Vocabulary::from_tokenizer(tokenizer_); });
  return vocabulary_;
}

std::shared_ptr<const text::grammar::Grammar> ModelService::output_grammar(const GenerationOptions& gen,
                                                                           const ChatRequest* chat,
                                                                           const ChatPrompt* prompt) const {
  namespace grammar = text::grammar;
  using Kind = StructuredOutput::Kind;
  const StructuredOutput& s = gen.structured;
  const bool tool_call = chat && prompt && !prompt->tools.is_null() && !prompt->tools.empty() &&
                         (chat->tool_choice == ToolChoice::kRequired || chat->tool_choice == ToolChoice::kNamed);
  if (s.kind == Kind::kNone && !tool_call) return nullptr;
  if (s.kind != Kind::kNone && tool_call)
    throw bad_param(s.param, "'" + s.param + "' and an enforced 'tool_choice' cannot be combined");
  // Compiled grammars are immutable: one per distinct request, kept (bounded).
  const std::string key = tool_call ? "tools:" + std::string(chat->parallel_tool_calls ? "n:" : "1:") + prompt->tools.dump()
                                    : std::to_string(static_cast<int>(s.kind)) + ":" + s.schema.dump() + ":" + s.text +
                                          ":" + Json(s.choices).dump();
  {
    std::lock_guard<std::mutex> lock(grammars_mu_);
    const auto it = grammars_.find(key);
    if (it != grammars_.end()) return it->second;
  }
  std::shared_ptr<const grammar::Grammar> g;
  const std::string param = tool_call ? "tool_choice" : s.param;
  try {
    if (tool_call) {
      g = tool_call_grammar(prompt->tools, chat->parallel_tool_calls, tokenizer_.token_to_id("<tool_call>"),
                            tokenizer_.token_to_id("</tool_call>"));
    } else {
      switch (s.kind) {
        case Kind::kJsonObject: g = grammar::json_object(); break;
        case Kind::kJsonSchema: g = grammar::from_json_schema(s.schema); break;
        case Kind::kRegex: g = grammar::from_regex(s.text); break;
        case Kind::kGrammar: g = grammar::from_ebnf(s.text); break;
        case Kind::kChoice: {
          std::vector<std::shared_ptr<const grammar::Grammar>> options;
          for (const auto& c : s.choices) options.push_back(grammar::Grammar::literal(c));
          g = grammar::Grammar::alternatives(options);
          break;
        }
        case Kind::kNone: break;
      }
    }
  } catch (const Error& e) {
    throw bad_param(param, "'" + param + "': " + e.what());
  }
  std::lock_guard<std::mutex> lock(grammars_mu_);
  if (grammars_.size() >= 256) grammars_.clear();
  grammars_.emplace(key, g);
  return g;
}

runtime::GenerationRequest ModelService::make_request(const std::vector<int32_t>& prompt, const GenerationOptions& gen,
                                                      int64_t max_tokens, int choice, std::vector<int64_t> snapshot_at,
                                                      bool reasoning,
                                                      std::shared_ptr<const text::grammar::Grammar> grammar) const {
  runtime::GenerationRequest g;
  g.prompt = prompt;
  g.snapshot_at = std::move(snapshot_at);
  if (reasoning) {
    g.reasoning = true;
    g.reasoning_end_id = tokenizer_.token_to_id("</think>");
    if (gen.reasoning_budget) {
      if (g.reasoning_end_id < 0)
        throw bad_param("reasoning_effort", "this model's tokenizer has no </think> token: a reasoning budget cannot end reasoning");
      g.reasoning_budget = *gen.reasoning_budget;
      g.reasoning_end = tokenizer_.encode("\n</think>\n", false, true);
    }
  }
  g.sampling = gen.sampling;
  defaults_.apply(gen.given, g.sampling);
  if (g.sampling.seed) *g.sampling.seed += static_cast<uint64_t>(choice);
  g.max_tokens = max_tokens;
  if (!gen.ignore_eos) g.stop_token_ids = eos_ids_;
  const int64_t vocab = engine_->vocab_size();
  for (int32_t id : gen.stop_token_ids) {
    if (id >= vocab)
      throw bad_param("stop_token_ids", "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                            std::to_string(vocab) + ")");
    g.stop_token_ids.push_back(id);
  }
  if (grammar) {
    // The output ends once the grammar is matched: the end-of-sequence ids end it (also with
    // ignore_eos, which would otherwise leave nothing to draw).
    for (int32_t id : eos_ids_)
      if (std::find(g.stop_token_ids.begin(), g.stop_token_ids.end(), id) == g.stop_token_ids.end())
        g.stop_token_ids.push_back(id);
    const int32_t think_end = g.reasoning ? tokenizer_.token_to_id("</think>") : -1;
    g.constraint = std::make_shared<GrammarConstraint>(std::move(grammar), grammar_vocabulary(), eos_ids_,
                                                       vocab, think_end);
  }
  return g;
}

PipelineOptions ModelService::chat_pipeline(const ChatRequest& r, const ChatPrompt& prompt) const {
  PipelineOptions o;
  o.chat = true;
  o.parser.thinking_enabled = prompt.thinking;
  const auto force = r.chat_template_kwargs.find("force_nonempty_content");
  o.parser.force_nonempty_content =
      force != r.chat_template_kwargs.end() && force->is_boolean() && force->get<bool>();
  if (!prompt.tools.is_null()) o.parser.tools = prompt.tools;
  o.parser.tool_choice_none = r.tool_choice == ToolChoice::kNone;
  o.stop = r.gen.stop;
  o.eos_ids = eos_ids_;
  o.skip_special_tokens = r.gen.skip_special_tokens;
  o.keep_special_ids = keep_special_ids_;
  o.logprobs = r.gen.logprobs;
  o.top_logprobs = r.gen.top_logprobs;
  o.max_tool_calls = r.parallel_tool_calls ? -1 : 1;
  return o;
}

PipelineOptions ModelService::completion_pipeline(const CompletionRequest& r) const {
  PipelineOptions o;
  o.chat = false;
  o.stop = r.gen.stop;
  o.eos_ids = eos_ids_;
  o.skip_special_tokens = r.gen.skip_special_tokens;
  o.logprobs = r.gen.logprobs;
  o.top_logprobs = r.gen.top_logprobs;
  return o;
}

}  // namespace nemotron::server
