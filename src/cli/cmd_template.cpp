// `nemotron template`: renders a chat template for an OpenAI chat request body and prints
// the prompt exactly (no trailing newline added). Request fields used: messages, tools,
// chat_template_kwargs, add_generation_prompt (default true).
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "text/jinja/chat_template.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::cli {

static int run_template(int argc, char** argv) {
  CLI::App app{"Render a chat template for an OpenAI chat request"};
  std::string template_path, request_path;
  text::ChatTemplateOptions options;
  app.add_option("--template", template_path, "Jinja chat template file")->required();
  app.add_option("--request", request_path, "OpenAI chat request body (JSON file)")->required();
  app.add_option("--bos-token", options.bos_token, "Value of bos_token in the template");
  app.add_option("--eos-token", options.eos_token, "Value of eos_token in the template");
  CLI11_PARSE(app, argc, argv);

  const std::string source = read_file(template_path);
  const Json request = read_json_file(request_path);
  if (!request.is_object()) throw Error(request_path + ": request must be a JSON object");
  auto messages = request.find("messages");
  if (messages == request.end()) throw Error(request_path + ": request has no 'messages'");
  Json tools = request.value("tools", Json());
  if (auto k = request.find("chat_template_kwargs"); k != request.end() && !k->is_null()) options.kwargs = *k;
  if (auto g = request.find("add_generation_prompt"); g != request.end()) {
    if (!g->is_boolean()) throw Error(request_path + ": add_generation_prompt must be a boolean");
    options.add_generation_prompt = g->get<bool>();
  }
  const std::string prompt = text::render_chat_template(source, *messages, tools, options);
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
  return 0;
}

NEMOTRON_COMMAND("template", "render a chat template for an OpenAI chat request", run_template)

}  // namespace nemotron::cli
