// POST /v1/chat/completions and POST /v1/completions: typed request -> prompt -> one engine
// request per choice -> output pipelines -> one JSON response, or SSE chunks written from
// httplib's chunked content provider. A client gone (a failed write, or the peer's FIN/RST
// seen on the connection: PeerSocket) cancels every engine request of the response; so does
// server shutdown.
//
// Non-streaming responses are written only once the result is known: the handler waits for
// every choice, checking the connection for a close every kDisconnectCheck, then sets the
// status and body as a plain response. So a failure after generation started (a choice
// finishing with "error") still gets its true status (500 + OpenAI error body), and a
// disconnected client is noticed without writing anything to it. The abandoned request is
// answered 499 (nginx's "client closed request"; the write goes nowhere but the status is
// counted in nemotron:http_requests_total).
#include <ctime>

#include "server/http_internal.h"
#include "server/http_job.h"
#include "server/openai_format.h"
#include "server/peer_socket.h"
#include "server/session.h"
#include "util/error.h"

namespace nemotron::server {
namespace {

using namespace std::chrono_literals;


Json final_response(Job& job) {
  Json body = job.envelope(job.chat ? "chat.completion" : "text_completion");
  Json choices = Json::array();
  for (std::size_t i = 0; i < job.pipes.size(); ++i) {
    const OutputPipeline& p = *job.pipes[i];
    if (p.finish_reason() == "error")
      throw ApiError(500, "generation failed: " + p.error(), "", "internal_error");
    Json c = {{"index", i}};
    Json logprobs = nullptr;
    if (job.chat) {
      c["message"] = chat_message_json(p.result(), job.include_reasoning);
      if (!p.all_logprobs().empty()) logprobs = chat_logprobs_json(p.all_logprobs());
    } else {
      c["text"] = job.echo + p.result().content;
      int64_t offset = static_cast<int64_t>(job.echo.size());
      if (!p.all_logprobs().empty()) logprobs = completion_logprobs_json(p.all_logprobs(), offset);
    }
    c["logprobs"] = logprobs;
    c["finish_reason"] = p.finish_reason();
    c["stop_reason"] = p.stop_reason();
    choices.push_back(c);
  }
  body["choices"] = choices;
  body["usage"] = usage_json(job.prompt_tokens, job.completion_tokens(), job.cached_tokens);
  return body;
}

// Chunks for one pipeline output of choice `c`.
std::vector<Json> stream_chunks(Job& job, int c, PipelineOutput& out, std::vector<int64_t>& offsets) {
  std::vector<Json> chunks;
  const OutputPipeline& p = *job.pipes[static_cast<std::size_t>(c)];
  Json pending_logprobs = nullptr;
  if (!out.logprobs.empty()) {
    pending_logprobs = job.chat ? chat_logprobs_json(out.logprobs)
                                : completion_logprobs_json(out.logprobs, offsets[static_cast<std::size_t>(c)]);
  }
  auto make = [&](const char* key, Json value) {
    Json ch = job.envelope(job.chat ? "chat.completion.chunk" : "text_completion");
    Json choice = {{"index", c}, {key, std::move(value)}, {"logprobs", pending_logprobs}, {"finish_reason", nullptr}};
    pending_logprobs = nullptr;
    ch["choices"] = Json::array({choice});
    chunks.push_back(std::move(ch));
  };
  if (job.chat) {
    for (Json& d : chat_deltas(out.events, job.include_reasoning)) make("delta", std::move(d));
  } else {
    std::string text;
    for (const auto& e : out.events) text += e.text;
    if (!text.empty()) make("text", text);
  }
  if (out.finished) {
    if (p.finish_reason() == "error") {
      chunks.push_back(error_body(500, "generation failed: " + p.error(), "", "internal_error"));
      return chunks;
    }
    make(job.chat ? "delta" : "text", job.chat ? Json::object() : Json(""));
    Json& last = chunks.back()["choices"][0];
    last["finish_reason"] = p.finish_reason();
    last["stop_reason"] = p.stop_reason();
  } else if (!pending_logprobs.is_null()) {
    make(job.chat ? "delta" : "text", job.chat ? Json::object() : Json(""));
  }
  return chunks;
}

void respond(std::shared_ptr<Job> job, const httplib::Request& req, httplib::Response& res) {
  const PeerSocket peer = PeerSocket::find(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  if (!job->stream) {
    if (run_to_end(*job, peer)) send_json(res, 200, final_response(*job));
    else send_error(res, ApiError(499, "The client closed the connection", "", "client_closed_request"));
    return;
  }
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, peer](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        auto fail = [&] {
          job->abandon();
          return false;
        };
        std::vector<int64_t> offsets(job->pipes.size(), static_cast<int64_t>(job->echo.size()));
        for (std::size_t c = 0; c < job->pipes.size(); ++c) {
          Json ch = job->envelope(job->chat ? "chat.completion.chunk" : "text_completion");
          Json choice = {{"index", c}};
          if (job->chat) choice["delta"] = {{"role", "assistant"}, {"content", ""}};
          else if (!job->echo.empty()) choice["text"] = job->echo;
          else continue;
          choice["logprobs"] = nullptr;
          choice["finish_reason"] = nullptr;
          ch["choices"] = Json::array({choice});
          if (!write(sse(ch))) return fail();
        }
        while (!job->done()) {
          int c = 0;
          PipelineOutput out;
          if (!job->pump(c, out, 200ms)) {
            if (!sink.is_writable() || peer.closed()) return fail();
            continue;
          }
          for (const Json& ch : stream_chunks(*job, c, out, offsets))
            if (!write(sse(ch))) return fail();
        }
        if (job->include_usage) {
          Json ch = job->envelope(job->chat ? "chat.completion.chunk" : "text_completion");
          ch["choices"] = Json::array();
          ch["usage"] = usage_json(job->prompt_tokens, job->completion_tokens(), job->cached_tokens);
          if (!write(sse(ch))) return fail();
        }
        if (!write("data: [DONE]\n\n")) return fail();
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->abandon();
      });
}

void submit_or_400(Job& job, const std::vector<int32_t>& prompt, const GenerationOptions& gen, int64_t max_tokens,
                   const PipelineOptions& popts) {
  try {
    job.start(prompt, gen, max_tokens, popts);
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
}

}  // namespace

void handle_chat(HttpServer::State& state, ModelService& service, const httplib::Request& req, httplib::Response& res) {
  const ChatRequest r = parse_chat_request(parse_body(req.body));
  service.check_model(r.model);
  const ChatPrompt prompt = service.render_chat(r);
  const int64_t max_tokens = service.resolve_max_tokens(r.gen, static_cast<int64_t>(prompt.ids.size()), "messages");
  auto job = std::make_shared<Job>(state, service);
  job->id = make_id("chatcmpl-");
  job->model = service.name();
  job->chat = true;
  job->include_reasoning = r.include_reasoning;
  job->stream = r.gen.stream;
  job->include_usage = r.gen.include_usage;
  if (prompt.history_tokens > 0) job->snapshot_at = {prompt.history_tokens};
  job->reasoning = prompt.thinking;
  job->grammar = service.output_grammar(r.gen, &r, &prompt);
  submit_or_400(*job, prompt.ids, r.gen, max_tokens, service.chat_pipeline(r, prompt));
  respond(job, req, res);
}

void handle_completion(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                       httplib::Response& res) {
  const CompletionRequest r = parse_completion_request(parse_body(req.body));
  service.check_model(r.model);
  if (r.echo && r.gen.logprobs)
    throw bad_param("echo", "'echo' together with 'logprobs' (prompt logprobs) is not supported", "unsupported_parameter");
  const std::vector<int32_t> prompt = service.completion_prompt(r);
  const int64_t max_tokens = service.resolve_max_tokens(r.gen, static_cast<int64_t>(prompt.size()), "prompt");
  auto job = std::make_shared<Job>(state, service);
  job->id = make_id("cmpl-");
  job->model = service.name();
  job->chat = false;
  job->stream = r.gen.stream;
  job->include_usage = r.gen.include_usage;
  if (r.echo) job->echo = r.prompt_is_ids ? service.tokenizer().decode(prompt) : r.prompt_text;
  job->grammar = service.output_grammar(r.gen);
  submit_or_400(*job, prompt, r.gen, max_tokens, service.completion_pipeline(r));
  respond(job, req, res);
}

}  // namespace nemotron::server
