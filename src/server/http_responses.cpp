// POST /v1/responses, GET /v1/responses/{id}, DELETE /v1/responses/{id}.
//
// A response is a chat request underneath (responses.h): its items become chat messages,
// rendered by ModelService::render_chat and generated as one Job with one output pipeline;
// the pipeline's events feed a ResponseBuilder, which makes both the streamed events and the
// output items. Streaming, client disconnects and non-streaming waits work as in
// http_generate.cpp (the SSE lines carry `event:` names here). A completed or incomplete
// response with store (default true) is kept in the server's ResponseStore before its
// terminal event is sent, so a client can continue from it as soon as it has seen the end.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <memory>

#include "server/http_internal.h"
#include "server/http_job.h"
#include "server/openai_format.h"
#include "server/peer_socket.h"
#include "server/responses.h"
#include "util/error.h"

namespace nemotron::server {
namespace {

using namespace std::chrono_literals;

// One response in flight: the job (one choice), the builder and the object it fills.
struct ResponsesJob {
  ResponsesJob(HttpServer::State& st, ModelService& s, bool encrypted_reasoning)
      : job(st, s), builder(encrypted_reasoning) {}
  Job job;
  ResponseBuilder builder;
  ResponseObject response;
  Json items;              // the conversation's items, stored with the response
  bool store = false;
  bool thinking = false;   // the prompt opened <think>
  bool answer_started = false;
  int64_t reasoning_tokens = 0;  // generated before the first answer text or tool call
};

// Settles the response after its last engine event: status, output, usage, the store, and
// the terminal stream events.
void finish(ResponsesJob& rj, std::vector<Json>& events) {
  const OutputPipeline& p = *rj.job.pipes[0];
  ResponseObject& r = rj.response;
  const std::string& reason = p.finish_reason();
  if (reason == "length") {
    r.status = "incomplete";
    r.incomplete_details = {{"reason", "max_output_tokens"}};
  } else if (reason == "abort") {
    r.status = "cancelled";
    r.error = {{"code", "cancelled"}, {"message", "the generation was cancelled (server shutdown)"}};
  } else if (reason == "error") {
    r.status = "failed";
    r.error = {{"code", "server_error"}, {"message", "generation failed: " + p.error()}};
  } else {
    r.status = "completed";
    r.completed_at = static_cast<long long>(std::time(nullptr));
  }
  rj.builder.finish(r.status != "completed", events);
  r.output = rj.builder.output();
  r.usage = responses_usage(rj.job.prompt_tokens, rj.job.cached_tokens, p.completion_tokens(), rj.reasoning_tokens);
  const Json object = r.to_json();
  if (rj.store && (r.status == "completed" || r.status == "incomplete"))
    rj.job.state.responses.put(r.id, object, rj.items);
  if (r.status == "completed") {
    events.push_back(rj.builder.event("response.completed", {{"response", object}}));
  } else if (r.status == "incomplete") {
    events.push_back(rj.builder.event("response.incomplete", {{"response", object}}));
  } else {
    if (r.status == "failed")
      events.push_back(rj.builder.event(
          "error", {{"code", "server_error"}, {"message", r.error["message"]}, {"param", nullptr}}));
    events.push_back(rj.builder.event("response.failed", {{"response", object}}));
  }
}

// Waits up to `timeout` for one engine event and turns it into stream events (appended to
// `events`); false on timeout.
bool advance(ResponsesJob& rj, std::chrono::milliseconds timeout, std::vector<Json>& events) {
  const OutputPipeline& pipe = *rj.job.pipes[0];
  const int64_t before = pipe.completion_tokens();
  int choice = 0;
  PipelineOutput out;
  if (!rj.job.pump(choice, out, timeout)) return false;
  bool answer = false;
  for (const auto& e : out.events) answer = answer || e.kind != text::OutputEvent::Kind::kReasoning;
  if (rj.thinking && !rj.answer_started && !answer) rj.reasoning_tokens += pipe.completion_tokens() - before;
  rj.answer_started = rj.answer_started || answer;
  rj.builder.add(out.events, events);
  if (out.finished) finish(rj, events);
  return true;
}

void respond(std::shared_ptr<ResponsesJob> rj, const httplib::Request& req, httplib::Response& res) {
  const PeerSocket peer = PeerSocket::find(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  if (!rj->job.stream) {
    std::vector<Json> events;  // not sent
    auto next_check = Clock::now() + kDisconnectCheck;
    while (!rj->job.done()) {
      events.clear();
      advance(*rj, kDisconnectCheck, events);
      if (Clock::now() < next_check) continue;
      if (peer.closed()) {
        rj->job.abandon();
        send_error(res, ApiError(499, "The client closed the connection", "", "client_closed_request"));
        return;
      }
      next_check = Clock::now() + kDisconnectCheck;
    }
    if (rj->response.status == "failed")
      throw ApiError(500, rj->response.error["message"].get<std::string>(), "", "internal_error");
    send_json(res, 200, rj->response.to_json());
    return;
  }
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [rj, peer](size_t, httplib::DataSink& sink) {
        auto write = [&](const Json& e) {
          const std::string s = responses_sse(e);
          return sink.write(s.data(), s.size());
        };
        auto fail = [&] {
          rj->job.abandon();
          return false;
        };
        const Json start = rj->response.to_json();
        if (!write(rj->builder.event("response.created", {{"response", start}})) ||
            !write(rj->builder.event("response.in_progress", {{"response", start}})))
          return fail();
        std::vector<Json> events;
        while (!rj->job.done()) {
          events.clear();
          if (!advance(*rj, 200ms, events)) {
            if (!sink.is_writable() || peer.closed()) return fail();
            continue;
          }
          for (const Json& e : events)
            if (!write(e)) return fail();
        }
        sink.done();
        return true;
      },
      [rj](bool success) {
        if (!success) rj->job.abandon();
      });
}

// Values the request did not give: what the sampler uses (generation_config.json, else 1).
double effective(const Json& given, float used) {
  if (!given.is_null()) return given.get<double>();
  return std::round(static_cast<double>(used) * 1e6) / 1e6;
}

}  // namespace

void handle_responses_create(HttpServer::State& state, ModelService& service, const httplib::Request& req,
                             httplib::Response& res) {
  const Json body = parse_body(req.body);
  const std::string previous = previous_response_id(body);
  Json history = Json::array();
  if (!previous.empty()) {
    auto items = state.responses.conversation(previous);
    if (!items)
      throw ApiError(400, "Previous response with id '" + previous + "' not found.", "previous_response_id",
                     "previous_response_not_found");
    history = std::move(*items);
  }
  const ResponsesRequest r = parse_responses_request(body, history);
  service.check_model(r.chat.model);
  ChatPrompt prompt;
  try {
    prompt = service.render_chat(r.chat);
  } catch (const ApiError& e) {
    throw renamed(e, "messages", "input");
  }
  int64_t max_tokens = 0;
  try {
    max_tokens = service.resolve_max_tokens(r.chat.gen, static_cast<int64_t>(prompt.ids.size()), "input");
  } catch (const ApiError& e) {
    throw renamed(e, "max_tokens", "max_output_tokens");
  }

  auto rj = std::make_shared<ResponsesJob>(state, service, r.encrypted_reasoning);
  Job& job = rj->job;
  job.id = make_id("resp_");
  job.model = service.name();
  job.stream = r.chat.gen.stream;
  if (prompt.history_tokens > 0) job.snapshot_at = {prompt.history_tokens};
  rj->thinking = prompt.thinking;
  rj->store = r.store && state.responses.enabled();
  rj->items = r.items;
  ResponseObject& o = rj->response;
  o.id = job.id;
  o.model = job.model;
  o.created_at = job.created;
  o.echo = r.echo;
  o.echo["store"] = rj->store;
  kernels::SamplingParams used = r.chat.gen.sampling;
  service.sampling_defaults().apply(r.chat.gen.given, used);
  o.echo["temperature"] = effective(r.echo["temperature"], used.temperature);
  o.echo["top_p"] = effective(r.echo["top_p"], used.top_p);

  job.reasoning = prompt.thinking;
  try {
    job.grammar = service.output_grammar(r.chat.gen, &r.chat, &prompt);
  } catch (const ApiError& e) {
    throw renamed(e, "response_format", "text.format");
  }
  PipelineOptions popts = service.chat_pipeline(r.chat, prompt);
  if (r.max_tool_calls >= 0)
    popts.max_tool_calls =
        popts.max_tool_calls < 0 ? r.max_tool_calls : std::min(popts.max_tool_calls, r.max_tool_calls);
  try {
    job.start(prompt.ids, r.chat.gen, max_tokens, popts);
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  respond(rj, req, res);
}

void handle_responses_get(HttpServer::State& state, ModelService&, const httplib::Request& req,
                          httplib::Response& res) {
  const std::string id = req.path.substr(std::string("/v1/responses/").size());
  if (req.get_param_value("stream") == "true")
    throw bad_param("stream", "streaming a stored response is not supported", "unsupported_parameter");
  auto r = state.responses.get(id);
  if (!r) throw ApiError(404, "No response found with id '" + id + "'.", "response_id", "not_found");
  send_json(res, 200, *r);
}

void handle_responses_delete(HttpServer::State& state, ModelService&, const httplib::Request& req,
                             httplib::Response& res) {
  const std::string id = req.path.substr(std::string("/v1/responses/").size());
  if (!state.responses.erase(id))
    throw ApiError(404, "No response found with id '" + id + "'.", "response_id", "not_found");
  send_json(res, 200, {{"id", id}, {"object", "response.deleted"}, {"deleted", true}});
}

}  // namespace nemotron::server
