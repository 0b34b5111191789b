// nemotron run: chat with a model in the terminal (like `ollama run`). Reads one user
// message per line from stdin until EOF or "/bye", streams each reply as it is generated
// (reasoning dimmed on a terminal, between "Thinking..." and "...done thinking." lines
// otherwise), and keeps the conversation. Works with a pipe as stdin.
//
// Ctrl-C (SIGINT) during a reply stops it: the engine request is cancelled, the part already
// shown stays in the conversation, and the next message is read. Ctrl-C while waiting for a
// message (or twice during one reply) ends the program cleanly (exit status 0).
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "cli/command.h"
#include "server/openai_format.h"
#include "server/service.h"
#include "server/service_flags.h"
#include "server/session.h"
#include "util/error.h"

namespace nemotron::cli {
namespace {

using namespace std::chrono_literals;

// SIGINT: the handler counts it and wakes a poll() through a pipe (both async-signal-safe);
// the main thread compares the count with the interrupts it has handled.
std::atomic<int> g_interrupts{0};
int g_wake[2] = {-1, -1};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_sigint(int) {
  g_interrupts.fetch_add(1);
  const char c = 0;
  const ssize_t r = ::write(g_wake[1], &c, 1);
  (void)r;
}

// Installs the handler for the chat loop; the previous disposition comes back at destruction
// (a Ctrl-C while the engine shuts down then ends the process as usual).
class InterruptHandler {
 public:
  InterruptHandler() {
    if (::pipe(g_wake) != 0) throw Error("run: cannot create a pipe for Ctrl-C");
    for (int fd : g_wake) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    // Writes to stdout are restarted; the wait for input is a poll() that the pipe wakes.
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_);
  }
  ~InterruptHandler() {
    ::sigaction(SIGINT, &old_, nullptr);
    ::close(g_wake[0]);
    ::close(g_wake[1]);
    g_wake[0] = g_wake[1] = -1;
  }
  InterruptHandler(const InterruptHandler&) = delete;
  InterruptHandler& operator=(const InterruptHandler&) = delete;

  // True (once per Ctrl-C) when one arrived that was not handled yet.
  bool take() {
    char buf[64];
    while (::read(g_wake[0], buf, sizeof buf) > 0) {
    }
    if (g_interrupts.load() == handled_) return false;
    ++handled_;
    return true;
  }
  int wake_fd() const { return g_wake[0]; }

 private:
  struct sigaction old_ {};
  int handled_ = 0;
};

// Lines from stdin (fd 0, read directly so that a Ctrl-C can interrupt the wait).
class LineReader {
 public:
  enum class Result { kLine, kEof, kInterrupted };
  explicit LineReader(InterruptHandler& interrupts) : interrupts_(interrupts) {}

  Result next(std::string& line) {
    for (;;) {
      if (interrupts_.take()) return Result::kInterrupted;
      const std::size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return Result::kLine;
      }
      if (eof_) {
        if (buf_.empty()) return Result::kEof;
        line = std::move(buf_);
        buf_.clear();
        return Result::kLine;
      }
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {interrupts_.wake_fd(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        eof_ = true;
        continue;
      }
      if (fds[0].revents == 0) continue;  // woken by a Ctrl-C: taken at the top
      char chunk[4096];
      const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (n > 0) buf_.append(chunk, static_cast<std::size_t>(n));
      else if (n == 0 || (errno != EINTR && errno != EAGAIN)) eof_ = true;
    }
  }

 private:
  InterruptHandler& interrupts_;
  std::string buf_;
  bool eof_ = false;
};

int run_run(int argc, char** argv) {
  CLI::App app{"Chat with a model in the terminal: one message per line on stdin, /bye or EOF to quit."};
  server::ServiceFlags flags;
  flags.config.plan.max_num_seqs = 1;
  server::add_service_flags(app, flags);
  std::string system;
  bool verbose = false, no_think = false;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0, presence = 0.0, frequency = 0.0, repetition = 1.0;
  int top_k = -1;
  int64_t max_tokens = 0;
  std::optional<uint64_t> seed;
  app.add_option("--system", system, "System prompt");
  app.add_flag("--verbose", verbose, "Print prompt eval and eval rates after each reply");
  app.add_flag("--no-think", no_think, "Turn reasoning off (chat_template_kwargs enable_thinking=false)");
  app.add_option("--temperature", temperature, "Sampling temperature (0 = greedy)")->check(CLI::Range(0.0, 2.0));
  app.add_option("--top-p", top_p, "Nucleus sampling mass")->check(CLI::Range(0.0, 1.0));
  app.add_option("--top-k", top_k, "Top-k (-1 = off)");
  app.add_option("--min-p", min_p, "Min-p")->check(CLI::Range(0.0, 1.0));
  app.add_option("--presence-penalty", presence, "Presence penalty")->check(CLI::Range(-2.0, 2.0));
  app.add_option("--frequency-penalty", frequency, "Frequency penalty")->check(CLI::Range(-2.0, 2.0));
  app.add_option("--repetition-penalty", repetition, "Repetition penalty")->check(CLI::Range(0.0, 2.0));
  app.add_option("--seed", seed, "Random seed (reproducible replies)");
  app.add_option("--max-tokens", max_tokens, "Tokens per reply (default: up to the context length)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  server::finish_service_flags(flags);

  std::ostream quiet(nullptr);  // discards the memory plan unless --verbose
  auto service = server::ModelService::load(flags.config, verbose ? std::cerr : quiet);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  const bool interactive = ::isatty(STDIN_FILENO) != 0;

  server::ChatRequest base;
  base.gen.sampling.temperature = static_cast<float>(temperature);
  base.gen.sampling.top_p = static_cast<float>(top_p);
  base.gen.sampling.top_k = top_k;
  base.gen.sampling.min_p = static_cast<float>(min_p);
  base.gen.sampling.presence_penalty = static_cast<float>(presence);
  base.gen.sampling.frequency_penalty = static_cast<float>(frequency);
  base.gen.sampling.repetition_penalty = static_cast<float>(repetition);
  base.gen.sampling.seed = seed;
  base.gen.sampling.validate();
  if (max_tokens > 0) base.gen.max_tokens = max_tokens;
  if (no_think) base.chat_template_kwargs["enable_thinking"] = false;

  Json history = Json::array();
  if (!system.empty()) history.push_back({{"role", "system"}, {"content", system}});
  InterruptHandler interrupts;
  LineReader reader(interrupts);
  std::string line;
  bool quit = false;
  while (!quit) {
    if (interactive) {
      std::fputs(">>> ", stdout);
      std::fflush(stdout);
    }
    const LineReader::Result got = reader.next(line);
    if (got == LineReader::Result::kInterrupted) {
      if (interactive) std::fputs("\n", stdout);  // after the terminal's "^C"
      break;
    }
    if (got == LineReader::Result::kEof) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/bye") break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    history.push_back({{"role", "user"}, {"content", line}});

    server::ChatRequest req = base;
    req.messages = history;
    const server::ChatPrompt prompt = service->render_chat(req);
    const int64_t budget =
        service->resolve_max_tokens(req.gen, static_cast<int64_t>(prompt.ids.size()), "messages");
    server::OutputPipeline pipe(service->tokenizer(), service->chat_pipeline(req, prompt));
    server::GenerationSession session(service->engine());
    const runtime::EngineStats before = service->engine().stats();
    const auto t0 = server::Clock::now();
    std::vector<int64_t> snapshot_at;
    if (prompt.history_tokens > 0) snapshot_at.push_back(prompt.history_tokens);
    session.submit(service->make_request(prompt.ids, req.gen, budget, 0, snapshot_at, prompt.thinking));
    server::Clock::time_point first, last;
    int64_t cached = 0;
    bool in_reasoning = false, interrupted = false;
    while (!pipe.done()) {
      // Ctrl-C: cancel the request (its final event ends the loop); a second one quits.
      while (interrupts.take()) {
        if (interrupted) quit = true;
        interrupted = true;
        session.cancel(0);
      }
      server::ChoiceEvent ev;
      if (!session.next(ev, 50ms)) continue;
      if (ev.event.token >= 0) {
        if (first == server::Clock::time_point{}) {
          first = ev.at;
          cached = ev.event.cached_tokens;
        }
        last = ev.at;
      }
      const server::PipelineOutput out = pipe.push(ev.event);
      if (pipe.stopped_by_string()) session.cancel(0);
      for (const auto& e : out.events) {
        const bool reasoning = e.kind == text::OutputEvent::Kind::kReasoning;
        if (reasoning != in_reasoning) {
          if (reasoning) std::fputs(tty ? "\033[2m" : "Thinking...\n", stdout);
          else std::fputs(tty ? "\033[0m\n" : "\n...done thinking.\n\n", stdout);
          in_reasoning = reasoning;
        }
        if (e.kind == text::OutputEvent::Kind::kToolCall) {
          if (!e.tool_name.empty()) std::printf("[tool call %s] ", e.tool_name.c_str());
          std::fputs(e.text.c_str(), stdout);
        } else {
          std::fwrite(e.text.data(), 1, e.text.size(), stdout);
        }
      }
      std::fflush(stdout);
    }
    if (in_reasoning) std::fputs(tty ? "\033[0m" : "\n...done thinking.", stdout);
    std::fputs("\n\n", stdout);
    std::fflush(stdout);
    if (pipe.finish_reason() == "error") throw Error("generation failed: " + pipe.error());

    const auto& r = pipe.result();
    if (interrupted && r.content.empty() && r.reasoning.empty()) {
      history.erase(history.end() - 1);  // stopped before any text: the turn is dropped
    } else {
      // A reply stopped by Ctrl-C stays in the conversation as far as it was shown.
      Json reply = {{"role", "assistant"}, {"content", r.content}};
      if (!r.reasoning.empty()) reply["reasoning_content"] = r.reasoning;
      history.push_back(reply);
    }
    if (verbose && first == server::Clock::time_point{}) {
      std::fprintf(stderr, "prompt eval: %zu tokens | eval: 0 tokens (interrupted before the first token)\n",
                   prompt.ids.size());
    } else if (verbose) {
      const double prompt_s = std::chrono::duration<double>(first - t0).count();
      const double eval_s = std::chrono::duration<double>(last - first).count();
      const int64_t n = pipe.completion_tokens();
      std::fprintf(stderr,
                   "prompt eval: %zu tokens (%lld from the prefix cache), %.2f tokens/s | eval: %lld tokens, %.2f "
                   "tokens/s%s\n",
                   prompt.ids.size(), static_cast<long long>(cached), prompt.ids.size() / std::max(prompt_s, 1e-9),
                   static_cast<long long>(n), n > 1 ? (n - 1) / std::max(eval_s, 1e-9) : 0.0,
                   interrupted ? " (interrupted)" : "");
      const runtime::EngineStats after = service->engine().stats();
      const uint64_t verifies = after.spec_drafts - before.spec_drafts;
      if (service->speculative_tokens() > 0)
        std::fprintf(stderr, "speculative decoding (%d MTP drafts): %llu verify steps, %.2f tokens per verify step\n",
                     service->speculative_tokens(), static_cast<unsigned long long>(verifies),
                     verifies ? 1.0 + double(after.spec_accepted_tokens - before.spec_accepted_tokens) / double(verifies)
                              : 0.0);
    }
  }
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("run", "chat with a model in the terminal", run_run)
}  // namespace nemotron::cli
