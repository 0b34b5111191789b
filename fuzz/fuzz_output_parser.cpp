// The reasoning parser, the tool-call parser and the output parser that chains them
// (text/parsers/), fed the input whole and split into a random chunking (the streaming
// interface). The headers claim that any chunking gives the same result; this checks it for
// all three, plus the output parser's event contract (output_parser.h): text events are
// non-empty valid UTF-8, a call's first event carries its id and name (calls in index order),
// and each call's argument fragments concatenate to a JSON object.
//
// Input: the text, then (taken from the end) a flags byte and a 32-bit chunking seed.
#include <random>

#include "fuzz_common.h"
#include "text/parsers/output_parser.h"
#include "text/parsers/reasoning_parser.h"
#include "text/parsers/tool_call_parser.h"
#include "text/utf8.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::text;

namespace {

const char* kTools = R"([
 {"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{
   "city":{"type":"string"},"days":{"type":"integer"},"unit":{"type":"string","enum":["c","f"]},
   "verbose":{"type":"boolean"},"ratio":{"type":"number"},"tags":{"type":"array"},
   "opts":{"type":"object"},"note":{"anyOf":[{"type":"string"},{"type":"null"}]},
   "limit":{"type":["integer","null"]},"any":{}}}}},
 {"type":"function","function":{"name":"write_file","parameters":{"type":"object","properties":{
   "path":{"type":"string"},"content":{"type":"string"}}}}},
 {"type":"function","function":{"name":"f","parameters":{"properties":{"a":{"type":"integer"},"b":{"type":"string"},
   "c":{"type":"object"},"d":{"oneOf":[{"type":"number"},{"type":"boolean"}]}}}}},
 {"name":"noargs","parameters":{"type":"object","properties":{}}}
])";

std::vector<std::string> split(const std::string& s, uint32_t seed) {
  std::vector<std::string> out;
  std::mt19937 rng(seed);
  const int mode = static_cast<int>(seed % 4);
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t n = 1;
    if (mode == 1) n = 1 + rng() % 3;            // tiny pieces
    else if (mode == 2) n = 1 + rng() % 16;      // token-sized
    else if (mode == 3) n = 1 + rng() % 64;
    n = std::min(n, s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  if (out.empty()) out.push_back("");
  return out;
}

std::function<std::string()> counter_ids() {
  return [n = 0]() mutable { return "call_" + std::to_string(n++); };
}

OutputResult stream(const std::vector<std::string>& pieces, OutputParserOptions o) {
  o.make_tool_call_id = counter_ids();
  OutputParser parser(o);
  OutputResult result;
  std::vector<bool> started;
  std::vector<std::string> args;
  auto check = [&](const std::vector<OutputEvent>& events) {
    for (const OutputEvent& e : events) {
      FUZZ_CHECK(utf8_valid(e.text), "event text is not valid UTF-8");
      if (e.kind == OutputEvent::Kind::kToolCall) {
        FUZZ_CHECK(e.tool_index >= 0);
        const auto i = static_cast<std::size_t>(e.tool_index);
        if (started.size() <= i) started.resize(i + 1, false), args.resize(i + 1);
        if (!started[i]) {
          FUZZ_CHECK(!e.tool_id.empty() && !e.tool_name.empty(), "first delta of call %zu", i);
          FUZZ_CHECK(i == 0 || started[i - 1], "calls must start in index order");
          started[i] = true;
        } else {
          FUZZ_CHECK(e.tool_id.empty() && e.tool_name.empty());
        }
        args[i] += e.text;
      } else {
        FUZZ_CHECK(!e.text.empty(), "empty text event");
      }
    }
    accumulate(result, events);
  };
  for (const std::string& p : pieces) check(parser.feed(p));
  check(parser.finish());
  for (const std::string& a : args) {
    const Json j = Json::parse(a, nullptr, false);
    FUZZ_CHECK(!j.is_discarded() && j.is_object(), "arguments are not a JSON object: %s", a.c_str());
  }
  return result;
}

void expect_same(const OutputResult& a, const OutputResult& b) {
  FUZZ_CHECK(a.reasoning == b.reasoning, "reasoning differs:\n[%s]\n[%s]", a.reasoning.c_str(), b.reasoning.c_str());
  FUZZ_CHECK(a.content == b.content, "content differs:\n[%s]\n[%s]", a.content.c_str(), b.content.c_str());
  FUZZ_CHECK(a.tool_calls.size() == b.tool_calls.size());
  for (std::size_t i = 0; i < a.tool_calls.size(); ++i) {
    FUZZ_CHECK(a.tool_calls[i].name == b.tool_calls[i].name);
    FUZZ_CHECK(a.tool_calls[i].arguments == b.tool_calls[i].arguments, "arguments differ:\n%s\n%s",
               a.tool_calls[i].arguments.c_str(), b.tool_calls[i].arguments.c_str());
  }
}

// The reasoning parser alone: the reasoning and content texts and finish()'s verdict.
struct Split {
  std::string reasoning, content;
  bool rescue = false;
};

Split reasoning_split(const std::vector<std::string>& pieces, const ReasoningOptions& o) {
  ReasoningStreamParser p(o);
  Split s;
  std::vector<ReasoningChunk> out;
  for (const auto& piece : pieces) p.feed(piece, out);
  s.rescue = p.finish(out);
  for (const auto& c : out) (c.reasoning ? s.reasoning : s.content) += c.text;
  return s;
}

// The tool-call parser alone: content, and per call its id, name and arguments.
struct Calls {
  std::string content;
  std::vector<std::array<std::string, 3>> calls;
};

Calls tool_calls(const std::vector<std::string>& pieces, const std::shared_ptr<const ToolSchemas>& schemas) {
  ToolCallStreamParser p(schemas, counter_ids());
  std::vector<ToolParseEvent> out;
  for (const auto& piece : pieces) p.feed(piece, out);
  p.finish(out);
  Calls c;
  for (const auto& e : out) {
    switch (e.kind) {
      case ToolParseEvent::Kind::kContent: c.content += e.text; break;
      case ToolParseEvent::Kind::kCallStart:
        FUZZ_CHECK(e.index == static_cast<int>(c.calls.size()));
        c.calls.push_back({e.id, e.name, ""});
        break;
      case ToolParseEvent::Kind::kArguments:
        FUZZ_CHECK(e.index >= 0 && e.index < static_cast<int>(c.calls.size()));
        c.calls[static_cast<std::size_t>(e.index)][2] += e.text;
        break;
    }
  }
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  const uint8_t flags = fdp.ConsumeIntegral<uint8_t>();
  const uint32_t seed = fdp.ConsumeIntegral<uint32_t>();
  const std::string text = fdp.ConsumeRemainingBytesAsString();
  static const Json tools = Json::parse(kTools);
  static const auto schemas = std::make_shared<const ToolSchemas>(tools);

  OutputParserOptions o;
  o.thinking_enabled = flags & 1;
  o.force_nonempty_content = flags & 2;
  o.tools = (flags & 4) ? tools : Json::array();
  o.tool_choice_none = flags & 8;
  o.make_tool_call_id = counter_ids();
  const std::vector<std::string> pieces = split(text, seed);

  const OutputResult whole = parse_output(text, o);
  expect_same(stream(pieces, o), whole);
  expect_same(stream({text}, o), whole);

  ReasoningOptions ro;
  ro.thinking_enabled = flags & 1;
  ro.force_nonempty_content = flags & 2;
  ro.tool_call_ends_reasoning = flags & 16;
  const Split a = reasoning_split({text}, ro), b = reasoning_split(pieces, ro);
  FUZZ_CHECK(a.reasoning == b.reasoning && a.content == b.content && a.rescue == b.rescue,
             "reasoning parser: chunking changed the split");

  const Calls x = tool_calls({text}, schemas), y = tool_calls(pieces, schemas);
  FUZZ_CHECK(x.content == y.content, "tool parser: content differs:\n[%s]\n[%s]", x.content.c_str(), y.content.c_str());
  FUZZ_CHECK(x.calls == y.calls, "tool parser: calls differ");
  for (const auto& call : x.calls) {
    const Json j = Json::parse(call[2], nullptr, false);
    FUZZ_CHECK(!j.is_discarded() && j.is_object(), "tool parser: arguments %s", call[2].c_str());
  }
  (void)prompt_ends_in_reasoning(text);
  return 0;
}
