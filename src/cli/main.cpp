// Entry point of the `nemotron` binary: dispatches to the registered subcommands.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "model/nodes/node_backend.h"

namespace nemotron::cli {

static std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
void register_command(const Command& command) { registry().push_back(command); }
const std::vector<Command>& commands() { return registry(); }

static void usage(FILE* out) {
  std::fprintf(out, "nemotron: inference engine for NVIDIA Nemotron 3 models\n\nusage: nemotron <command> [options]\n\ncommands:\n");
  auto sorted = commands();
  std::sort(sorted.begin(), sorted.end(),
            [](const Command& a, const Command& b) { return std::strcmp(a.name, b.name) < 0; });
  for (const auto& c : sorted) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\n`nemotron <command> --help` describes a command's options.\n");
}

}  // namespace nemotron::cli

int main(int argc, char** argv) {
  using namespace nemotron::cli;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("nemotron 0.1.0\n");
    return 0;
  }
  for (const auto& c : commands()) {
    if (std::strcmp(c.name, argv[1]) != 0) continue;
    std::string self = std::string("nemotron ") + c.name;
    argv[1] = self.data();
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const CLI::ParseError& e) {
      // CLI11 parse errors (including --help) are handled by each command's app.exit();
      // one that escapes is still reported cleanly.
      std::fprintf(stderr, "error: %s\n", e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    } catch (const nemotron::model::FollowerDone& done) {  // a follower node's run ended (node_backend.h)
      return done.status;
    }
  }
  std::fprintf(stderr, "error: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
