// Tests, globals, Python methods of str/list/dict, and argument binding. Filters are in
// jinja_filters.cpp.
#include "text/jinja/jinja_builtins.h"

#include <cmath>
#include <ctime>
#include <unordered_map>

#include "text/jinja/jinja_interpreter.h"
#include "text/jinja/jinja_strings.h"

namespace nemotron::text::jinja {

Params::Params(const char* fname, const CallArgs& args, std::initializer_list<const char*> names)
    : fname_(fname), names_(names), slots_(names.size(), nullptr) {
  if (args.pos.size() > names_.size())
    throw Error(fname_ + "() takes at most " + std::to_string(names_.size()) + " argument(s) (" +
                std::to_string(args.pos.size()) + " given)");
  for (std::size_t i = 0; i < args.pos.size(); ++i) slots_[i] = &args.pos[i];
  for (const auto& [k, v] : args.kw) {
    std::size_t i = 0;
    while (i < names_.size() && k != names_[i]) ++i;
    if (i == names_.size()) throw Error(fname_ + "() got an unexpected keyword argument '" + k + "'");
    if (slots_[i]) throw Error(fname_ + "() got multiple values for argument '" + k + "'");
    slots_[i] = &v;
  }
}

const Value& Params::require(std::size_t i) const {
  if (!slots_[i]) throw Error(fname_ + "() missing required argument '" + names_[i] + "'");
  return *slots_[i];
}

int64_t to_int_arg(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw Error(std::string(what) + " must be an integer, not '" + v.type_name() + "'");
}

std::string soft_str(const Value& v) { return v.to_str(); }

// ---------------------------------------------------------------- tests

namespace {

bool t_defined(Interpreter&, const Value& v, CallArgs&) { return !v.is_undefined(); }
bool t_undefined(Interpreter&, const Value& v, CallArgs&) { return v.is_undefined(); }
bool t_none(Interpreter&, const Value& v, CallArgs&) { return v.is_none(); }
bool t_boolean(Interpreter&, const Value& v, CallArgs&) { return v.is_bool(); }
bool t_true(Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }
bool t_false(Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }
bool t_integer(Interpreter&, const Value& v, CallArgs&) { return v.is_int(); }
bool t_float(Interpreter&, const Value& v, CallArgs&) { return v.is_float(); }
bool t_number(Interpreter&, const Value& v, CallArgs&) { return v.is_number(); }
bool t_string(Interpreter&, const Value& v, CallArgs&) { return v.is_string(); }
bool t_mapping(Interpreter&, const Value& v, CallArgs&) { return v.is_dict(); }
bool t_iterable(Interpreter&, const Value& v, CallArgs&) {
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool t_sequence(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() || v.is_list() || v.is_dict();
}
bool t_callable(Interpreter&, const Value& v, CallArgs&) { return v.is_func(); }
bool t_escaped(Interpreter&, const Value&, CallArgs&) { return false; }

int64_t int_subject(const Value& v, const char* test) {
  if (v.is_undefined()) v.raise_undefined();
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw Error(std::string("test '") + test + "' needs an integer, got '" + v.type_name() + "'");
}
bool t_odd(Interpreter&, const Value& v, CallArgs&) { return int_subject(v, "odd") % 2 != 0; }
bool t_even(Interpreter&, const Value& v, CallArgs&) { return int_subject(v, "even") % 2 == 0; }
bool t_divisibleby(Interpreter&, const Value& v, CallArgs& a) {
  Params p("divisibleby", a, {"num"});
  const Value& num = p.require(0);
  if (v.is_float() || num.is_float()) {
    if (num.as_float() == 0) throw Error("float modulo");
    return std::fmod(v.as_float(), num.as_float()) == 0;
  }
  int64_t d = to_int_arg(num, "divisibleby argument");
  if (d == 0) throw Error("integer division or modulo by zero");
  return int_subject(v, "divisibleby") % d == 0;
}

Value other(CallArgs& a, const char* name) { return Params(name, a, {"other"}).require(0); }
void no_undefined(const Value& a, const Value& b) {
  if (a.is_undefined()) a.raise_undefined();
  if (b.is_undefined()) b.raise_undefined();
}
bool t_eq(Interpreter&, const Value& v, CallArgs& a) { return values_equal(v, other(a, "eq")); }
bool t_ne(Interpreter&, const Value& v, CallArgs& a) { return !values_equal(v, other(a, "ne")); }
bool t_lt(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = other(a, "lt");
  no_undefined(v, o);
  return values_less(v, o);
}
bool t_le(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = other(a, "le");
  no_undefined(v, o);
  return !values_less(o, v);
}
bool t_gt(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = other(a, "gt");
  no_undefined(v, o);
  return values_less(o, v);
}
bool t_ge(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = other(a, "ge");
  no_undefined(v, o);
  return !values_less(v, o);
}
bool t_in(Interpreter&, const Value& v, CallArgs& a) {
  const Params params("in", a, {"seq"});
  const Value& seq = params.require(0);
  switch (seq.kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      if (!v.is_string()) throw Error("'in <string>' requires string as left operand, not " + v.type_name());
      return seq.str().find(v.str()) != std::string::npos;
    case Value::Kind::List:
      for (const auto& x : seq.items())
        if (values_equal(x, v)) return true;
      return false;
    case Value::Kind::Dict: return seq.dict_obj().find(v) != nullptr;
    default: throw Error("argument of type '" + seq.type_name() + "' is not iterable");
  }
}
bool t_sameas(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = other(a, "sameas");
  if (v.kind() != o.kind()) return false;
  if (v.is_none() || v.is_undefined()) return true;
  if (v.is_bool()) return v.as_bool() == o.as_bool();
  if (v.is_list()) return &v.list_obj() == &o.list_obj();
  if (v.is_dict()) return &v.dict_obj() == &o.dict_obj();
  return values_equal(v, o);
}
bool t_lower(Interpreter&, const Value& v, CallArgs&) {
  std::string s = soft_str(v);
  return py_lower(s) == s && py_upper(s) != s;
}
bool t_upper(Interpreter&, const Value& v, CallArgs&) {
  std::string s = soft_str(v);
  return py_upper(s) == s && py_lower(s) != s;
}

const std::unordered_map<std::string, TestFn>& test_table() {
  static const std::unordered_map<std::string, TestFn> table = {
      {"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},
      {"boolean", t_boolean},   {"true", t_true},           {"false", t_false},
      {"integer", t_integer},   {"float", t_float},         {"number", t_number},
      {"string", t_string},     {"mapping", t_mapping},     {"iterable", t_iterable},
      {"sequence", t_sequence}, {"callable", t_callable},   {"escaped", t_escaped},
      {"odd", t_odd},           {"even", t_even},           {"divisibleby", t_divisibleby},
      {"eq", t_eq},             {"equalto", t_eq},          {"==", t_eq},
      {"ne", t_ne},             {"!=", t_ne},               {"lt", t_lt},
      {"lessthan", t_lt},       {"<", t_lt},                {"le", t_le},
      {"<=", t_le},             {"gt", t_gt},               {"greaterthan", t_gt},
      {">", t_gt},              {"ge", t_ge},               {">=", t_ge},
      {"in", t_in},             {"sameas", t_sameas},       {"lower", t_lower},
      {"upper", t_upper},
  };
  return table;
}

}  // namespace

const TestFn* find_test(const std::string& name) {
  const auto& t = test_table();
  auto it = t.find(name);
  return it == t.end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------- globals

void install_globals(Interpreter& interp) {
  interp.set_global("range", Value::func("range", [](Interpreter& in, CallArgs& a) {
    if (!a.kw.empty()) throw Error("range() takes no keyword arguments");
    if (a.pos.empty() || a.pos.size() > 3)
      throw Error("range expected 1 to 3 arguments, got " + std::to_string(a.pos.size()));
    int64_t start = 0, stop, stepv = 1;
    if (a.pos.size() == 1) {
      stop = to_int_arg(a.pos[0], "range() argument");
    } else {
      start = to_int_arg(a.pos[0], "range() argument");
      stop = to_int_arg(a.pos[1], "range() argument");
      if (a.pos.size() == 3) stepv = to_int_arg(a.pos[2], "range() argument");
    }
    if (stepv == 0) throw Error("range() arg 3 must not be zero");
    long double count = stepv > 0 ? (static_cast<long double>(stop) - start + stepv - 1) / stepv
                                  : (static_cast<long double>(start) - stop - stepv - 1) / -stepv;
    if (count > 100000)
      throw Error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    std::vector<Value> items;
    for (int64_t i = start; stepv > 0 ? i < stop : i > stop; i += stepv) {
      in.step();
      items.emplace_back(i);
    }
    return Value::list(std::move(items));
  }));
  auto kwargs_dict = [](const char* fname, CallArgs& a) {
    auto d = std::make_shared<DictObj>();
    if (a.pos.size() > 1) throw Error(std::string(fname) + " expected at most 1 positional argument");
    if (!a.pos.empty()) {
      if (!a.pos[0].is_dict()) throw Error(std::string(fname) + " positional argument must be a mapping");
      for (const auto& kv : a.pos[0].dict_obj().items) d->set(kv.first, kv.second);
    }
    for (const auto& [k, v] : a.kw) d->set(Value(k), v);
    return d;
  };
  interp.set_global("dict", Value::func("dict", [kwargs_dict](Interpreter&, CallArgs& a) {
    return Value::dict(kwargs_dict("dict", a));
  }));
  interp.set_global("namespace", Value::func("namespace", [kwargs_dict](Interpreter& in, CallArgs& a) {
    auto attrs = kwargs_dict("namespace", a);
    in.track_namespace(attrs);
    return Value::ns(std::move(attrs));
  }));
  interp.set_global("raise_exception", Value::func("raise_exception", [](Interpreter&, CallArgs& a) -> Value {
    Params p("raise_exception", a, {"message"});
    throw Error("raise_exception: " + soft_str(p.get(0, Value(""))));
  }));
  interp.set_global("strftime_now", Value::func("strftime_now", [](Interpreter&, CallArgs& a) {
    Params p("strftime_now", a, {"format"});
    const Value& fmt = p.require(0);
    if (!fmt.is_string()) throw Error("strftime_now() argument must be str");
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[512];
    std::size_t n = fmt.str().empty() ? 0 : std::strftime(buf, sizeof buf, fmt.str().c_str(), &tm);
    if (n == 0 && !fmt.str().empty()) throw Error("strftime_now(): format too long or empty result");
    return Value(std::string(buf, n));
  }));
}

// ---------------------------------------------------------------- methods

namespace {

using MethodFn = Value (*)(Interpreter&, const Value& self, CallArgs& args);

Value bind(const Value& self, const std::string& name, MethodFn fn) {
  return Value::func(name, [self, fn](Interpreter& in, CallArgs& a) { return fn(in, self, a); });
}

const std::string* opt_str(const Params& p, std::size_t i, const char* what) {
  const Value* v = p.slot(i);
  if (!v || v->is_none()) return nullptr;
  if (!v->is_string()) throw Error(std::string(what) + " arg must be None or str");
  return &v->str();
}

Value m_strip_impl(const Value& s, CallArgs& a, const char* name, bool l, bool r) {
  Params p(name, a, {"chars"});
  return Value(py_strip(s.str(), opt_str(p, 0, name), l, r));
}
Value m_strip(Interpreter&, const Value& s, CallArgs& a) { return m_strip_impl(s, a, "strip", true, true); }
Value m_lstrip(Interpreter&, const Value& s, CallArgs& a) { return m_strip_impl(s, a, "lstrip", true, false); }
Value m_rstrip(Interpreter&, const Value& s, CallArgs& a) { return m_strip_impl(s, a, "rstrip", false, true); }

Value m_split_impl(const Value& s, CallArgs& a, const char* name, bool right) {
  Params p(name, a, {"sep", "maxsplit"});
  int64_t maxsplit = p.has(1) ? to_int_arg(p.get(1, Value()), "maxsplit") : -1;
  std::vector<Value> out;
  for (auto& part : py_split(s.str(), opt_str(p, 0, name), maxsplit, right)) out.emplace_back(std::move(part));
  return Value::list(std::move(out));
}
Value m_split(Interpreter&, const Value& s, CallArgs& a) { return m_split_impl(s, a, "split", false); }
Value m_rsplit(Interpreter&, const Value& s, CallArgs& a) { return m_split_impl(s, a, "rsplit", true); }

Value m_affix(const Value& s, CallArgs& a, const char* name, bool prefix) {
  Params p(name, a, {"prefix", "start", "end"});
  const Value& what = p.require(0);
  std::string str = s.str();
  if (p.has(1) || p.has(2)) {
    auto cps = to_code_points(str);
    auto n = static_cast<int64_t>(cps.size());
    auto norm = [n](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + n : v, 0, n); };
    int64_t b = p.has(1) && !p.get(1, Value()).is_none() ? norm(to_int_arg(p.get(1, Value()), "start")) : 0;
    int64_t e = p.has(2) && !p.get(2, Value()).is_none() ? norm(to_int_arg(p.get(2, Value()), "end")) : n;
    str = b <= e ? from_code_points(cps, static_cast<std::size_t>(b), static_cast<std::size_t>(e)) : "";
  }
  std::vector<Value> options = what.is_list() && what.list_obj().tuple ? what.items() : std::vector<Value>{what};
  for (const auto& o : options) {
    if (!o.is_string())
      throw Error(std::string(name) + " first arg must be str or a tuple of str, not " + o.type_name());
    const std::string& x = o.str();
    if (x.size() <= str.size() &&
        (prefix ? str.compare(0, x.size(), x) == 0 : str.compare(str.size() - x.size(), x.size(), x) == 0))
      return Value(true);
  }
  return Value(false);
}
Value m_startswith(Interpreter&, const Value& s, CallArgs& a) { return m_affix(s, a, "startswith", true); }
Value m_endswith(Interpreter&, const Value& s, CallArgs& a) { return m_affix(s, a, "endswith", false); }

const std::string& str_arg(const Params& p, std::size_t i, const char* fname) {
  const Value& v = p.require(i);
  if (!v.is_string()) throw Error(std::string(fname) + "() argument must be str, not " + v.type_name());
  return v.str();
}

Value m_replace(Interpreter& in, const Value& s, CallArgs& a) {
  Params p("replace", a, {"old", "new", "count"});
  int64_t count = p.has(2) ? to_int_arg(p.get(2, Value()), "count") : -1;
  std::string out = py_replace(s.str(), str_arg(p, 0, "replace"), str_arg(p, 1, "replace"), count);
  in.check_size(out.size());
  return Value(std::move(out));
}
Value m_upper(Interpreter&, const Value& s, CallArgs& a) { Params("upper", a, {}); return Value(py_upper(s.str())); }
Value m_lower(Interpreter&, const Value& s, CallArgs& a) { Params("lower", a, {}); return Value(py_lower(s.str())); }
Value m_title(Interpreter&, const Value& s, CallArgs& a) { Params("title", a, {}); return Value(py_title(s.str())); }
Value m_capitalize(Interpreter&, const Value& s, CallArgs& a) {
  Params("capitalize", a, {});
  return Value(py_capitalize(s.str()));
}
Value m_find(Interpreter&, const Value& s, CallArgs& a) {
  Params p("find", a, {"sub"});
  return Value(py_find(s.str(), str_arg(p, 0, "find"), false));
}
Value m_rfind(Interpreter&, const Value& s, CallArgs& a) {
  Params p("rfind", a, {"sub"});
  return Value(py_find(s.str(), str_arg(p, 0, "rfind"), true));
}
Value m_str_index(Interpreter&, const Value& s, CallArgs& a) {
  Params p("index", a, {"sub"});
  int64_t i = py_find(s.str(), str_arg(p, 0, "index"), false);
  if (i < 0) throw Error("substring not found");
  return Value(i);
}
Value m_str_count(Interpreter&, const Value& s, CallArgs& a) {
  Params p("count", a, {"sub"});
  return Value(py_count(s.str(), str_arg(p, 0, "count")));
}
Value m_join(Interpreter& in, const Value& s, CallArgs& a) {
  Params p("join", a, {"iterable"});
  std::string out;
  bool first = true;
  for (const auto& x : in.iterate(p.require(0))) {
    if (!x.is_string()) throw Error("sequence item: expected str instance, " + x.type_name() + " found");
    if (!first) out += s.str();
    first = false;
    out += x.str();
    in.check_size(out.size());
  }
  return Value(std::move(out));
}
Value m_splitlines(Interpreter&, const Value& s, CallArgs& a) {
  Params p("splitlines", a, {"keepends"});
  bool keep = p.get(0, Value(false)).truthy();
  std::vector<Value> out;
  auto cps = to_code_points(s.str());
  std::size_t b = 0;
  for (std::size_t i = 0; i < cps.size(); ++i) {
    uint32_t c = cps[i];
    bool br = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
              c == 0x2028 || c == 0x2029;
    if (!br) continue;
    std::size_t e = i;
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    out.emplace_back(from_code_points(cps, b, keep ? i + 1 : e));
    b = i + 1;
  }
  if (b < cps.size()) out.emplace_back(from_code_points(cps, b, cps.size()));
  return Value::list(std::move(out));
}
template <bool (*Pred)(uint32_t)>
Value m_is(Interpreter&, const Value& s, CallArgs&) {
  auto cps = to_code_points(s.str());
  if (cps.empty()) return Value(false);
  for (uint32_t c : cps)
    if (!Pred(c)) return Value(false);
  return Value(true);
}
bool is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
bool is_alpha(uint32_t c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
bool is_alnum(uint32_t c) { return is_digit(c) || is_alpha(c); }
Value m_isspace(Interpreter& in, const Value& s, CallArgs& a) { return m_is<py_isspace>(in, s, a); }

// str.format with {} / {0} / {name} fields (no format specs).
Value m_format(Interpreter& in, const Value& s, CallArgs& a) {
  const std::string& f = s.str();
  std::string out;
  std::size_t auto_idx = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (c == '{' && i + 1 < f.size() && f[i + 1] == '{') { out += '{'; ++i; continue; }
    if (c == '}' && i + 1 < f.size() && f[i + 1] == '}') { out += '}'; ++i; continue; }
    if (c == '}') throw Error("Single '}' encountered in format string");
    if (c != '{') { out += c; continue; }
    std::size_t e = f.find('}', i);
    if (e == std::string::npos) throw Error("Single '{' encountered in format string");
    std::string field = f.substr(i + 1, e - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos)
      throw Error("format specs and conversions are not supported in str.format");
    const Value* v = nullptr;
    if (field.empty() || std::isdigit(static_cast<unsigned char>(field[0]))) {
      std::size_t idx = field.empty() ? auto_idx++ : static_cast<std::size_t>(std::stoul(field));
      if (idx >= a.pos.size()) throw Error("Replacement index " + std::to_string(idx) + " out of range");
      v = &a.pos[idx];
    } else {
      for (const auto& [k, val] : a.kw)
        if (k == field) v = &val;
      if (!v) throw Error("KeyError: '" + field + "'");
    }
    out += v->to_str();
    in.check_size(out.size());
    i = e;
  }
  return Value(std::move(out));
}

Value m_list_index(Interpreter&, const Value& l, CallArgs& a) {
  Params p("index", a, {"value"});
  const auto& items = l.items();
  for (std::size_t i = 0; i < items.size(); ++i)
    if (values_equal(items[i], p.require(0))) return Value(static_cast<int64_t>(i));
  throw Error(p.require(0).repr() + " is not in list");
}
Value m_list_count(Interpreter&, const Value& l, CallArgs& a) {
  Params p("count", a, {"value"});
  int64_t n = 0;
  for (const auto& x : l.items()) n += values_equal(x, p.require(0)) ? 1 : 0;
  return Value(n);
}

Value m_items(Interpreter&, const Value& d, CallArgs& a) {
  Params("items", a, {});
  std::vector<Value> out;
  for (const auto& [k, v] : d.dict_obj().items) out.push_back(Value::list({k, v}, true));
  return Value::list(std::move(out));
}
Value m_keys(Interpreter&, const Value& d, CallArgs& a) {
  Params("keys", a, {});
  std::vector<Value> out;
  for (const auto& kv : d.dict_obj().items) out.push_back(kv.first);
  return Value::list(std::move(out));
}
Value m_values(Interpreter&, const Value& d, CallArgs& a) {
  Params("values", a, {});
  std::vector<Value> out;
  for (const auto& kv : d.dict_obj().items) out.push_back(kv.second);
  return Value::list(std::move(out));
}
Value m_get(Interpreter&, const Value& d, CallArgs& a) {
  Params p("get", a, {"key", "default"});
  const Value* v = d.dict_obj().find(p.require(0));
  return v ? *v : p.get(1, Value::none());
}
Value m_copy(Interpreter&, const Value& d, CallArgs& a) {
  Params("copy", a, {});
  auto c = std::make_shared<DictObj>(d.dict_obj());
  return Value::dict(std::move(c));
}

}  // namespace

Value get_method(const Value& obj, const std::string& name) {
  static const std::unordered_map<std::string, MethodFn> str_methods = {
      {"strip", m_strip},         {"lstrip", m_lstrip},         {"rstrip", m_rstrip},
      {"split", m_split},         {"rsplit", m_rsplit},         {"startswith", m_startswith},
      {"endswith", m_endswith},   {"replace", m_replace},       {"upper", m_upper},
      {"lower", m_lower},         {"title", m_title},           {"capitalize", m_capitalize},
      {"find", m_find},           {"rfind", m_rfind},           {"index", m_str_index},
      {"count", m_str_count},     {"join", m_join},             {"splitlines", m_splitlines},
      {"isdigit", m_is<is_digit>}, {"isalpha", m_is<is_alpha>}, {"isalnum", m_is<is_alnum>},
      {"isspace", m_isspace},     {"format", m_format},
  };
  static const std::unordered_map<std::string, MethodFn> list_methods = {
      {"index", m_list_index}, {"count", m_list_count}};
  static const std::unordered_map<std::string, MethodFn> dict_methods = {
      {"items", m_items}, {"keys", m_keys}, {"values", m_values}, {"get", m_get}, {"copy", m_copy}};
  static const char* const list_unsafe[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"};
  static const char* const dict_unsafe[] = {"pop", "popitem", "update", "setdefault", "clear"};

  const std::unordered_map<std::string, MethodFn>* table = nullptr;
  if (obj.is_string()) table = &str_methods;
  else if (obj.is_list()) table = &list_methods;
  else if (obj.is_dict()) table = &dict_methods;
  if (!table) return Value::undefined();
  auto it = table->find(name);
  if (it != table->end()) return bind(obj, name, it->second);
  auto unsafe = [&](const char* const* names, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      if (name == names[i]) return true;
    return false;
  };
  if ((obj.is_list() && unsafe(list_unsafe, std::size(list_unsafe))) ||
      (obj.is_dict() && unsafe(dict_unsafe, std::size(dict_unsafe)))) {
    std::string msg = "access to attribute '" + name + "' of '" + obj.type_name() + "' object is unsafe.";
    return Value::func(name, [msg](Interpreter&, CallArgs&) -> Value { throw Error(msg); });
  }
  return Value::undefined();
}

}  // namespace nemotron::text::jinja
