// nemotron serve: the OpenAI-compatible HTTP server (docs/serving.md).
// Start-up: bind the port first (so /health answers 503 while the model loads), load the
// model + tokenizer + chat template, plan memory (printed to stderr; refused -> exit 1),
// start the engine, then /health answers 200. SIGINT/SIGTERM stop it gracefully: in-flight
// generations are cancelled (finish_reason "abort"), the listener stops, the engine joins.
// A load failure prints its error and exits 1 at once (the listener, started or not, stops).
#include <CLI/CLI.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <thread>

#include "cli/command.h"
#include "server/http_server.h"
#include "server/service.h"
#include "server/service_flags.h"
#include "util/error.h"

namespace nemotron::cli {
namespace {

int run_serve(int argc, char** argv) {
  CLI::App app{"Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, "
               "/v1/responses, /v1/models, /tokenize, /detokenize, /health, /metrics)."};
  server::ServiceFlags flags;
  server::HttpOptions http;
  server::add_service_flags(app, flags);
  app.add_option("--host", http.host, "Address to bind (default 127.0.0.1: this machine only)");
  app.add_option("--port", http.port, "Port (0 = any free port)")->check(CLI::Range(0, 65535));
  app.add_option("--api-key", http.api_key, "Require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize");
  std::string origins;
  app.add_option("--allowed-origins", origins,
                 "Comma-separated web origins (scheme://host[:port], or *) whose pages may call the API (CORS); "
                 "requests with another Origin header get 403 (default: none)");
  std::string hosts;
  app.add_option("--allowed-hosts", hosts,
                 "Comma-separated Host header names (or *) served besides localhost, 127.0.0.1 and [::1]; bound to "
                 "loopback, requests addressed to another host get 403 (DNS rebinding); bound beyond it, only "
                 "these are checked when given (default: none)");
  app.add_option("--header-timeout", http.header_timeout_s,
                 "Seconds within which a request's line and headers must arrive (else 408 and close)")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--write-timeout", http.write_timeout_s,
                 "Seconds a response may wait for a client that stops reading it (no byte taken) before the "
                 "connection is closed and its generation cancelled")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--max-connections-per-ip", http.max_connections_per_ip,
                 "Connections one client address (IPv6: one /64) may have open; more are answered 429 and closed "
                 "(0 = no limit)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--served-model-name", flags.config.served_model_name,
                 "Model name clients use (default: the model directory's name)");
  app.add_option("--responses-store-max", http.responses_store_max,
                 "Stored /v1/responses kept for previous_response_id and GET (least recently used evicted; "
                 "0 = none stored)");
  double store_mib = static_cast<double>(http.responses_store_bytes >> 20);
  app.add_option("--responses-store-mib", store_mib, "MiB of stored /v1/responses (their JSON text)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  http.responses_store_bytes = static_cast<std::size_t>(store_mib * 1048576.0);
  http.allowed_origins = server::parse_allowed_origins(origins);
  http.allowed_hosts = server::parse_allowed_hosts(hosts);
  server::finish_service_flags(flags);
  http.threads = std::max(64, 2 * flags.config.plan.max_num_seqs + 16);

  // A follower node (--node-rank > 0) serves no HTTP: it loads the model and runs node 0's
  // calls; its make_backend ends in model::FollowerDone, which main() makes the exit status.
  if (flags.config.plan.parallel.follower()) {
    server::ModelService::load(flags.config, std::cerr);
    throw Error("follower node: the model service returned instead of following node 0");
  }

  // Every thread started from here on inherits this mask; one thread takes the signals.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGUSR1);  // from this process: the signal thread's end
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Waiting connections cost a descriptor each (no thread): take the hard limit.
  if (rlimit lim{}; getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  server::HttpServer srv(http);
  srv.bind();
  if (http.api_key.empty() && !server::is_loopback_host(http.host))
    std::fprintf(stderr,
                 "warning: serving on %s without --api-key: anyone who can reach this address can use the model "
                 "(pass --api-key KEY, or bind 127.0.0.1)\n",
                 http.host.c_str());
  std::thread listener([&] { srv.listen(); });
  std::atomic<bool> finished{false};
  std::thread signals([&] {
    const timespec tick{0, 200'000'000};
    while (!finished) {
      const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        std::fprintf(stderr, "received %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        srv.stop();
        return;
      }
    }
  });
  auto end_signals = [&] {
    finished = true;
    pthread_kill(signals.native_handle(), SIGUSR1);
    signals.join();
  };
  auto shutdown = [&] {
    srv.stop();
    listener.join();
    end_signals();
  };

  std::unique_ptr<server::ModelService> service;
  try {
    service = server::ModelService::load(flags.config, std::cerr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::fflush(stderr);
    shutdown();
    return 1;
  }
  srv.set_service(service.get());
  std::fprintf(stderr, "serving '%s' on http://%s:%d (max model length %lld tokens)\n", service->name().c_str(),
               http.host.c_str(), srv.port(), static_cast<long long>(service->max_model_len()));
  std::fflush(stderr);
  listener.join();  // returns after stop() once every worker thread has finished
  end_signals();
  srv.set_service(nullptr);
  service.reset();
  std::fprintf(stderr, "stopped\n");
  return 0;
}

}  // namespace
NEMOTRON_COMMAND("serve", "OpenAI-compatible HTTP server", run_serve)
}  // namespace nemotron::cli
