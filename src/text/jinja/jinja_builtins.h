#pragma once
// Jinja2 builtin filters, tests and globals, the transformers additions (tojson as
// json.dumps(ensure_ascii=False), raise_exception, strftime_now), and the Python methods
// of str/list/dict that templates call (split, strip, items, get, ...).
#include <initializer_list>
#include <string>

#include "text/jinja/jinja_value.h"

namespace nemotron::text::jinja {

using FilterFn = Value (*)(Interpreter&, const Value& subject, CallArgs& args);
using TestFn = bool (*)(Interpreter&, const Value& subject, CallArgs& args);

const FilterFn* find_filter(const std::string& name);
const TestFn* find_test(const std::string& name);

// A bound method of str/list/dict, or Undefined when the object has no such attribute.
// Mutating list/dict methods are returned too but raise "... is unsafe" when called,
// as in ImmutableSandboxedEnvironment.
Value get_method(const Value& obj, const std::string& name);

// range, dict, namespace, raise_exception, strftime_now.
void install_globals(Interpreter& interp);

// Binds positional/keyword call arguments to parameter names, Python style. Throws for
// too many positionals, unknown keywords and duplicates.
class Params {
 public:
  Params(const char* fname, const CallArgs& args, std::initializer_list<const char*> names);
  bool has(std::size_t i) const { return slots_[i] != nullptr; }
  Value get(std::size_t i, const Value& fallback) const {
    return slots_[i] ? *slots_[i] : fallback;
  }
  const Value& require(std::size_t i) const;
  const Value* slot(std::size_t i) const { return slots_[i]; }

 private:
  std::string fname_;
  std::vector<const char*> names_;
  std::vector<const Value*> slots_;
};

// Python conversions used by several builtins.
int64_t to_int_arg(const Value& v, const char* what);
std::string soft_str(const Value& v);  // str(), Undefined -> ""

}  // namespace nemotron::text::jinja
