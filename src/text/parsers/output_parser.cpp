#include "text/parsers/output_parser.h"

#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text {
namespace {

std::shared_ptr<const ToolSchemas> schemas_for(const OutputParserOptions& o) {
  if (o.tool_choice_none || o.tools.is_null()) return nullptr;
  auto schemas = std::make_shared<const ToolSchemas>(o.tools);  // validates
  if (o.tools.empty()) return nullptr;
  return schemas;
}

ReasoningOptions reasoning_options(const OutputParserOptions& o, bool tools) {
  ReasoningOptions r;
  r.thinking_enabled = o.thinking_enabled;
  r.force_nonempty_content = o.force_nonempty_content;
  r.tool_call_ends_reasoning = tools;
  return r;
}

}  // namespace

std::string OutputParser::Utf8Stream::take(std::string_view text, bool final) {
  held.append(text);
  const std::size_t n = final ? held.size() : utf8_complete_prefix(held);
  std::string out = utf8_sanitize(std::string_view(held).substr(0, n));
  held.erase(0, n);
  return out;
}

OutputParser::OutputParser(OutputParserOptions options)
    : reasoning_(ReasoningOptions{}) {
  auto schemas = schemas_for(options);
  reasoning_ = ReasoningStreamParser(reasoning_options(options, schemas != nullptr));
  if (schemas) tools_ = std::make_unique<ToolCallStreamParser>(std::move(schemas), std::move(options.make_tool_call_id));
}

void OutputParser::push_text(OutputEvent::Kind kind, std::string text, std::vector<OutputEvent>& out) {
  if (text.empty()) return;
  if (kind == OutputEvent::Kind::kReasoning) reasoning_so_far_ += text;
  if (!out.empty() && out.back().kind == kind && !out.back().replaces_reasoning) {
    out.back().text += text;
    return;
  }
  OutputEvent e;
  e.kind = kind;
  e.text = std::move(text);
  out.push_back(std::move(e));
}

void OutputParser::drain_tool_events(std::vector<OutputEvent>& out) {
  for (ToolParseEvent& t : tool_events_) {
    if (t.kind == ToolParseEvent::Kind::kContent) {
      push_text(OutputEvent::Kind::kContent, content_utf8_.take(t.text, false), out);
    } else if (t.kind == ToolParseEvent::Kind::kArguments && !out.empty() &&
               out.back().kind == OutputEvent::Kind::kToolCall && out.back().tool_index == t.index) {
      out.back().text += t.text;
    } else {
      OutputEvent e;
      e.kind = OutputEvent::Kind::kToolCall;
      e.tool_index = t.index;
      e.text = std::move(t.text);
      e.tool_id = std::move(t.id);
      e.tool_name = std::move(t.name);
      out.push_back(std::move(e));
    }
  }
  tool_events_.clear();
}

void OutputParser::route(std::vector<ReasoningChunk>& chunks, bool final, std::vector<OutputEvent>& out) {
  for (ReasoningChunk& c : chunks) {
    if (c.reasoning) {
      push_text(OutputEvent::Kind::kReasoning, reasoning_utf8_.take(c.text, false), out);
    } else if (tools_) {
      tools_->feed(c.text, tool_events_);
      drain_tool_events(out);
    } else {
      push_text(OutputEvent::Kind::kContent, content_utf8_.take(c.text, false), out);
    }
  }
  if (!final) return;
  push_text(OutputEvent::Kind::kReasoning, reasoning_utf8_.take({}, true), out);
  if (tools_) {
    tools_->finish(tool_events_);
    drain_tool_events(out);
  }
  push_text(OutputEvent::Kind::kContent, content_utf8_.take({}, true), out);
}

std::vector<OutputEvent> OutputParser::feed(std::string_view delta) {
  if (finished_) throw Error("OutputParser: feed() after finish()");
  std::vector<ReasoningChunk> chunks;
  reasoning_.feed(delta, chunks);
  std::vector<OutputEvent> out;
  route(chunks, false, out);
  return out;
}

std::vector<OutputEvent> OutputParser::finish() {
  if (finished_) throw Error("OutputParser: finish() called twice");
  finished_ = true;
  std::vector<ReasoningChunk> chunks;
  const bool rescue = reasoning_.finish(chunks);
  std::vector<OutputEvent> out;
  route(chunks, true, out);
  if (rescue && !reasoning_so_far_.empty()) {
    OutputEvent e;
    e.kind = OutputEvent::Kind::kContent;
    e.text = reasoning_so_far_;
    e.replaces_reasoning = true;
    out.push_back(std::move(e));
  }
  return out;
}

void accumulate(OutputResult& result, const std::vector<OutputEvent>& events) {
  for (const OutputEvent& e : events) {
    switch (e.kind) {
      case OutputEvent::Kind::kReasoning: result.reasoning += e.text; break;
      case OutputEvent::Kind::kContent:
        if (e.replaces_reasoning) result.reasoning.clear();
        result.content += e.text;
        break;
      case OutputEvent::Kind::kToolCall:
        if (e.tool_index < 0) break;
        if (static_cast<std::size_t>(e.tool_index) >= result.tool_calls.size())
          result.tool_calls.resize(static_cast<std::size_t>(e.tool_index) + 1);
        {
          ToolCall& c = result.tool_calls[static_cast<std::size_t>(e.tool_index)];
          if (!e.tool_id.empty()) c.id = e.tool_id;
          if (!e.tool_name.empty()) c.name = e.tool_name;
          c.arguments += e.text;
        }
        break;
    }
  }
}

OutputResult parse_output(std::string_view text, const OutputParserOptions& options) {
  OutputParser parser(options);
  OutputResult result;
  accumulate(result, parser.feed(text));
  accumulate(result, parser.finish());
  return result;
}

}  // namespace nemotron::text
