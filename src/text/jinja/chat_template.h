#pragma once
// OpenAI chat request -> prompt text, rendering a Hugging Face chat template the way
// transformers' apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks,
// lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception,
// strftime_now), after the message preprocessing vLLM applies to OpenAI requests:
//
//  * Render context: messages, tools (None when the request has none), documents (None),
//    add_generation_prompt, bos_token, eos_token, then every chat_template_kwargs key at
//    top level (a kwarg may not replace one of the names before it).
//  * content given as a list of parts: when the template itself loops over a message's
//    content (a `for` whose iterable is `X.content` / `X['content']`, vLLM's "openai"
//    content format, e.g. the Nemotron Omni template) the list is passed unchanged;
//    otherwise the text parts are joined with "\n" (vLLM's "string" format) and any
//    non-text part is an error.
//  * assistant tool_calls[].function.arguments given as a JSON string (what OpenAI
//    clients send) is parsed into an object, since templates iterate it with |items;
//    an empty string, null or a missing key becomes {}. Invalid JSON is an error.
//  * assistant `reasoning` (current vLLM/Ollama field name) is copied to
//    `reasoning_content` (the name the Nemotron templates read) when the latter is absent.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "util/json.h"

namespace nemotron::text {

namespace jinja {
class Template;
}

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  Json kwargs = Json::object();  // chat_template_kwargs
  std::string bos_token = "<s>";
  std::string eos_token = "</s>";
  std::size_t max_output_bytes = std::size_t{16} << 20;
  uint64_t max_steps = 2'000'000;
};

// A parsed template, reusable across requests (rendering does not mutate it).
class ChatTemplate {
 public:
  explicit ChatTemplate(const std::string& source);  // throws Error on syntax errors
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  std::string render(const Json& messages, const Json& tools, const ChatTemplateOptions& options) const;
  // True when the template loops over message content itself (content parts kept).
  bool iterates_content() const { return iterates_content_; }

 private:
  std::unique_ptr<jinja::Template> template_;
  bool iterates_content_ = false;
};

// Applies the preprocessing described above; exposed for tests.
Json normalize_messages(const Json& messages, bool keep_content_parts);

std::string render_chat_template(const std::string& template_source, const Json& messages,
                                 const Json& tools, const ChatTemplateOptions& options);

}  // namespace nemotron::text
