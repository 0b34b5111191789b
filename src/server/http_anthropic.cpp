// POST /v1/messages (Anthropic's Messages API) and POST /v1/messages/count_tokens, on the chat
// path: the request becomes a ChatRequest (anthropic.h), rendered by ModelService::render_chat,
// generated as one Job with one chat OutputPipeline, and its events become an Anthropic
// message or SSE event sequence.
//
// Streams: message_start is written when the first token arrives (the prefill is done, so its
// usage -- cached tokens included -- is exact), or after kPingInterval without one; then the
// content blocks as they come; a `ping` event after every kPingInterval without a write
// (a request waiting for a slot, a long tool-call argument the parser holds back); then
// message_delta + message_stop. A failure after the headers went out is an `error` event.
// Client disconnects cancel the generation as in http_generate.cpp (a failed write, or the
// peer's FIN/RST seen while waiting).
#include <chrono>
#include <memory>
#include <optional>

#include "server/anthropic.h"
#include "server/http_internal.h"
#include "server/http_job.h"
#include "server/openai_format.h"
#include "server/peer_socket.h"
#include "text/parsers/reasoning_parser.h"
#include "util/error.h"

namespace nemotron::server {
namespace {

using namespace std::chrono_literals;

// Silence on a stream longer than this gets a ping event.
constexpr std::chrono::milliseconds kPingInterval = 3s;

// The prompt: render_chat's, or with a prefill (a final assistant message) the conversation
// without a generation prompt, cut just after that message's text so that the reply
// continues it.
ChatPrompt render_messages(const ModelService& s, const MessagesRequest& r) {
  ChatPrompt p = s.render_chat(r.chat);
  if (!r.prefill) return p;
  const std::size_t at = p.text.rfind(r.prefill_text);
  if (at == std::string::npos)
    throw bad_param("messages", "the chat template does not render the final assistant message's text verbatim, "
                                "so it cannot be continued (prefill)");
  p.text.resize(at + r.prefill_text.size());
  p.ids = s.tokenizer().encode(p.text, false, true);
  p.thinking = text::prompt_ends_in_reasoning(p.text);
  p.history_tokens = 0;
  return p;
}

// max_tokens after the context check, with Anthropic's messages for the two ways to exceed it
// (clients such as Claude Code read them to compact the conversation or lower max_tokens).
int64_t check_context(const ModelService& s, int64_t prompt_len, int64_t max_tokens) {
  const int64_t limit = s.max_model_len();
  if (prompt_len >= limit)
    throw ApiError(400, "prompt is too long: " + std::to_string(prompt_len) + " tokens > " +
                            std::to_string(limit - 1) + " maximum", "", "context_length_exceeded");
  if (prompt_len + max_tokens > limit)
    throw ApiError(400, "input length and `max_tokens` exceed context limit: " + std::to_string(prompt_len) + " + " +
                            std::to_string(max_tokens) + " > " + std::to_string(limit) +
                            ", decrease input length or `max_tokens` and try again", "", "context_length_exceeded");
  return max_tokens;
}

AnthropicUsage usage_of(const Job& job) {
  return {job.prompt_tokens, job.cached_tokens, job.completion_tokens()};
}

// The reply's end as an ApiError, when it did not end normally.
std::optional<ApiError> failure(const OutputPipeline& p) {
  if (p.finish_reason() == "error") return ApiError(500, "generation failed: " + p.error(), "", "internal_error");
  if (p.finish_reason() == "abort")
    return ApiError(503, "the generation was cancelled: the server is shutting down", "", "unavailable");
  return std::nullopt;
}

void respond_whole(Job& job, const httplib::Request& req, httplib::Response& res, const PeerSocket& peer) {
  if (!run_to_end(job, peer)) {
    send_error(req, res, ApiError(499, "The client closed the connection", "", "client_closed_request"));
    return;
  }
  const OutputPipeline& p = *job.pipes[0];
  if (auto e = failure(p)) throw *e;
  Json stop_sequence;
  const std::string stop_reason = anthropic_stop_reason(p.finish_reason(), p.stop_reason(), stop_sequence);
  Json content = anthropic_content(p.result(), job.include_reasoning);
  send_json(res, 200, anthropic_message(job.id, job.model, std::move(content), stop_reason, stop_sequence, usage_of(job)));
}

void respond_stream(std::shared_ptr<Job> job, httplib::Response& res, const PeerSocket& peer) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, peer](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
        auto fail = [&] {
          job->abandon();
          return false;
        };
        AnthropicBlockStream blocks(job->include_reasoning);
        bool started = false;
        auto last_write = Clock::now();
        while (!job->done()) {
          int c = 0;
          PipelineOutput out;
          const bool got = job->pump(c, out, 200ms);
          if (!got && (!sink.is_writable() || peer.closed())) return fail();
          std::string text;
          if (got && !started) {
            text = anthropic_message_start(job->id, job->model, usage_of(*job));
            started = true;
          }
          if (got) text += blocks.push(out.events);
          const auto now = Clock::now();
          if (text.empty() && now - last_write >= kPingInterval) {
            text = started ? anthropic_sse("ping", {{"type", "ping"}})
                           : anthropic_message_start(job->id, job->model, usage_of(*job));
            started = true;
          }
          if (text.empty()) continue;
          if (!write(text)) return fail();
          last_write = now;
        }
        std::string tail = started ? "" : anthropic_message_start(job->id, job->model, usage_of(*job));
        tail += blocks.close();
        const OutputPipeline& p = *job->pipes[0];
        if (auto e = failure(p)) {
          tail += anthropic_sse("error", anthropic_error_body(*e));
        } else {
          Json stop_sequence;
          const std::string stop_reason = anthropic_stop_reason(p.finish_reason(), p.stop_reason(), stop_sequence);
          tail += anthropic_message_end(stop_reason, stop_sequence, usage_of(*job));
        }
        if (!write(tail)) return fail();
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->abandon();
      });
}

}  // namespace

bool anthropic_path(const std::string& path) { return path == "/v1/messages" || path.rfind("/v1/messages/", 0) == 0; }

void send_error(const httplib::Request& req, httplib::Response& res, const ApiError& e) {
  if (anthropic_path(req.path)) send_json(res, e.status(), anthropic_error_body(e));
  else send_error(res, e);
}

void handle_messages(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                     httplib::Response& res) {
  const MessagesRequest r = parse_messages_request(parse_body(req.body));
  service.check_model(r.chat.model);
  const ChatPrompt prompt = render_messages(service, r);
  const int64_t max_tokens = check_context(service, static_cast<int64_t>(prompt.ids.size()), *r.chat.gen.max_tokens);
  auto job = std::make_shared<Job>(state, service);
  job->id = make_id("msg_");
  job->model = service.name();
  job->stream = r.chat.gen.stream;
  job->include_reasoning = r.chat.include_reasoning;
  if (prompt.history_tokens > 0) job->snapshot_at = {prompt.history_tokens};
  job->reasoning = prompt.thinking;
  job->grammar = service.output_grammar(r.chat.gen, &r.chat, &prompt);
  if (job->grammar && r.prefill)
    throw bad_param("messages", "a prefilled assistant turn cannot be continued under a structured output or an "
                                "enforced tool_choice (the output would have to start over)");
  PipelineOptions popts = service.chat_pipeline(r.chat, prompt);
  popts.parser.make_tool_call_id = [] { return make_id("toolu_"); };
  try {
    job->start(prompt.ids, r.chat.gen, max_tokens, popts);
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  const PeerSocket peer = PeerSocket::find(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  if (job->stream) respond_stream(job, res, peer);
  else respond_whole(*job, req, res, peer);
}

void handle_count_tokens(HttpServer::State&, ModelService& service, const httplib::Request& req,
                         httplib::Response& res) {
  const MessagesRequest r = parse_messages_request(parse_body(req.body), true);
  service.check_model(r.chat.model);
  send_json(res, 200, {{"input_tokens", render_messages(service, r).ids.size()}});
}

}  // namespace nemotron::server
