#pragma once
// Prometheus metrics (text exposition format 0.0.4), vLLM's names with a `nemotron:` prefix.
// Every sample carries the label model_name="<served name>".
//   gauges     nemotron:num_requests_running, nemotron:num_requests_waiting,
//              nemotron:kv_cache_usage_perc (reserved / capacity, 0..1),
//              nemotron:kv_cache_reserved_tokens, nemotron:kv_cache_capacity_tokens,
//              nemotron:state_slots_used, nemotron:state_slots_total
//   counters   nemotron:prompt_tokens_total, nemotron:generation_tokens_total,
//              nemotron:engine_steps_total, nemotron:request_success_total{finished_reason},
//              nemotron:spec_decode_num_drafts, _num_draft_tokens, _num_accepted_tokens,
//              _num_accepted_tokens_per_pos{position} (speculative decoding, vLLM's names),
//              nemotron:prefix_cache_queries, _hits (prompt tokens), _snapshots, _bytes, _budget_bytes,
//              nemotron:http_requests_total{status} (also the connection loop's own 408 / 429 / 431 / 503)
//   histograms nemotron:time_to_first_token_seconds, nemotron:inter_token_latency_seconds,
//              nemotron:e2e_request_latency_seconds, nemotron:request_prompt_tokens,
//              nemotron:request_generation_tokens, nemotron:request_queue_time_seconds (submit to
//              the first step), nemotron:request_prefill_time_seconds (first step to first token)
// Engine-level numbers come from Engine::stats(); latencies are observed per engine request
// (one per choice) by the request threads.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace nemotron::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  void render(std::string& out, const std::string& name, const std::string& help, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string model_name);
  void observe_ttft(double seconds);
  void observe_itl(double seconds);
  // The first token's TokenEvent::queue_seconds / prefill_seconds (negative: not observed).
  void observe_first_token(double queue_seconds, double prefill_seconds);
  void observe_request(double e2e_seconds, int64_t prompt_tokens, int64_t generation_tokens,
                       const std::string& finish_reason);
  void count_http(int status);
  std::string render(const runtime::EngineStats& stats) const;

 private:
  std::string labels_;
  mutable std::mutex mu_;
  Histogram ttft_, itl_, e2e_, prompt_tokens_, generation_tokens_, queue_, prefill_;
  std::map<std::string, uint64_t> finished_;
  std::map<int, uint64_t> http_;
};

}  // namespace nemotron::server
