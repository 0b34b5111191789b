#pragma once
// What `serve` and `run` share: the loaded model, tokenizer, chat template and engine, and
// the steps from a typed request to engine requests and output pipelines:
//   chat:        messages/tools/kwargs -> chat template -> ids (no special tokens added:
//                the template emits them); thinking mode = prompt_ends_in_reasoning(text)
//   completions: prompt text -> ids (add_special_tokens as the tokenizer config says), or ids
//   both:        max_tokens (default max_model_len - prompt), context check, stop ids
//                (config eos_token_id list + tokenizer eos token, unless ignore_eos, plus
//                stop_token_ids), seed + i for choice i, sampling fields the request omits
//                from generation_config.json.
// tool_choice without constrained decoding (serving doc §4.4): "none" renders the tools but
// parses no calls (vLLM's default); "required" renders and parses as "auto"; a named choice
// renders and parses only that function. Neither is enforced: a reply without a call is
// returned as text (documented in docs/serving.md).
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "model/checkpoint/weights.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"
#include "server/metrics.h"
#include "server/output_pipeline.h"
#include "server/request.h"
#include "text/grammar/grammar.h"
#include "text/jinja/chat_template.h"
#include "text/tokenizer/tokenizer.h"

namespace nemotron::server {

struct ServiceConfig {
  std::string model_dir;
  std::string served_model_name;    // default: the model directory's last component
  runtime::MemoryPlanRequest plan;
  int speculative_tokens = -1;      // MTP drafts per step; -1 = runtime::default_speculative_tokens
  std::string prefix_cache_dir;     // keep cached prefixes across restarts (empty: off)
  std::string step_log;             // runtime::EngineOptions::step_log (empty: off)
};

// Sampling defaults from the model directory's generation_config.json (as vLLM applies
// them): a request that omits a field takes the model's value, else SamplingParams' default.
struct SamplingDefaults {
  std::optional<float> temperature, top_p, min_p, repetition_penalty;
  std::optional<int32_t> top_k;
  // Reads DIR/generation_config.json when present; throws nemotron::Error naming the file and
  // key for a malformed file or an out-of-range value.
  static SamplingDefaults load(const std::string& model_dir);
  void apply(const SamplingGiven& given, kernels::SamplingParams& p) const;
};

struct ChatPrompt {
  std::string text;
  std::vector<int32_t> ids;
  bool thinking = false;            // the prompt leaves the model inside <think>
  Json tools;                       // the tools rendered and parsed (named choice: one)
  // Tokens of the conversation before the generation prompt, when they are a prefix of `ids`
  // (0 otherwise): a prefix-cache snapshot point, since the next turn starts with them.
  int64_t history_tokens = 0;
};

class ModelService {
 public:
  // Loads model + tokenizer (+ chat template: tokenizer_config.json, else chat_template.jinja),
  // plans memory (printing the plan to `log`) and starts the engine. Throws nemotron::Error.
  static std::unique_ptr<ModelService> load(const ServiceConfig& config, std::ostream& log);
  ~ModelService();

  const std::string& name() const { return name_; }
  const std::string& model_dir() const { return model_dir_; }
  const text::Tokenizer& tokenizer() const { return tokenizer_; }
  runtime::Engine& engine() { return *engine_; }
  const runtime::MemoryPlan& plan() const { return plan_; }
  int64_t max_model_len() const { return plan_.max_model_len; }
  int speculative_tokens() const { return engine_->options().speculative_tokens; }
  Metrics& metrics() { return *metrics_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  const SamplingDefaults& sampling_defaults() const { return defaults_; }

  // ApiError 404 when `model` is given and is not the served name.
  void check_model(const std::string& model) const;
  // Throws ApiError 400 (param "messages") on template errors.
  ChatPrompt render_chat(const ChatRequest& request) const;
  std::vector<int32_t> completion_prompt(const CompletionRequest& request) const;
  // max_tokens for a prompt; ApiError 400 "This model's maximum context length is ..." when
  // prompt + max_tokens exceeds max_model_len. `prompt_param` names the prompt field.
  int64_t resolve_max_tokens(const GenerationOptions& gen, int64_t prompt_len, const std::string& prompt_param) const;
  // `reasoning`: the prompt leaves the model reasoning (ChatPrompt::thinking): the output starts
  // inside <think>, and gen.reasoning_budget applies.
  // `grammar`: the output's constraint (output_grammar), or null.
  runtime::GenerationRequest make_request(const std::vector<int32_t>& prompt, const GenerationOptions& gen,
                                          int64_t max_tokens, int choice, std::vector<int64_t> snapshot_at = {},
                                          bool reasoning = false,
                                          std::shared_ptr<const text::grammar::Grammar> grammar = nullptr) const;
  // The grammar a request's output must match: its structured output (gen.structured), or, for
  // a chat request with tools and tool_choice "required" or a named function, the tool call.
  // Null when the output is free. ApiError 400 naming the field when it cannot compile.
  std::shared_ptr<const text::grammar::Grammar> output_grammar(const GenerationOptions& gen,
                                                               const ChatRequest* chat = nullptr,
                                                               const ChatPrompt* prompt = nullptr) const;
  // The tokenizer's vocabulary as the grammar matcher reads it (built on first use).
  std::shared_ptr<const text::grammar::Vocabulary> grammar_vocabulary() const;
  PipelineOptions chat_pipeline(const ChatRequest& request, const ChatPrompt& prompt) const;
  PipelineOptions completion_pipeline(const CompletionRequest& request) const;

 private:
  ModelService() = default;
  std::string name_, model_dir_;
  std::unique_ptr<model::Model> model_;
  text::Tokenizer tokenizer_;
  std::unique_ptr<text::ChatTemplate> template_;
  runtime::MemoryPlan plan_;
  std::unique_ptr<runtime::Engine> engine_;
  std::unique_ptr<Metrics> metrics_;
  std::vector<int32_t> eos_ids_;
  SamplingDefaults defaults_;
  mutable std::once_flag vocabulary_once_;
  mutable std::shared_ptr<const text::grammar::Vocabulary> vocabulary_;
  mutable std::mutex grammars_mu_;
  mutable std::map<std::string, std::shared_ptr<const text::grammar::Grammar>> grammars_;  // compiled, by request
  std::vector<int32_t> keep_special_ids_;  // <think>, </think>, <tool_call>, </tool_call>
};

}  // namespace nemotron::server
