// Request validation (server/request.cpp, responses.cpp, anthropic.cpp): the input's first
// byte picks the endpoint, the rest is the HTTP body:
//   'c' /v1/chat/completions   'p' /v1/completions   't' /tokenize   'd' /detokenize
//   'r' /v1/responses          'a' /v1/messages      'n' /v1/messages/count_tokens
// parse_body -> the endpoint's parse function; a request that parses then goes the server's
// way (service.cpp's render_chat and output_grammar, repeated here without a model): the
// demo model's chat template renders its messages and tools, the prompt is tokenized, and
// the grammar it asks for (structured output or enforced tool call) is compiled. Bad input
// must be an ApiError (or a nemotron::Error, which the server answers 400 too); any other
// exception is what the server would answer 500 "internal error", and is a finding here.
#include "fuzz_common.h"
#include "server/anthropic.h"
#include "server/api_error.h"
#include "server/grammar_constraint.h"
#include "server/request.h"
#include "server/responses.h"
#include "text/grammar/grammar.h"
#include "text/jinja/chat_template.h"
#include "text/parsers/reasoning_parser.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::server;

namespace {

struct Model {
  text::Tokenizer tok = text::Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo");
  text::ChatTemplate tmpl{tok.chat_template()};
};

const Model& model() {
  static const Model m;
  return m;
}

// ModelService::render_chat without the model: the prompt text and ids.
void render(const ChatRequest& r) {
  const Model& m = model();
  Json tools = r.tools;
  if (r.tool_choice == ToolChoice::kNamed) {
    tools = Json::array();
    for (const Json& t : r.tools)
      if (t["function"]["name"] == r.tool_choice_name) tools.push_back(t);
  }
  text::ChatTemplateOptions opts;
  opts.add_generation_prompt = r.add_generation_prompt;
  opts.kwargs = r.chat_template_kwargs;
  opts.max_output_bytes = 1 << 20;
  opts.max_steps = 200000;
  std::string prompt;
  try {
    prompt = m.tmpl.render(r.messages, tools, opts);
  } catch (const Error&) {
    return;  // the server answers 400 "cannot render the chat template"
  }
  (void)m.tok.encode(prompt, false, true);
  (void)text::prompt_ends_in_reasoning(prompt);

  // ModelService::output_grammar.
  const StructuredOutput& s = r.gen.structured;
  const bool tool_call = !tools.is_null() && !tools.empty() &&
                         (r.tool_choice == ToolChoice::kRequired || r.tool_choice == ToolChoice::kNamed);
  try {
    if (tool_call) {
      (void)tool_call_grammar(tools, r.parallel_tool_calls, m.tok.token_to_id("<tool_call>"),
                              m.tok.token_to_id("</tool_call>"));
    } else {
      namespace grammar = text::grammar;
      using Kind = StructuredOutput::Kind;
      switch (s.kind) {
        case Kind::kJsonObject: (void)grammar::json_object(); break;
        case Kind::kJsonSchema: (void)grammar::from_json_schema(s.schema); break;
        case Kind::kRegex: (void)grammar::from_regex(s.text); break;
        case Kind::kGrammar: (void)grammar::from_ebnf(s.text); break;
        case Kind::kChoice: {
          std::vector<std::shared_ptr<const grammar::Grammar>> options;
          for (const auto& c : s.choices) options.push_back(grammar::Grammar::literal(c));
          (void)grammar::Grammar::alternatives(options);
          break;
        }
        case Kind::kNone: break;
      }
    }
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const char endpoint = static_cast<char>(data[0]);
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const Json j = parse_body(body);
    switch (endpoint) {
      case 'c': render(parse_chat_request(j)); break;
      case 'p': (void)parse_completion_request(j); break;
      case 't': {
        const TokenizeRequest r = parse_tokenize_request(j);
        if (r.is_chat) render(r.chat);
        break;
      }
      case 'd': (void)parse_detokenize_request(j); break;
      case 'r': {
        (void)previous_response_id(j);
        render(parse_responses_request(j).chat);
        break;
      }
      case 'a': render(parse_messages_request(j).chat); break;
      case 'n': render(parse_messages_request(j, true).chat); break;
      default: break;
    }
  } catch (const ApiError& e) {
    FUZZ_CHECK(e.status() >= 400 && e.status() < 500, "status %d for a bad request: %s", e.status(), e.what());
  } catch (const Error&) {
  }
  return 0;
}
