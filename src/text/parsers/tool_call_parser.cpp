#include "text/parsers/tool_call_parser.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>

#include "text/parsers/python_literal.h"
#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text {
namespace {

constexpr std::string_view kToolCallOpen = "<tool_call>";
constexpr std::string_view kToolCallClose = "</tool_call>";
constexpr std::string_view kFunctionOpen = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kParamOpen = "<parameter=";
constexpr std::string_view kParamClose = "</parameter>";
constexpr std::size_t kMaxNameBytes = 256;
constexpr int kMaxJsonDepth = 256;  // deeper values stay strings (dump() recurses)

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::size_t skip_ws(std::string_view s, std::size_t i) {
  while (i < s.size() && is_ws(s[i])) ++i;
  return i;
}

enum class Match { kNo, kPartial, kFull };

// kFull: s starts with tag; kPartial: s is a non-empty proper prefix of tag.
Match match_tag(std::string_view s, std::string_view tag) {
  if (s.size() >= tag.size()) return s.substr(0, tag.size()) == tag ? Match::kFull : Match::kNo;
  if (s.empty()) return Match::kNo;
  return tag.substr(0, s.size()) == s ? Match::kPartial : Match::kNo;
}

bool partial_of_any(std::string_view s, std::initializer_list<std::string_view> tags) {
  for (auto t : tags)
    if (match_tag(s, t) == Match::kPartial) return true;
  return false;
}

// Length of the longest suffix of s that is a proper prefix of tag.
std::size_t partial_suffix(std::string_view s, std::string_view tag) {
  for (std::size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  return 0;
}

enum class Name { kOk, kIncomplete, kInvalid };

// Reads NAME up to '>' in s (which starts right after "<function=" / "<parameter=").
Name read_name(std::string_view s, bool function_name, std::size_t& len) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '>') {
      len = i;
      return (function_name && i == 0) ? Name::kInvalid : Name::kOk;
    }
    if (i >= kMaxNameBytes || c == '<' || c == '\n') return Name::kInvalid;
    if (function_name && (c == '{' || c == '}' || c == '"' || c == '\'' || is_ws(c))) return Name::kInvalid;
  }
  return s.size() > kMaxNameBytes ? Name::kInvalid : Name::kIncomplete;  // a name of exactly the limit may still close
}

std::string dump_json(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

std::string strip_ws(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_ws(s[b])) ++b;
  while (e > b && is_ws(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// --- §4.2 schema type ----------------------------------------------------------------

struct SchemaType {
  std::string type = "string";
  bool nullable = false;
  bool picked = false;
};

// Python str(type).strip().lower() for a scalar type; union lists are absorbed element-wise.
void absorb_type(const Json& t, SchemaType& st) {
  if (t.is_array()) {
    for (const Json& e : t) absorb_type(e, st);
    return;
  }
  const std::string name = lower_ascii(strip_ws(t.is_string() ? t.get<std::string>() : dump_json(t)));
  if (name == "null") {
    st.nullable = true;
  } else if (!st.picked) {
    st.type = name;
    st.picked = true;
  }
}

SchemaType schema_type(const Json& prop) {
  SchemaType st;
  if (!prop.is_object()) return st;
  if (auto it = prop.find("type"); it != prop.end()) {
    if (!it->is_array() && lower_ascii(strip_ws(it->is_string() ? it->get<std::string>() : dump_json(*it))) == "null") {
      st.type = "null";
      st.nullable = true;
      return st;
    }
    absorb_type(*it, st);
    if (!st.picked && st.nullable) st.type = "null";
    return st;
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    auto it = prop.find(key);
    if (it == prop.end() || !it->is_array()) continue;
    for (const Json& opt : *it)
      if (opt.is_object() && opt.contains("type")) absorb_type(opt["type"], st);
    return st;
  }
  return st;
}

// Python int(str): surrounding whitespace, one sign, digits with single '_' between digits.
bool python_int(std::string_view raw, Json& out) {
  const std::string s = strip_ws(raw);
  std::size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  if (i >= s.size()) return false;
  uint64_t mag = 0;
  bool prev_digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!prev_digit || i + 1 >= s.size() || s[i + 1] < '0' || s[i + 1] > '9') return false;
      prev_digit = false;
      continue;
    }
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<uint64_t>(c - '0');
    if (mag > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    mag = mag * 10 + d;
    prev_digit = true;
  }
  if (negative) {
    if (mag > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) return false;
    out = Json(mag == 0 ? int64_t{0} : static_cast<int64_t>(0 - mag));
  } else if (mag <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    out = Json(static_cast<int64_t>(mag));
  } else {
    out = Json(mag);
  }
  return true;
}

// Python float(str) then "collapse to int if integral" (vLLM). inf/nan are refused.
bool python_float(std::string_view raw, Json& out) {
  const std::string s = strip_ws(raw);
  std::string clean;
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean += s[i++];
  auto digits = [&]() {
    std::size_t n = 0;
    while (i < s.size()) {
      if (s[i] >= '0' && s[i] <= '9') {
        clean += s[i++];
        ++n;
      } else if (s[i] == '_' && n > 0 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') {
        ++i;
      } else {
        break;
      }
    }
    return n;
  };
  std::size_t mant = digits();
  if (i < s.size() && s[i] == '.') {
    clean += s[i++];
    mant += digits();
  }
  if (mant == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    clean += s[i++];
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean += s[i++];
    if (digits() == 0) return false;
  }
  if (i != s.size()) return false;
  const double v = std::strtod(clean.c_str(), nullptr);
  if (!std::isfinite(v)) return false;
  if (v == std::trunc(v) && std::fabs(v) < 9.2e18) {
    out = Json(static_cast<int64_t>(v));
  } else {
    out = Json(v);
  }
  return true;
}

// Upper bound of the bracket nesting of a JSON/Python text (strings not excluded, so it
// only errs on the cautious side).
int max_bracket_depth(std::string_view s) {
  int depth = 0, best = 0;
  for (const char c : s) {
    if (c == '[' || c == '{' || c == '(') best = std::max(best, ++depth);
    else if ((c == ']' || c == '}' || c == ')') && depth > 0) --depth;
  }
  return best;
}

bool try_literal(const std::string& s, Json& out) {
  try {
    out = parse_python_literal(s);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

// --- ToolSchemas ----------------------------------------------------------------------

ToolSchemas::ToolSchemas(const Json& tools) {
  if (tools.is_null()) return;
  if (!tools.is_array()) throw Error("tools: expected an array of function definitions");
  for (std::size_t i = 0; i < tools.size(); ++i) {
    const Json* fn = &tools[i];
    if (fn->is_object() && fn->contains("function")) fn = &(*fn)["function"];
    if (!fn->is_object()) throw Error("tools[" + std::to_string(i) + "]: expected a function object");
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string())
      throw Error("tools[" + std::to_string(i) + "]: function.name must be a string");
    Json props;  // null = no schema
    if (auto params = fn->find("parameters"); params != fn->end() && params->is_object()) {
      if (auto p = params->find("properties"); p != params->end() && p->is_object() && !p->empty()) props = *p;
    }
    props_.emplace(name->get<std::string>(), std::move(props));  // keeps the first declaration
  }
}

const Json* ToolSchemas::properties(std::string_view function) const {
  auto it = props_.find(std::string(function));
  if (it == props_.end() || !it->second.is_object()) return nullptr;
  return &it->second;
}

static bool is_text_type(const std::string& type) {
  for (const char* s : {"string", "str", "text", "varchar", "char", "enum"})
    if (type == s) return true;
  return false;
}

bool param_value_is_text(const Json& property_schema) { return is_text_type(schema_type(property_schema).type); }

Json convert_param_value(const std::string& value, const Json* property_schema) {
  if (property_schema == nullptr) return Json(value);
  const SchemaType st = schema_type(*property_schema);
  const std::string& type = st.type;
  const std::string lv = lower_ascii(value);
  const bool null_word = lv == "null" || lv == "none";
  if (st.nullable && null_word) return Json(nullptr);
  if (is_text_type(type)) return Json(value);
  if (null_word) return Json(nullptr);
  Json out;
  for (const char* p : {"int", "uint", "long", "short", "unsigned"}) {
    if (starts_with(type, p)) return python_int(value, out) ? out : Json(value);
  }
  if (starts_with(type, "num") || starts_with(type, "float")) return python_float(value, out) ? out : Json(value);
  if (type == "boolean" || type == "bool" || type == "binary") return Json(lv == "true");
  if (max_bracket_depth(value) > kMaxJsonDepth) return Json(value);
  const bool container = type == "object" || type == "array" || type == "arr" ||
                         starts_with(type, "dict") || starts_with(type, "list");
  if (container) {
    Json parsed = Json::parse(value, nullptr, false);
    if (!parsed.is_discarded()) {
      // Double-encoded Python repr ("{'k': 'v'}" as a JSON string): decode once more.
      if (parsed.is_string() && try_literal(parsed.get<std::string>(), out)) return out;
      return parsed;
    }
  }
  if (!try_literal(value, out)) return Json(value);
  if (container && out.is_string()) {
    Json again;
    if (try_literal(out.get<std::string>(), again)) return again;
  }
  return out;
}

std::string random_tool_call_id() {
  static constexpr char kAlnum[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int> pick(0, 61);
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlnum[pick(rng)];
  return id;
}

// --- streaming parser -------------------------------------------------------------------

ToolCallStreamParser::ToolCallStreamParser(std::shared_ptr<const ToolSchemas> schemas,
                                           std::function<std::string()> make_id)
    : schemas_(schemas ? std::move(schemas) : std::make_shared<ToolSchemas>()),
      make_id_(make_id ? std::move(make_id) : std::function<std::string()>(random_tool_call_id)) {}

void ToolCallStreamParser::feed(std::string_view text, std::vector<ToolParseEvent>& out) {
  compact();
  buf_.append(text);
  out_ = &out;
  while (step(false)) {}
  out_ = nullptr;
}

void ToolCallStreamParser::finish(std::vector<ToolParseEvent>& out) {
  out_ = &out;
  while (step(true)) {}
  out_ = nullptr;
  buf_.clear();
  pos_ = 0;
}

void ToolCallStreamParser::compact() {
  std::size_t base = pos_;
  if (state_ == State::kCallOpen) base = std::min(base, tag_pos_);
  if (state_ == State::kValue) base = std::min(base, value_start_);
  if (base < 4096 || base * 2 < buf_.size()) return;
  buf_.erase(0, base);
  pos_ -= base;
  if (state_ == State::kCallOpen) tag_pos_ -= base;
  if (state_ == State::kValue) {
    value_start_ -= base;
    vi_ -= base;
  }
}

void ToolCallStreamParser::emit_content(std::string_view text) {
  if (text.empty()) return;
  if (!out_->empty() && out_->back().kind == ToolParseEvent::Kind::kContent) {
    out_->back().text.append(text);
    return;
  }
  ToolParseEvent e;
  e.kind = ToolParseEvent::Kind::kContent;
  e.text = std::string(text);
  out_->push_back(std::move(e));
}

void ToolCallStreamParser::emit_arguments(std::string_view text) {
  if (!out_->empty() && out_->back().kind == ToolParseEvent::Kind::kArguments &&
      out_->back().index == call_index_) {
    out_->back().text.append(text);
    return;
  }
  ToolParseEvent e;
  e.kind = ToolParseEvent::Kind::kArguments;
  e.index = call_index_;
  e.text = std::string(text);
  out_->push_back(std::move(e));
}

bool ToolCallStreamParser::step(bool eot) {
  switch (state_) {
    case State::kContent: return step_content(eot);
    case State::kCallOpen: return step_call_open(eot);
    case State::kBody: return step_body(eot);
    case State::kValueStart: {
      if (pos_ == buf_.size() && !eot) return false;
      if (pos_ < buf_.size() && buf_[pos_] == '\n') ++pos_;
      value_start_ = vi_ = pos_;
      depth_ = 0;
      state_ = State::kValue;
      return true;
    }
    case State::kValue: return step_value(eot);
    case State::kAfterFunction: return step_after_function(eot);
  }
  return false;
}

bool ToolCallStreamParser::step_content(bool eot) {
  const std::string_view rest = std::string_view(buf_).substr(pos_);
  if (after_call_) {
    const std::size_t q = skip_ws(rest, 0);
    if (q == rest.size()) {
      if (eot) pos_ = buf_.size();  // trailing whitespace after the last call is dropped
      return false;
    }
    const Match m = match_tag(rest.substr(q), kToolCallOpen);
    if (m == Match::kFull) {
      pos_ += q;
    } else if (m == Match::kPartial && !eot) {
      return false;
    }
    after_call_ = false;
    return true;
  }
  const std::size_t p = rest.find(kToolCallOpen);
  if (p != std::string_view::npos) {
    emit_content(rest.substr(0, p));
    tag_pos_ = pos_ + p;
    pos_ = tag_pos_ + kToolCallOpen.size();
    state_ = State::kCallOpen;
    return true;
  }
  const std::size_t hold = eot ? 0 : partial_suffix(rest, kToolCallOpen);
  emit_content(rest.substr(0, rest.size() - hold));
  pos_ += rest.size() - hold;
  return false;
}

bool ToolCallStreamParser::reject_call() {
  emit_content(std::string_view(buf_).substr(tag_pos_, kToolCallOpen.size()));
  pos_ = tag_pos_ + kToolCallOpen.size();
  state_ = State::kContent;
  after_call_ = false;
  return true;
}

bool ToolCallStreamParser::step_call_open(bool eot) {
  const std::string_view rest = std::string_view(buf_).substr(pos_);
  const std::size_t q = skip_ws(rest, 0);
  if (q == rest.size()) return eot ? reject_call() : false;
  const Match m = match_tag(rest.substr(q), kFunctionOpen);
  if (m == Match::kPartial) return eot ? reject_call() : false;
  if (m == Match::kNo) return reject_call();
  const std::size_t name_at = q + kFunctionOpen.size();
  std::size_t len = 0;
  const Name r = read_name(rest.substr(name_at), true, len);
  if (r == Name::kIncomplete) return eot ? reject_call() : false;
  if (r == Name::kInvalid) return reject_call();
  const std::string name(rest.substr(name_at, len));
  ToolParseEvent e;
  e.kind = ToolParseEvent::Kind::kCallStart;
  e.index = call_index_;
  e.id = make_id_();
  e.name = utf8_sanitize(name);
  out_->push_back(std::move(e));
  emit_arguments("{");
  props_ = schemas_->properties(name);
  seen_.clear();
  first_param_ = true;
  pos_ += name_at + len + 1;
  state_ = State::kBody;
  return true;
}

void ToolCallStreamParser::close_call() {
  emit_arguments("}");
  ++call_index_;
  props_ = nullptr;
  state_ = State::kContent;
  after_call_ = true;
}

bool ToolCallStreamParser::step_body(bool eot) {
  const std::string_view rest = std::string_view(buf_).substr(pos_);
  const std::size_t q = skip_ws(rest, 0);
  if (q == rest.size()) {
    if (!eot) return false;
    pos_ = buf_.size();
    close_call();
    return true;
  }
  const std::string_view t = rest.substr(q);
  if (match_tag(t, kParamOpen) == Match::kFull) {
    std::size_t len = 0;
    const Name r = read_name(t.substr(kParamOpen.size()), false, len);
    if (r == Name::kIncomplete && !eot) return false;
    if (r == Name::kOk) {
      param_name_ = std::string(t.substr(kParamOpen.size(), len));
      pos_ += q + kParamOpen.size() + len + 1;
      state_ = State::kValueStart;
      return true;
    }
  } else if (match_tag(t, kFunctionClose) == Match::kFull) {
    pos_ += q + kFunctionClose.size();
    state_ = State::kAfterFunction;
    return true;
  } else if (match_tag(t, kToolCallClose) == Match::kFull) {
    pos_ += q + kToolCallClose.size();
    close_call();
    return true;
  } else if (!eot && partial_of_any(t, {kParamOpen, kFunctionClose, kToolCallClose})) {
    return false;
  }
  // Anything else inside the function body ends the call; the text becomes content.
  close_call();
  after_call_ = false;
  return true;
}

bool ToolCallStreamParser::step_after_function(bool eot) {
  const std::string_view rest = std::string_view(buf_).substr(pos_);
  const std::size_t q = skip_ws(rest, 0);
  if (q == rest.size() && !eot) return false;
  const Match m = match_tag(rest.substr(q), kToolCallClose);
  if (m == Match::kPartial && !eot) return false;
  pos_ += q;
  if (m == Match::kFull) pos_ += kToolCallClose.size();
  close_call();
  return true;
}

bool ToolCallStreamParser::known_param(std::string_view name) const {
  return props_ == nullptr || props_->contains(std::string(name));
}

ToolCallStreamParser::Decision ToolCallStreamParser::after_param_close(std::size_t k, bool eot) const {
  const std::string_view s(buf_);
  const std::size_t q = skip_ws(s, k);
  if (q == s.size()) return eot ? Decision::kYes : Decision::kNeedMore;
  const std::string_view t = s.substr(q);
  if (match_tag(t, kParamOpen) == Match::kFull) {
    std::size_t len = 0;
    const Name r = read_name(t.substr(kParamOpen.size()), false, len);
    if (r == Name::kIncomplete) return eot ? Decision::kNo : Decision::kNeedMore;
    if (r == Name::kInvalid) return Decision::kNo;
    return known_param(t.substr(kParamOpen.size(), len)) ? Decision::kYes : Decision::kNo;
  }
  if (match_tag(t, kFunctionClose) == Match::kFull || match_tag(t, kToolCallClose) == Match::kFull)
    return Decision::kYes;
  if (partial_of_any(t, {kParamOpen, kFunctionClose, kToolCallClose}))
    return eot ? Decision::kNo : Decision::kNeedMore;
  return Decision::kNo;
}

ToolCallStreamParser::Decision ToolCallStreamParser::after_tool_call_close(std::size_t k, bool eot) const {
  const std::string_view s(buf_);
  const std::size_t q = skip_ws(s, k);
  if (q == s.size()) return eot ? Decision::kYes : Decision::kNeedMore;
  const Match m = match_tag(s.substr(q), kToolCallOpen);
  if (m == Match::kFull) return Decision::kYes;
  if (m == Match::kPartial) return eot ? Decision::kNo : Decision::kNeedMore;
  return Decision::kNo;
}

ToolCallStreamParser::Decision ToolCallStreamParser::after_function_close(std::size_t k, bool eot) const {
  const std::string_view s(buf_);
  const std::size_t q = skip_ws(s, k);
  if (q == s.size()) return eot ? Decision::kYes : Decision::kNeedMore;
  const Match m = match_tag(s.substr(q), kToolCallClose);
  if (m == Match::kPartial) return eot ? Decision::kNo : Decision::kNeedMore;
  if (m == Match::kNo) return Decision::kNo;
  return after_tool_call_close(q + kToolCallClose.size(), eot);
}

bool ToolCallStreamParser::end_value(std::size_t end, std::size_t resume) {
  std::string raw = buf_.substr(value_start_, end - value_start_);
  if (!raw.empty() && raw.back() == '\n') raw.pop_back();
  const Json* prop = nullptr;
  if (props_ != nullptr) {
    if (auto it = props_->find(param_name_); it != props_->end()) prop = &*it;
  }
  std::string frag = first_param_ ? "" : ",";
  frag += dump_json(Json(param_name_));
  frag += ':';
  frag += dump_json(convert_param_value(raw, prop));
  emit_arguments(frag);
  first_param_ = false;
  seen_.insert(param_name_);
  pos_ = resume;
  state_ = State::kBody;
  return true;
}

bool ToolCallStreamParser::step_value(bool eot) {
  const std::string_view s(buf_);
  for (;;) {
    const std::size_t p = s.find('<', vi_);
    if (p == std::string_view::npos) {
      if (eot) return end_value(s.size(), s.size());
      vi_ = s.size();
      return false;
    }
    const std::string_view t = s.substr(p);
    Decision d = Decision::kNo;
    if (match_tag(t, kParamClose) == Match::kFull) {
      if (depth_ > 0) {
        --depth_;
        vi_ = p + kParamClose.size();
        continue;
      }
      d = after_param_close(p + kParamClose.size(), eot);
      if (d == Decision::kYes) return end_value(p, p + kParamClose.size());
      if (d == Decision::kNo) {
        vi_ = p + kParamClose.size();
        continue;
      }
    } else if (match_tag(t, kParamOpen) == Match::kFull && (p == value_start_ || s[p - 1] == '\n')) {
      std::size_t len = 0;
      const Name r = read_name(t.substr(kParamOpen.size()), false, len);
      if (r == Name::kOk) {
        const std::string_view name = t.substr(kParamOpen.size(), len);
        if (depth_ == 0 && name != param_name_ && !seen_.count(std::string(name)) && known_param(name))
          return end_value(p, p);  // missing </parameter>: the next parameter starts here
        ++depth_;
        vi_ = p + kParamOpen.size() + len + 1;
        continue;
      }
      d = (r == Name::kIncomplete && !eot) ? Decision::kNeedMore : Decision::kNo;
    } else if (depth_ == 0 && match_tag(t, kFunctionClose) == Match::kFull) {
      d = after_function_close(p + kFunctionClose.size(), eot);
      if (d == Decision::kYes) return end_value(p, p);
    } else if (depth_ == 0 && match_tag(t, kToolCallClose) == Match::kFull) {
      d = after_tool_call_close(p + kToolCallClose.size(), eot);
      if (d == Decision::kYes) return end_value(p, p);
    } else if (!eot && partial_of_any(t, {kParamClose, kParamOpen, kFunctionClose, kToolCallClose})) {
      d = Decision::kNeedMore;
    }
    if (d == Decision::kNeedMore) {
      vi_ = p;
      return false;
    }
    vi_ = p + 1;
  }
}

}  // namespace nemotron::text
