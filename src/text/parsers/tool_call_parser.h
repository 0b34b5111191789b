#pragma once
// Qwen3-Coder XML tool calls as Nemotron 3 emits them (serving doc §4):
//
//   <tool_call>\n<function=NAME>\n<parameter=ARG>\nVALUE\n</parameter>\n...</function>\n</tool_call>
//
// The parser is streaming: text arrives in arbitrary pieces and every decision waits until
// the text seen so far determines it (or the text ends), so any chunking of one output
// gives the same events after concatenation. Rules (vLLM Qwen3CoderToolParser semantics
// where the doc states them; our choices are marked "ours"):
// * Text outside calls is content. Before the first call it is kept verbatim; whitespace
//   after a call that is followed only by another <tool_call> or by the end is dropped.
// * A call starts at <tool_call>, whitespace, <function=NAME>. NAME must be non-empty with
//   none of {}<>"' or whitespace (vLLM). Otherwise the <tool_call> text is content (never
//   dropped) and scanning continues after it.
// * Unknown function names (not in `tools`) still yield a call; with no schema every
//   argument stays a string (vLLM: find_tool_properties returns {}).
// * A value starts after <parameter=ARG> plus one optional "\n"; one trailing "\n" is
//   stripped (§4.2 step 1). The value ends at the first of, at nesting depth 0:
//   - </parameter> followed (after whitespace) by <parameter=KNOWN>, </function>,
//     </tool_call> or the end of the text (KNOWN = declared in the schema; any name when
//     the function has no schema) — otherwise the </parameter> is literal text;
//   - a line-start <parameter=OTHER> with OTHER known, not yet seen in this call and not
//     the current name (missing </parameter>, §4.1 leniency);
//   - </function> followed by [ws </tool_call>] ws and the end of text or <tool_call>
//     (the final </parameter> omitted, llama.cpp PR #18077);
//   - </tool_call> followed by ws and the end of text or another <tool_call>;
//   - the end of the text.
//   Nesting depth: a line-start <parameter=X> that does not end the value opens a literal
//   nested parameter; its </parameter> closes it (vLLM depth tracking for code values).
// * Inside <function=...>, text other than parameters/closing tags ends the call (ours):
//   the call is closed with the arguments so far and that text becomes content.
// * A missing </parameter>, </function> or </tool_call> at the end of the text closes the
//   value/call there (vLLM's <tool_call>(.*?)$ branch).
// * Arguments stream as JSON fragments: "{" with the header, then ',"name":value' per
//   parameter once its value is complete (§4.3), then "}". Their concatenation is the
//   compact JSON object (key order as emitted). A repeated parameter name is emitted again
//   (ours; JSON readers keep the last, like Python's dict).
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "util/json.h"

namespace nemotron::text {

// Function name → `parameters.properties`, from an OpenAI `tools` array whose entries are
// {"type":"function","function":{...}} or bare function objects. First declaration wins.
class ToolSchemas {
 public:
  ToolSchemas() = default;
  explicit ToolSchemas(const Json& tools);  // throws Error when tools is not an array of functions
  // The properties object, or nullptr when the function is unknown or declares none
  // (an empty properties object counts as none, as in vLLM).
  const Json* properties(std::string_view function) const;
  std::size_t size() const { return props_.size(); }

 private:
  std::unordered_map<std::string, Json> props_;
};

// §4.2 value typing of one raw parameter value with its property schema (nullptr = no
// schema: keep the string). Never throws; a failed conversion keeps the string.
// Deviations from vLLM (all where vLLM would crash or emit non-JSON): a union `type`
// list is treated like anyOf (first non-null type; nullable if it lists "null"); oneOf is
// treated like anyOf; inf/nan and integers beyond 64 bits stay strings; an integral float
// beyond 2^63 stays a float.
Json convert_param_value(const std::string& value, const Json* property_schema);
// Whether convert_param_value keeps a value as raw text under this schema (string types, and
// schemas without a type), rather than reading it as a number, boolean, null or JSON.
bool param_value_is_text(const Json& property_schema);

// "call_" + 24 random alphanumerics.
std::string random_tool_call_id();

struct ToolParseEvent {
  enum class Kind { kContent, kCallStart, kArguments };
  Kind kind = Kind::kContent;
  std::string text;      // content bytes, or an arguments fragment
  int index = -1;        // call index (0, 1, ...) for kCallStart / kArguments
  std::string id, name;  // kCallStart only
};

class ToolCallStreamParser {
 public:
  ToolCallStreamParser(std::shared_ptr<const ToolSchemas> schemas,
                       std::function<std::string()> make_id);
  void feed(std::string_view text, std::vector<ToolParseEvent>& out);
  // End of text: resolves everything held back and closes an open call.
  void finish(std::vector<ToolParseEvent>& out);

 private:
  enum class State { kContent, kCallOpen, kBody, kValueStart, kValue, kAfterFunction };
  enum class Decision { kYes, kNo, kNeedMore };

  bool step(bool eot);
  bool step_content(bool eot);
  bool step_call_open(bool eot);
  bool step_body(bool eot);
  bool step_value(bool eot);
  bool step_after_function(bool eot);
  bool reject_call();
  void close_call();
  bool end_value(std::size_t end, std::size_t resume);
  Decision after_param_close(std::size_t k, bool eot) const;
  Decision after_function_close(std::size_t k, bool eot) const;
  Decision after_tool_call_close(std::size_t k, bool eot) const;
  bool known_param(std::string_view name) const;
  void emit_content(std::string_view text);
  void emit_arguments(std::string_view text);
  void compact();

  std::shared_ptr<const ToolSchemas> schemas_;
  std::function<std::string()> make_id_;
  std::vector<ToolParseEvent>* out_ = nullptr;

  std::string buf_;      // unconsumed text starts at pos_
  std::size_t pos_ = 0;
  State state_ = State::kContent;
  bool after_call_ = false;  // just closed a call: whitespace may be dropped
  std::size_t tag_pos_ = 0;  // offset of the <tool_call> being validated (kCallOpen)
  int call_index_ = 0;       // index of the current/next call
  const Json* props_ = nullptr;  // schema of the current function (owned by schemas_)
  std::unordered_set<std::string> seen_;
  std::string param_name_;
  bool first_param_ = true;
  std::size_t value_start_ = 0;  // kValue: value bytes are buf_[value_start_, ...)
  std::size_t vi_ = 0;           // kValue: scan position
  int depth_ = 0;                // kValue: literal nested <parameter= depth
};

}  // namespace nemotron::text
