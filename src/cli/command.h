#pragma once
// Subcommand registry for the single `nemotron` binary. Each cmd_*.cpp registers one
// command with NEMOTRON_COMMAND; main() dispatches on argv[1]. A command receives its own
// argv (argv[0] = "nemotron <name>") and returns the process exit code. Errors are thrown
// as exceptions and printed by main().
#include <string>
#include <vector>

namespace nemotron::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

void register_command(const Command& command);
const std::vector<Command>& commands();

struct CommandRegistrar {
  explicit CommandRegistrar(const Command& command) { register_command(command); }
};

}  // namespace nemotron::cli

#define NEMOTRON_COMMAND(name, summary, fn) \
  static const ::nemotron::cli::CommandRegistrar nemotron_command_registrar_{{name, summary, fn}};
