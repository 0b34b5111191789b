#include "server/http_job.h"

#include <algorithm>

namespace nemotron::server {

void Job::start(const std::vector<int32_t>& prompt, const GenerationOptions& gen, int64_t max_tokens,
                const PipelineOptions& popts) {
  prompt_tokens = static_cast<int64_t>(prompt.size());
  for (int i = 0; i < gen.n; ++i) pipes.push_back(std::make_unique<OutputPipeline>(service.tokenizer(), popts));
  for (int i = 0; i < gen.n; ++i)
    session.submit(service.make_request(prompt, gen, max_tokens, i, snapshot_at, reasoning, grammar));
}

bool Job::pump(int& choice, PipelineOutput& out, std::chrono::milliseconds timeout) {
  if (state.stopping) session.cancel_all();
  ChoiceEvent ev;
  if (!session.next(ev, timeout)) return false;
  choice = ev.choice;
  cached_tokens = std::max(cached_tokens, ev.event.cached_tokens);
  OutputPipeline& p = *pipes[static_cast<std::size_t>(choice)];
  out = p.push(ev.event);
  if (p.stopped_by_string()) session.cancel(choice);
  if (out.finished) session.report(choice, p.completion_tokens(), p.finish_reason());
  return true;
}

void Job::abandon() {
  session.cancel_all();
  for (std::size_t i = 0; i < pipes.size(); ++i)
    if (!pipes[i]->done() && !abandoned) session.report(static_cast<int>(i), pipes[i]->completion_tokens(), "abort");
  abandoned = true;
}

bool run_to_end(Job& job, const PeerSocket& peer) {
  int choice = 0;
  PipelineOutput out;
  auto next_check = Clock::now() + kDisconnectCheck;
  while (!job.done()) {
    job.pump(choice, out, kDisconnectCheck);
    if (Clock::now() < next_check) continue;
    if (peer.closed()) {
      job.abandon();
      return false;
    }
    next_check = Clock::now() + kDisconnectCheck;
  }
  return true;
}

}  // namespace nemotron::server
