#pragma once
// The dynamic value type of the Jinja interpreter, with Python semantics where Jinja2
// inherits them (truthiness, ==, <, str(), repr(), json.dumps).
//
// Kinds: Undefined (carries the message an undefined-error would report), None, Bool,
// Int (int64; overflow is an error, Python would promote), Float, String (UTF-8 bytes),
// List (also tuples, flagged), Dict (insertion-ordered, keys are hashable scalars), Func
// (builtins, bound methods, macros), Namespace (the mutable object of `namespace()`).
// Lists and dicts are shared (reference semantics, like Python) and never mutated after
// construction, as in Jinja2's ImmutableSandboxedEnvironment; only namespaces mutate.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/error.h"
#include "util/json.h"

namespace nemotron::text::jinja {

class Value;
class Interpreter;

struct ListObj {
  std::vector<Value> items;
  bool tuple = false;
};

// Ordered mapping. `index` maps the canonical key (see Value::hash_key) to the position.
struct DictObj {
  std::vector<std::pair<Value, Value>> items;
  std::unordered_map<std::string, std::size_t> index;
  const Value* find(const Value& key) const;
  void set(const Value& key, Value value);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct FuncObj {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> fn;
};

class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Func, Namespace };

  Value() = default;  // Undefined
  static Value undefined(std::string message = {});
  static Value none();
  Value(bool b);  // NOLINT(google-explicit-constructor)
  Value(int v);
  Value(int64_t v);
  Value(double v);
  Value(std::string s);
  Value(const char* s);
  static Value list(std::vector<Value> items, bool tuple = false);
  static Value dict(std::shared_ptr<DictObj> d);
  static Value empty_dict();
  static Value func(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn);
  static Value ns(std::shared_ptr<DictObj> attrs);
  static Value from_json(const Json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_func() const { return kind_ == Kind::Func; }
  bool is_namespace() const { return kind_ == Kind::Namespace; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }   // Int or Bool
  double as_float() const;                // any number
  const std::string& str() const { return s_; }
  const std::string& undefined_message() const { return s_; }
  const ListObj& list_obj() const { return *list_; }
  const std::vector<Value>& items() const { return list_->items; }
  const DictObj& dict_obj() const { return *dict_; }
  DictObj& namespace_attrs() const { return *dict_; }
  const FuncObj& func_obj() const { return *func_; }

  bool truthy() const;
  // Python str(): what `{{ x }}` prints; Undefined prints as "".
  std::string to_str() const;
  // Python repr(), used for items inside printed containers.
  std::string repr() const;
  // Python type name for error messages ("str", "int", "dict", "NoneType", ...).
  std::string type_name() const;
  // Canonical key for dict lookup: equal Python keys (1, 1.0, True) map to one string.
  // Throws for unhashable kinds.
  std::string hash_key() const;

  // Raises the stored undefined error. Only call on Undefined values.
  [[noreturn]] void raise_undefined() const;

 private:
  Kind kind_ = Kind::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;  // String contents, or the Undefined message
  std::shared_ptr<ListObj> list_;
  std::shared_ptr<DictObj> dict_;
  std::shared_ptr<FuncObj> func_;
};

// Python ==. Never throws.
bool values_equal(const Value& a, const Value& b);
// Python <. Throws Error for unorderable kinds.
bool values_less(const Value& a, const Value& b);

// Python float repr: "1.0", "0.1", "1e-05", "1e+16", "inf", "nan".
std::string py_float_repr(double d);

// json.dumps(v, ensure_ascii=False, indent=indent, separators=..., sort_keys=...).
// indent < 0 means None; indent_str non-empty overrides indent (a string indent).
struct JsonDumpOptions {
  int indent = -1;
  std::string indent_str;
  bool has_indent = false;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};
std::string py_json_dumps(const Value& v, const JsonDumpOptions& options);

}  // namespace nemotron::text::jinja
