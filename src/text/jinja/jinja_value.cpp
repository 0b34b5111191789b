#include "text/jinja/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <vector>

#include "text/jinja/jinja_strings.h"
#include "util/error.h"

namespace nemotron::text::jinja {

const Value* DictObj::find(const Value& key) const {
  auto it = index.find(key.hash_key());
  return it == index.end() ? nullptr : &items[it->second].second;
}

void DictObj::set(const Value& key, Value value) {
  std::string k = key.hash_key();
  auto it = index.find(k);
  if (it != index.end()) {
    items[it->second].second = std::move(value);
    return;
  }
  index.emplace(std::move(k), items.size());
  items.emplace_back(key, std::move(value));
}

Value Value::undefined(std::string message) {
  Value v;
  v.s_ = std::move(message);
  return v;
}
Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}
Value::Value(bool b) : kind_(Kind::Bool), b_(b), i_(b ? 1 : 0) {}
Value::Value(int v) : kind_(Kind::Int), i_(v) {}
Value::Value(int64_t v) : kind_(Kind::Int), i_(v) {}
Value::Value(double v) : kind_(Kind::Float), f_(v) {}
Value::Value(std::string s) : kind_(Kind::String), s_(std::move(s)) {}
Value::Value(const char* s) : kind_(Kind::String), s_(s) {}

Value Value::list(std::vector<Value> items, bool tuple) {
  Value v;
  v.kind_ = Kind::List;
  v.list_ = std::make_shared<ListObj>();
  v.list_->items = std::move(items);
  v.list_->tuple = tuple;
  return v;
}
Value Value::dict(std::shared_ptr<DictObj> d) {
  Value v;
  v.kind_ = Kind::Dict;
  v.dict_ = std::move(d);
  return v;
}
Value Value::empty_dict() { return dict(std::make_shared<DictObj>()); }
Value Value::func(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn) {
  Value v;
  v.kind_ = Kind::Func;
  v.func_ = std::make_shared<FuncObj>(FuncObj{std::move(name), std::move(fn)});
  return v;
}
Value Value::ns(std::shared_ptr<DictObj> attrs) {
  Value v;
  v.kind_ = Kind::Namespace;
  v.dict_ = std::move(attrs);
  return v;
}

Value Value::from_json(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return none();
    case Json::value_t::boolean: return Value(j.get<bool>());
    case Json::value_t::number_integer: return Value(j.get<int64_t>());
    case Json::value_t::number_unsigned: {
      auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) throw Error("integer " + j.dump() + " is too large");
      return Value(static_cast<int64_t>(u));
    }
    case Json::value_t::number_float: return Value(j.get<double>());
    case Json::value_t::string: return Value(j.get<std::string>());
    case Json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case Json::value_t::object: {
      auto d = std::make_shared<DictObj>();
      for (auto it = j.begin(); it != j.end(); ++it) d->set(Value(it.key()), from_json(it.value()));
      return dict(std::move(d));
    }
    default: throw Error("unsupported JSON value (binary/discarded)");
  }
}

double Value::as_float() const {
  if (kind_ == Kind::Float) return f_;
  return static_cast<double>(i_);
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0.0;
    case Kind::String: return !s_.empty();
    case Kind::List: return !list_->items.empty();
    case Kind::Dict: return !dict_->items.empty();
    default: return true;
  }
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = !sci.empty() && sci[0] == '-';
  if (neg) sci.erase(0, 1);
  auto epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  int exp = std::stoi(sci.substr(epos + 1));
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits[0];
    if (digits.size() > 1) out += "." + digits.substr(1);
    std::snprintf(buf, sizeof buf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += buf;
    return out;
  }
  if (exp < 0) {
    out += "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
  } else {
    auto point = static_cast<std::size_t>(exp) + 1;
    if (digits.size() <= point) {
      out += digits + std::string(point - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, point) + "." + digits.substr(point);
    }
  }
  return out;
}

// Printing and comparing recurse into containers. A container that holds itself (`{% set
// ns.x = [ns] %}` and the like) prints as Python prints one ([...], (...), {...}), and nesting
// deeper than kMaxNesting is an error, never a stack overflow.
namespace {
constexpr std::size_t kMaxNesting = 512;
thread_local std::vector<const void*> t_printing;  // the containers being printed, outermost first
thread_local std::size_t t_compare_depth = 0;
struct CompareDepth {
  CompareDepth() {
    if (++t_compare_depth > kMaxNesting) {
      --t_compare_depth;
      throw Error("comparison nested too deeply");
    }
  }
  ~CompareDepth() { --t_compare_depth; }
  CompareDepth(const CompareDepth&) = delete;
  CompareDepth& operator=(const CompareDepth&) = delete;
};
}  // namespace

static std::string container_str(const Value& v) {
  const void* id = v.is_list() ? static_cast<const void*>(&v.list_obj()) : static_cast<const void*>(&v.dict_obj());
  if (std::find(t_printing.begin(), t_printing.end(), id) != t_printing.end())
    return v.is_list() ? (v.list_obj().tuple ? "(...)" : "[...]") : "{...}";
  if (t_printing.size() >= kMaxNesting) throw Error("value nested too deeply to print");
  t_printing.push_back(id);
  struct Pop {
    ~Pop() { t_printing.pop_back(); }
  } pop;
  std::string out;
  if (v.is_list()) {
    const auto& l = v.list_obj();
    out += l.tuple ? '(' : '[';
    for (std::size_t i = 0; i < l.items.size(); ++i) {
      if (i) out += ", ";
      out += l.items[i].repr();
    }
    if (l.tuple && l.items.size() == 1) out += ',';
    out += l.tuple ? ')' : ']';
    return out;
  }
  out += '{';
  bool first = true;
  for (const auto& [k, val] : v.dict_obj().items) {
    if (!first) out += ", ";
    first = false;
    out += k.repr() + ": " + val.repr();
  }
  out += '}';
  return out;
}

std::string Value::to_str() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return b_ ? "True" : "False";
    case Kind::Int: return std::to_string(i_);
    case Kind::Float: return py_float_repr(f_);
    case Kind::String: return s_;
    case Kind::List:
    case Kind::Dict: return container_str(*this);
    case Kind::Func: return "<function " + func_->name + ">";
    case Kind::Namespace: return "<Namespace " + container_str(Value::dict(dict_)) + ">";
  }
  return "";
}

std::string Value::repr() const {
  if (kind_ == Kind::String) return py_repr_string(s_);
  if (kind_ == Kind::Undefined) return "Undefined";
  return to_str();
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return list_->tuple ? "tuple" : "list";
    case Kind::Dict: return "dict";
    case Kind::Func: return "function";
    case Kind::Namespace: return "Namespace";
  }
  return "object";
}

std::string Value::hash_key() const {
  switch (kind_) {
    case Kind::String: return "s" + s_;
    case Kind::None: return "N";
    case Kind::Bool:
    case Kind::Int: return "n" + std::to_string(i_);
    case Kind::Float: {
      if (std::isfinite(f_) && f_ == std::floor(f_) && std::fabs(f_) < 9.2e18)
        return "n" + std::to_string(static_cast<int64_t>(f_));
      return "f" + py_float_repr(f_);
    }
    case Kind::List:
      if (list_->tuple) {
        std::string k = "t";
        for (const auto& e : list_->items) k += e.hash_key() + "\x1f";
        return k;
      }
      break;
    default: break;
  }
  throw Error("unhashable type: '" + type_name() + "'");
}

void Value::raise_undefined() const {
  throw Error(s_.empty() ? std::string("value is undefined") : s_);
}

bool values_equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  const CompareDepth depth;
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) return a.as_int() == b.as_int();
    return a.as_float() == b.as_float();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::Undefined:
    case K::None: return true;
    case K::String: return a.str() == b.str();
    case K::List: {
      if (&a.list_obj() == &b.list_obj()) return true;  // itself (as Python compares items: identity first)
      if (a.list_obj().tuple != b.list_obj().tuple) return false;
      const auto& x = a.items();
      const auto& y = b.items();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!values_equal(x[i], y[i])) return false;
      return true;
    }
    case K::Dict: {
      const auto& x = a.dict_obj();
      const auto& y = b.dict_obj();
      if (&x == &y) return true;
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* other = y.find(k);
        if (!other || !values_equal(v, *other)) return false;
      }
      return true;
    }
    case K::Func: return &a.func_obj() == &b.func_obj();
    case K::Namespace: return &a.namespace_attrs() == &b.namespace_attrs();
    default: return false;
  }
}

bool values_less(const Value& a, const Value& b) {
  const CompareDepth depth;
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) return a.as_int() < b.as_int();
    return a.as_float() < b.as_float();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list() && a.list_obj().tuple == b.list_obj().tuple) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!values_equal(x[i], y[i])) return values_less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw Error("'<' not supported between instances of '" + a.type_name() + "' and '" +
              b.type_name() + "'");
}

namespace {

struct JsonWriter {
  const JsonDumpOptions& o;
  std::string out;
  int depth = 0;

  void newline(int level) {
    out += '\n';
    for (int i = 0; i < level; ++i) {
      if (!o.indent_str.empty() || o.indent < 0) out += o.indent_str;
      else out.append(static_cast<std::size_t>(o.indent), ' ');
    }
  }

  std::string key_string(const Value& k) {
    if (k.is_string()) return k.str();
    if (k.is_bool()) return k.as_bool() ? "true" : "false";
    if (k.is_none()) return "null";
    if (k.is_int()) return std::to_string(k.as_int());
    if (k.is_float()) return float_token(k.as_float());
    throw Error("keys must be str, int, float, bool or None, not " + k.type_name());
  }

  static std::string float_token(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    return py_float_repr(d);
  }

  void write(const Value& v) {
    if (++depth > 512) throw Error("tojson: value nested too deeply");
    switch (v.kind()) {
      case Value::Kind::None: out += "null"; break;
      case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; break;
      case Value::Kind::Int: out += std::to_string(v.as_int()); break;
      case Value::Kind::Float: out += float_token(v.as_float()); break;
      case Value::Kind::String: json_escape_append(out, v.str()); break;
      case Value::Kind::List: {
        const auto& items = v.items();
        if (items.empty()) {
          out += "[]";
          break;
        }
        out += '[';
        for (std::size_t i = 0; i < items.size(); ++i) {
          if (i) out += o.item_sep;
          if (o.has_indent) newline(depth);
          write(items[i]);
        }
        if (o.has_indent) newline(depth - 1);
        out += ']';
        break;
      }
      case Value::Kind::Dict: {
        std::vector<std::pair<std::string, const Value*>> entries;
        for (const auto& [k, val] : v.dict_obj().items) entries.emplace_back(key_string(k), &val);
        if (o.sort_keys)
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto& x, const auto& y) { return x.first < y.first; });
        if (entries.empty()) {
          out += "{}";
          break;
        }
        out += '{';
        for (std::size_t i = 0; i < entries.size(); ++i) {
          if (i) out += o.item_sep;
          if (o.has_indent) newline(depth);
          json_escape_append(out, entries[i].first);
          out += o.key_sep;
          write(*entries[i].second);
        }
        if (o.has_indent) newline(depth - 1);
        out += '}';
        break;
      }
      default:
        throw Error("Object of type " + v.type_name() + " is not JSON serializable");
    }
    --depth;
  }
};

}  // namespace

std::string py_json_dumps(const Value& v, const JsonDumpOptions& options) {
  JsonWriter w{options, {}, 0};
  w.write(v);
  return std::move(w.out);
}

}  // namespace nemotron::text::jinja
