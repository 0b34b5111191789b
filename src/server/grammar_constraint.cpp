#include "server/grammar_constraint.h"

#include <algorithm>

#include "text/parsers/tool_call_parser.h"
#include "util/error.h"

namespace nemotron::server {

namespace grammar = text::grammar;

GrammarConstraint::GrammarConstraint(std::shared_ptr<const grammar::Grammar> g,
                                     std::shared_ptr<const grammar::Vocabulary> v, std::vector<int32_t> end_ids,
                                     int64_t vocab_size, int32_t think_end)
    : m_(std::move(g), v, std::move(end_ids)),
      words_((vocab_size + 31) / 32),
      vocab_words_(static_cast<int64_t>(v->mask_words())),
      think_end_(think_end),
      free_(think_end >= 0) {
  scratch_.resize(static_cast<std::size_t>(std::max(words_, vocab_words_)));
}

void GrammarConstraint::fill_mask(uint32_t* bits) {
  if (free_) {
    std::fill(bits, bits + words_, 0xffffffffu);
    return;
  }
  std::fill(scratch_.begin(), scratch_.end(), 0u);
  m_.fill_mask(scratch_.data());
  std::copy(scratch_.begin(), scratch_.begin() + words_, bits);
}

bool GrammarConstraint::accept(int32_t token) {
  if (free_) {
    const bool ends = token == think_end_;
    kind_.push_back(ends ? 1 : 0);
    if (ends) free_ = false;
    return true;
  }
  if (!m_.accept(token)) return false;
  kind_.push_back(2);
  return true;
}

void GrammarConstraint::rollback(int n) {
  for (; n > 0 && !kind_.empty(); --n) {
    const uint8_t k = kind_.back();
    kind_.pop_back();
    if (k == 2) m_.rollback(1);
    if (k == 1) free_ = true;
  }
}

namespace {

// One parameter's VALUE as the tool parser reads it (text/parsers/tool_call_parser.h): raw
// text for string-typed schemas -- an enum or const of strings exactly, else text without '<'
// (so that it cannot swallow the closing tag) within minLength / maxLength -- and compact
// JSON of the schema for every other type.
std::shared_ptr<const grammar::Grammar> parameter_value(const Json& schema) {
  using grammar::Grammar;
  if (!text::param_value_is_text(schema)) return grammar::from_json_schema(schema, grammar::JsonOptions{0});
  auto literals = [](const Json& values) -> std::shared_ptr<const Grammar> {
    std::vector<std::shared_ptr<const Grammar>> options;
    for (const Json& v : values)
      if (v.is_string()) options.push_back(Grammar::literal(v.get<std::string>()));
    if (options.empty()) return nullptr;
    return options.size() == 1 ? options[0] : Grammar::alternatives(options);
  };
  if (schema.is_object()) {
    if (schema.contains("const")) {
      if (auto g = literals(Json::array({schema["const"]}))) return g;
    }
    if (schema.contains("enum") && schema["enum"].is_array()) {
      if (auto g = literals(schema["enum"])) return g;
    }
  }
  const auto bound = [&](const char* key, int64_t dflt) {
    if (!schema.is_object() || !schema.contains(key) || !schema[key].is_number_unsigned()) return dflt;
    return static_cast<int64_t>(std::min<uint64_t>(schema[key].get<uint64_t>(), grammar::GrammarBuilder::kMaxRepeat));
  };
  const int64_t lo = bound("minLength", 0), hi = bound("maxLength", -1);
  if (hi >= 0 && hi < lo) throw Error("maxLength is below minLength");
  return grammar::from_regex("[^<]{" + std::to_string(lo) + "," + (hi >= 0 ? std::to_string(hi) : "") + "}");
}

}  // namespace

std::shared_ptr<const grammar::Grammar> tool_call_grammar(const Json& tools, bool parallel, int32_t open_id,
                                                          int32_t close_id) {
  using grammar::Grammar;
  if (!tools.is_array() || tools.empty()) throw Error("tool_choice needs at least one tool");
  if (open_id < 0 || close_id < 0) throw Error("this model's tokenizer has no <tool_call> / </tool_call> tokens");
  std::vector<std::shared_ptr<const Grammar>> calls;
  for (const Json& t : tools) {
    const Json& fn = t.contains("function") ? t["function"] : t;
    const std::string name = fn.value("name", "");
    if (name.empty()) throw Error("a tool without a name");
    std::vector<std::shared_ptr<const Grammar>> parts{Grammar::token(open_id),
                                                      Grammar::literal("\n<function=" + name + ">\n")};
    const Json params = fn.contains("parameters") ? fn["parameters"] : Json::object();
    const Json props = params.contains("properties") ? params["properties"] : Json::object();
    std::vector<std::string> required;
    if (params.contains("required") && params["required"].is_array())
      for (const Json& r : params["required"])
        if (r.is_string()) required.push_back(r.get<std::string>());
    for (const auto& [pname, schema] : props.items()) {
      std::shared_ptr<const Grammar> value;
      try {
        value = parameter_value(schema);
      } catch (const Error& e) {
        throw Error("function '" + name + "' parameter '" + pname + "': " + e.what());
      }
      auto p = Grammar::sequence({Grammar::literal("<parameter=" + pname + ">\n"), value,
                                  Grammar::literal("\n</parameter>\n")});
      const bool req = std::find(required.begin(), required.end(), pname) != required.end();
      parts.push_back(req ? p : Grammar::repeat(p, 0, 1));
    }
    parts.push_back(Grammar::literal("</function>\n"));
    parts.push_back(Grammar::token(close_id));
    calls.push_back(Grammar::sequence(parts));
  }
  auto call = calls.size() == 1 ? calls[0] : Grammar::alternatives(calls);
  if (!parallel) return call;
  // Several calls, one per line.
  return Grammar::sequence({call, Grammar::repeat(Grammar::sequence({Grammar::literal("\n"), call}), 0, 15)});
}

}  // namespace nemotron::server
