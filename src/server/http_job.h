#pragma once
// One generation request of any HTTP API (chat and text completions, and the other APIs'
// routes): its engine requests -- one per choice -- and one output pipeline per choice, pumped
// by the handler's thread. Server-internal (src/server only).
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "server/http_internal.h"
#include "server/openai_format.h"
#include "server/output_pipeline.h"
#include "server/peer_socket.h"
#include "server/session.h"

namespace nemotron::server {

// How often a non-streaming handler checks that its client is still connected.
inline constexpr std::chrono::milliseconds kDisconnectCheck{100};

// The choices of one response: the session and one pipeline per choice.
struct Job {
  HttpServer::State& state;
  ModelService& service;
  std::string id, model;
  long long created = static_cast<long long>(std::time(nullptr));
  bool chat = true;
  bool include_reasoning = true;
  bool stream = false, include_usage = false;
  std::string echo;  // completions echo: the prompt text
  GenerationSession session;
  std::vector<std::unique_ptr<OutputPipeline>> pipes;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // of the prompt, resumed from the prefix cache (any choice's)
  std::vector<int64_t> snapshot_at;  // prefix-cache snapshot points of the prompt (chat history)
  bool reasoning = false;            // the prompt leaves the model reasoning (chat thinking mode)
  std::shared_ptr<const text::grammar::Grammar> grammar;  // the output's constraint (or null)

  Job(HttpServer::State& st, ModelService& s) : state(st), service(s), session(s.engine(), &s.metrics()) {}

  // Submits gen.n choices of `prompt` (throws nemotron::Error from the engine).
  void start(const std::vector<int32_t>& prompt, const GenerationOptions& gen, int64_t max_tokens,
             const PipelineOptions& popts);

  bool done() const {
    for (const auto& p : pipes)
      if (!p->done()) return false;
    return true;
  }

  // One engine event through its pipeline; false on timeout. Shutdown cancels everything.
  bool pump(int& choice, PipelineOutput& out, std::chrono::milliseconds timeout);
  // The client is gone: cancel every engine request and count the unfinished choices as
  // aborted (their final events are never read).
  void abandon();
  bool abandoned = false;

  int64_t completion_tokens() const {
    int64_t n = 0;
    for (const auto& p : pipes) n += p->completion_tokens();
    return n;
  }

  Json envelope(const char* object) const {
    return {{"id", id}, {"object", object}, {"created", created}, {"model", model}};
  }
};

// Every choice to its end; false (everything cancelled) when the client went away first.
// The check is timed, not tied to pump timeouts: events may arrive without a pause.
bool run_to_end(Job& job, const PeerSocket& peer);

}  // namespace nemotron::server
