#include "server/metrics.h"

#include <cstdio>

namespace nemotron::server {
namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// Prometheus label values escape backslash, double quote and newline.
std::string escape_label(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\') o += "\\\\";
    else if (c == '"') o += "\\\"";
    else if (c == '\n') o += "\\n";
    else o += c;
  }
  return o;
}

void header(std::string& out, const std::string& name, const char* type, const std::string& help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, const std::string& labels, double v) {
  out += name + "{" + labels + "} " + num(v) + "\n";
}

const std::vector<double> kLatency = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                      0.75,  1.0,   2.5,  5.0,  7.5,  10,   20,   40,  80,   160};
const std::vector<double> kTokens = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i]++;
  sum_ += v;
  count_++;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help,
                       const std::string& labels) const {
  header(out, name, "histogram", help);
  uint64_t cum = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    const std::string le = i < bounds_.size() ? num(bounds_[i]) : "+Inf";
    out += name + "_bucket{" + labels + ",le=\"" + le + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_sum{" + labels + "} " + num(sum_) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count_) + "\n";
}

Metrics::Metrics(std::string model_name)
    : labels_("model_name=\"" + escape_label(model_name) + "\""),
      ttft_(kLatency), itl_(kLatency), e2e_(kLatency), prompt_tokens_(kTokens), generation_tokens_(kTokens),
      queue_(kLatency), prefill_(kLatency) {}

void Metrics::observe_ttft(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(s);
}

void Metrics::observe_first_token(double queue_seconds, double prefill_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_seconds >= 0) queue_.observe(queue_seconds);
  if (prefill_seconds >= 0) prefill_.observe(prefill_seconds);
}

void Metrics::observe_itl(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  itl_.observe(s);
}

void Metrics::observe_request(double e2e, int64_t prompt_tokens, int64_t generation_tokens,
                              const std::string& finish_reason) {
  std::lock_guard<std::mutex> lock(mu_);
  e2e_.observe(e2e);
  prompt_tokens_.observe(static_cast<double>(prompt_tokens));
  generation_tokens_.observe(static_cast<double>(generation_tokens));
  finished_[finish_reason]++;
}

void Metrics::count_http(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  http_[status]++;
}

std::string Metrics::render(const runtime::EngineStats& st) const {
  std::string o;
  const auto gauge = [&](const char* name, const char* help, double v) {
    header(o, name, "gauge", help);
    sample(o, name, labels_, v);
  };
  const auto counter = [&](const char* name, const char* help, double v) {
    header(o, name, "counter", help);
    sample(o, name, labels_, v);
  };
  gauge("nemotron:num_requests_running", "Sequences admitted by the scheduler (prefill or decode).", st.running);
  gauge("nemotron:num_requests_waiting", "Sequences queued for admission.", st.waiting);
  gauge("nemotron:kv_cache_usage_perc", "Fraction of KV token capacity reserved by running sequences (0..1).",
        st.kv_capacity > 0 ? double(st.kv_reserved) / double(st.kv_capacity) : 0.0);
  gauge("nemotron:kv_cache_reserved_tokens", "KV positions reserved by running sequences.", double(st.kv_reserved));
  gauge("nemotron:kv_cache_capacity_tokens", "KV positions planned at start-up.", double(st.kv_capacity));
  gauge("nemotron:state_slots_used", "Recurrent-state slots held by running sequences.", st.running);
  gauge("nemotron:state_slots_total", "Recurrent-state slots (max concurrent sequences).", st.max_num_seqs);
  counter("nemotron:prompt_tokens_total", "Prompt tokens processed.", double(st.prompt_tokens_total));
  counter("nemotron:generation_tokens_total", "Tokens generated.", double(st.generation_tokens_total));
  counter("nemotron:engine_steps_total", "Engine steps run.", double(st.steps_total));
  counter("nemotron:spec_decode_num_drafts", "Speculative verify steps (one per sequence per step).",
          double(st.spec_drafts));
  counter("nemotron:spec_decode_num_draft_tokens", "MTP draft tokens verified.", double(st.spec_draft_tokens));
  counter("nemotron:spec_decode_num_accepted_tokens", "MTP draft tokens accepted.", double(st.spec_accepted_tokens));
  gauge("nemotron:spec_decode_retired", "1 once speculation stopped because the MTP head's drafts were almost never accepted.",
        st.spec_retired ? 1.0 : 0.0);
  counter("nemotron:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.",
          double(st.prefix_cache.query_tokens));
  counter("nemotron:prefix_cache_hits", "Prompt tokens resumed from the prefix cache.",
          double(st.prefix_cache.hit_tokens));
  gauge("nemotron:prefix_cache_snapshots", "Cached prefixes (backend snapshots).", double(st.prefix_cache.entries));
  gauge("nemotron:prefix_cache_bytes", "Memory the cached prefixes take.", double(st.prefix_cache.bytes));
  gauge("nemotron:prefix_cache_budget_bytes", "Memory the prefix cache may take (0: off).",
        double(st.prefix_cache.budget));
  header(o, "nemotron:spec_decode_num_accepted_tokens_per_pos", "counter",
         "MTP draft tokens accepted, by draft position (0 = the first draft).");
  for (std::size_t k = 0; k < st.spec_accepted_per_pos.size(); ++k)
    sample(o, "nemotron:spec_decode_num_accepted_tokens_per_pos", labels_ + ",position=\"" + std::to_string(k) + "\"",
           double(st.spec_accepted_per_pos[k]));
  std::lock_guard<std::mutex> lock(mu_);
  header(o, "nemotron:request_success_total", "counter", "Finished engine requests by finish reason.");
  for (const char* r : {"stop", "length", "tool_calls", "abort", "error"}) {
    auto it = finished_.find(r);
    sample(o, "nemotron:request_success_total", labels_ + ",finished_reason=\"" + r + "\"",
           it == finished_.end() ? 0.0 : double(it->second));
  }
  header(o, "nemotron:http_requests_total", "counter", "HTTP responses by status code.");
  for (const auto& [status, n] : http_)
    sample(o, "nemotron:http_requests_total", labels_ + ",status=\"" + std::to_string(status) + "\"", double(n));
  ttft_.render(o, "nemotron:time_to_first_token_seconds", "Time from arrival to the first generated token.", labels_);
  itl_.render(o, "nemotron:inter_token_latency_seconds", "Time between consecutive generated tokens.", labels_);
  e2e_.render(o, "nemotron:e2e_request_latency_seconds", "Time from arrival to the last token.", labels_);
  prompt_tokens_.render(o, "nemotron:request_prompt_tokens", "Prompt length of finished requests.", labels_);
  generation_tokens_.render(o, "nemotron:request_generation_tokens", "Generated tokens of finished requests.", labels_);
  queue_.render(o, "nemotron:request_queue_time_seconds",
                "Time from the engine taking the request to its first step (waiting for a slot, KV or the budget).",
                labels_);
  prefill_.render(o, "nemotron:request_prefill_time_seconds", "Time from the request's first step to its first token.",
                  labels_);
  return o;
}

}  // namespace nemotron::server
