// Jinja2 builtin filters (Jinja 3.1 signatures and Python semantics) plus transformers'
// tojson override. Filters that return generators in Jinja (reverse, batch, slice)
// return lists here; they print differently only when printed directly.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "text/jinja/jinja_builtins.h"
#include "text/jinja/jinja_interpreter.h"
#include "text/jinja/jinja_strings.h"

namespace nemotron::text::jinja {

namespace {

// Jinja's make_attrgetter: "a.b.0" looks up each part with getitem (integers as ints).
Value get_path(Interpreter& in, const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return in.getitem(item, attribute);
  Value cur = item;
  const std::string& path = attribute.str();
  std::size_t b = 0;
  while (true) {
    std::size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = in.getitem(cur, digits ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part));
    if (e == std::string::npos) return cur;
    b = e + 1;
  }
}

Value f_tojson(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions o;
  const Value& indent = p.get(1, Value::none());
  if (indent.is_string()) {
    o.has_indent = true;
    o.indent_str = indent.str();
  } else if (indent.is_int() || indent.is_bool()) {
    o.has_indent = true;
    o.indent = static_cast<int>(std::clamp<int64_t>(indent.as_int(), 0, 64));
  } else if (!indent.is_none()) {
    throw Error("tojson: indent must be None, an int or a str");
  }
  if (o.has_indent) o.item_sep = ",";
  const Value& seps = p.get(2, Value::none());
  if (!seps.is_none()) {
    if (!seps.is_list() || seps.items().size() != 2 || !seps.items()[0].is_string() || !seps.items()[1].is_string())
      throw Error("tojson: separators must be a pair of strings");
    o.item_sep = seps.items()[0].str();
    o.key_sep = seps.items()[1].str();
  }
  o.sort_keys = p.get(3, Value(false)).truthy();
  std::string out = py_json_dumps(v, o);
  in.check_size(out.size());
  if (!p.get(0, Value(false)).truthy()) return Value(std::move(out));
  std::string ascii;
  char buf[16];
  for (uint32_t cp : to_code_points(out)) {
    if (cp < 0x80) {
      ascii += static_cast<char>(cp);
    } else if (cp < 0x10000) {
      std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      ascii += buf;
    } else {
      uint32_t c = cp - 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
      ascii += buf;
    }
  }
  return Value(std::move(ascii));
}

Value f_default(Interpreter&, const Value& v, CallArgs& a) {
  Params p("default", a, {"default_value", "boolean"});
  if (v.is_undefined() || (p.get(1, Value(false)).truthy() && !v.truthy())) return p.get(0, Value(""));
  return v;
}

Value f_length(Interpreter&, const Value& v, CallArgs& a) {
  Params("length", a, {});
  switch (v.kind()) {
    case Value::Kind::Undefined: return Value(0);
    case Value::Kind::String: return Value(static_cast<int64_t>(py_len(v.str())));
    case Value::Kind::List: return Value(static_cast<int64_t>(v.items().size()));
    case Value::Kind::Dict: return Value(static_cast<int64_t>(v.dict_obj().items.size()));
    default: throw Error("object of type '" + v.type_name() + "' has no len()");
  }
}

Value f_string(Interpreter&, const Value& v, CallArgs& a) {
  Params("string", a, {});
  return Value(soft_str(v));
}
Value f_safe(Interpreter&, const Value& v, CallArgs& a) {
  Params("safe", a, {});
  return v.is_string() ? v : Value(soft_str(v));
}
Value f_escape(Interpreter&, const Value& v, CallArgs& a) {
  Params("escape", a, {});
  return Value(html_escape(soft_str(v)));
}
Value f_trim(Interpreter&, const Value& v, CallArgs& a) {
  Params p("trim", a, {"chars"});
  const Value& chars = p.get(0, Value::none());
  if (!chars.is_none() && !chars.is_string()) throw Error("trim: chars must be None or str");
  return Value(py_strip(soft_str(v), chars.is_none() ? nullptr : &chars.str(), true, true));
}
Value f_upper(Interpreter&, const Value& v, CallArgs& a) { Params("upper", a, {}); return Value(py_upper(soft_str(v))); }
Value f_lower(Interpreter&, const Value& v, CallArgs& a) { Params("lower", a, {}); return Value(py_lower(soft_str(v))); }
Value f_capitalize(Interpreter&, const Value& v, CallArgs& a) {
  Params("capitalize", a, {});
  return Value(py_capitalize(soft_str(v)));
}
// Jinja's title: words start after '-', whitespace, '(', '{', '[' or '<'.
Value f_title(Interpreter&, const Value& v, CallArgs& a) {
  Params("title", a, {});
  auto cps = to_code_points(soft_str(v));
  bool start = true;
  std::string out;
  for (uint32_t c : cps) {
    std::string ch = from_code_points({c});
    if (c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c)) {
      out += ch;
      start = true;
    } else {
      out += start ? py_upper(ch) : py_lower(ch);
      start = false;
    }
  }
  return Value(std::move(out));
}
Value f_replace(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("replace", a, {"old", "new", "count"});
  const Value& count = p.get(2, Value::none());
  std::string out = py_replace(soft_str(v), soft_str(p.require(0)), soft_str(p.require(1)),
                               count.is_none() ? -1 : to_int_arg(count, "count"));
  in.check_size(out.size());
  return Value(std::move(out));
}

Value f_first(Interpreter& in, const Value& v, CallArgs& a) {
  Params("first", a, {});
  auto items = in.iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}
Value f_last(Interpreter& in, const Value& v, CallArgs& a) {
  Params("last", a, {});
  auto items = in.iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}
Value f_join(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("join", a, {"d", "attribute"});
  std::string sep = soft_str(p.get(0, Value("")));
  std::string out;
  bool first = true;
  for (const auto& item : in.iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += soft_str(p.has(1) ? get_path(in, item, p.get(1, Value())) : item);
    in.check_size(out.size());
  }
  return Value(std::move(out));
}
Value f_list(Interpreter& in, const Value& v, CallArgs& a) {
  Params("list", a, {});
  return Value::list(in.iterate(v));
}

// Python float(str): whitespace around, underscores between digits, inf/nan.
bool parse_py_float(const std::string& s, double& out) {
  std::string t = py_strip(s, nullptr, true, true);
  std::string clean;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_') {
      if (i == 0 || i + 1 == t.size() || !std::isdigit(static_cast<unsigned char>(t[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(t[i + 1])))
        return false;
      continue;
    }
    clean += t[i];
  }
  if (clean.empty()) return false;
  std::string low = py_lower(clean);
  std::string body = (low[0] == '+' || low[0] == '-') ? low.substr(1) : low;
  if (body == "inf" || body == "infinity" || body == "nan") {
    out = body == "nan" ? NAN : (low[0] == '-' ? -INFINITY : INFINITY);
    return true;
  }
  for (char c : body)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == '+' || c == '-')) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(clean.c_str(), &end);
  return end && *end == '\0';
}

bool parse_py_int(const std::string& s, int64_t base, int64_t& out) {
  std::string t = py_strip(s, nullptr, true, true);
  bool neg = false;
  std::size_t i = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) neg = t[i++] == '-';
  if (base == 0 || base == 16 || base == 8 || base == 2) {
    if (t.size() > i + 1 && t[i] == '0') {
      char p = static_cast<char>(std::tolower(static_cast<unsigned char>(t[i + 1])));
      int64_t pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
      if (pb && (base == 0 || base == pb)) {
        base = pb;
        i += 2;
        if (i < t.size() && t[i] == '_') ++i;
      }
    }
    if (base == 0) base = 10;
  }
  if (base < 2 || base > 36) throw Error("int() base must be >= 2 and <= 36, or 0");
  if (i >= t.size()) return false;
  uint64_t acc = 0;  // magnitude; at most 2^63 (INT64_MIN)
  bool prev_digit = false;
  for (; i < t.size(); ++i) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(t[i])));
    if (c == '_' && prev_digit && i + 1 < t.size()) {
      prev_digit = false;
      continue;
    }
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'z') ? c - 'a' + 10 : 99;
    if (d >= base) return false;
    const uint64_t limit = uint64_t{1} << 63;
    if (acc > (limit - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base))
      throw Error("integer too large for 64 bits");
    acc = acc * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    prev_digit = true;
  }
  if (!prev_digit) return false;
  if (!neg && acc > static_cast<uint64_t>(INT64_MAX)) throw Error("integer too large for 64 bits");
  out = neg ? static_cast<int64_t>(0 - acc) : static_cast<int64_t>(acc);
  return true;
}

Value float_to_int(double d) {
  if (std::isnan(d)) throw Error("cannot convert float NaN to integer");
  if (std::isinf(d)) throw Error("cannot convert float infinity to integer");
  if (std::fabs(d) >= 9.2e18) throw Error("integer too large for 64 bits");
  return Value(static_cast<int64_t>(std::trunc(d)));
}

Value f_int(Interpreter&, const Value& v, CallArgs& a) {
  Params p("int", a, {"default", "base"});
  Value dflt = p.get(0, Value(0));
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) return float_to_int(v.as_float());
  if (v.is_string()) {
    int64_t out;
    if (parse_py_int(v.str(), to_int_arg(p.get(1, Value(10)), "base"), out)) return Value(out);
    double d;
    if (parse_py_float(v.str(), d)) return float_to_int(d);
  }
  return dflt;
}

Value f_float(Interpreter&, const Value& v, CallArgs& a) {
  Params p("float", a, {"default"});
  if (v.is_number()) return Value(v.as_float());
  double d;
  if (v.is_string() && parse_py_float(v.str(), d)) return Value(d);
  return p.get(0, Value(0.0));
}

Value f_abs(Interpreter&, const Value& v, CallArgs& a) {
  Params("abs", a, {});
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    if (v.as_int() == INT64_MIN) throw Error("integer overflow");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  throw Error("bad operand type for abs(): '" + v.type_name() + "'");
}

Value f_round(Interpreter&, const Value& v, CallArgs& a) {
  Params p("round", a, {"precision", "method"});
  int64_t prec = to_int_arg(p.get(0, Value(0)), "precision");
  std::string method = soft_str(p.get(1, Value("common")));
  if (method != "common" && method != "ceil" && method != "floor")
    throw Error("method must be common, ceil or floor");
  if (!v.is_number()) throw Error("type " + v.type_name() + " doesn't define __round__ method");
  if (method == "common") {
    if (!v.is_float()) return Value(v.as_int());
    double x = v.as_float();
    if (!std::isfinite(x) || prec > 300) return Value(x);
    if (prec >= 0) {
      char buf[512];
      std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec), x);
      return Value(std::strtod(buf, nullptr));
    }
    double scale = std::pow(10.0, static_cast<double>(-prec));
    return Value(std::nearbyint(x / scale) * scale);
  }
  double scale = std::pow(10.0, static_cast<double>(prec));
  double x = v.as_float() * scale;
  return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value f_items(Interpreter& in, const Value& v, CallArgs& a) {
  Params("items", a, {});
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) throw Error("Can only get item pairs from a mapping.");
  CallArgs none;
  return in.call(get_method(v, "items"), none);
}

// Sort key comparison used by sort/dictsort/unique/min/max: strings fold case unless
// case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  return (!case_sensitive && v.is_string()) ? Value(py_lower(v.str())) : v;
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& a) {
  Params p("dictsort", a, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) throw Error("dictsort: value must be a mapping");
  bool cs = p.get(0, Value(false)).truthy();
  std::string by = soft_str(p.get(1, Value("key")));
  if (by != "key" && by != "value") throw Error("You can only sort by either 'key' or 'value'");
  int pos = by == "key" ? 0 : 1;
  std::vector<Value> items;
  for (const auto& [k, val] : v.dict_obj().items) items.push_back(Value::list({k, val}, true));
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return values_less(sort_key(x.items()[static_cast<std::size_t>(pos)], cs),
                       sort_key(y.items()[static_cast<std::size_t>(pos)], cs));
  });
  if (p.get(2, Value(false)).truthy()) std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("sort", a, {"reverse", "case_sensitive", "attribute"});
  bool rev = p.get(0, Value(false)).truthy();
  bool cs = p.get(1, Value(false)).truthy();
  std::vector<Value> items = in.iterate(v);
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& it : items) keyed.emplace_back(sort_key(p.has(2) ? get_path(in, it, p.get(2, Value())) : it, cs), it);
  // Python's sort with reverse=True keeps equal elements in their original order.
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return rev ? values_less(y.first, x.first) : values_less(x.first, y.first);
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(kv.second);
  return Value::list(std::move(out));
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("unique", a, {"case_sensitive", "attribute"});
  bool cs = p.get(0, Value(false)).truthy();
  std::vector<Value> out, seen;
  for (const auto& it : in.iterate(v)) {
    Value key = sort_key(p.has(1) ? get_path(in, it, p.get(1, Value())) : it, cs);
    bool dup = false;
    for (const auto& s : seen) dup = dup || values_equal(s, key);
    if (dup) continue;
    seen.push_back(key);
    out.push_back(it);
  }
  return Value::list(std::move(out));
}

Value f_minmax(Interpreter& in, const Value& v, CallArgs& a, bool want_max) {
  Params p(want_max ? "max" : "min", a, {"case_sensitive", "attribute"});
  bool cs = p.get(0, Value(false)).truthy();
  const Value* best = nullptr;
  Value best_key;
  auto items = in.iterate(v);
  for (const auto& it : items) {
    Value key = sort_key(p.has(1) ? get_path(in, it, p.get(1, Value())) : it, cs);
    if (!best || (want_max ? values_less(best_key, key) : values_less(key, best_key))) {
      best = &it;
      best_key = key;
    }
  }
  return best ? *best : Value::undefined("No aggregated item, sequence was empty.");
}
Value f_max(Interpreter& in, const Value& v, CallArgs& a) { return f_minmax(in, v, a, true); }
Value f_min(Interpreter& in, const Value& v, CallArgs& a) { return f_minmax(in, v, a, false); }

Value f_sum(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("sum", a, {"attribute", "start"});
  Value acc = p.get(1, Value(0));
  for (const auto& it : in.iterate(v)) {
    Value x = p.has(0) && !p.get(0, Value()).is_none() ? get_path(in, it, p.get(0, Value())) : it;
    if (!acc.is_number() || !x.is_number())
      throw Error("unsupported operand type(s) for +: '" + acc.type_name() + "' and '" + x.type_name() + "'");
    int64_t r;
    if (!acc.is_float() && !x.is_float()) {
      if (__builtin_add_overflow(acc.as_int(), x.as_int(), &r)) throw Error("integer overflow");
      acc = Value(r);
    } else {
      acc = Value(acc.as_float() + x.as_float());
    }
  }
  return acc;
}

Value f_reverse(Interpreter& in, const Value& v, CallArgs& a) {
  Params("reverse", a, {});
  if (v.is_string()) {
    auto cps = to_code_points(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value(from_code_points(cps));
  }
  auto items = in.iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  auto items = in.iterate(v);
  if (a.pos.empty()) {
    const Value* attr = nullptr;
    const Value* dflt = nullptr;
    for (const auto& [k, val] : a.kw) {
      if (k == "attribute") attr = &val;
      else if (k == "default") dflt = &val;
      else throw Error("Unexpected keyword argument '" + k + "'");
    }
    if (!attr) throw Error("map requires a filter argument");
    for (const auto& it : items) {
      Value x = get_path(in, it, *attr);
      out.push_back(x.is_undefined() && dflt ? *dflt : x);
    }
    return Value::list(std::move(out));
  }
  std::string name = soft_str(a.pos[0]);
  CallArgs rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  for (const auto& it : items) {
    CallArgs copy = rest;
    out.push_back(in.apply_filter(name, it, copy));
  }
  return Value::list(std::move(out));
}

Value select_impl(Interpreter& in, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  std::size_t first = by_attr ? 1 : 0;
  if (by_attr && a.pos.empty()) throw Error("selectattr/rejectattr need an attribute name");
  std::vector<Value> out;
  for (const auto& it : in.iterate(v)) {
    Value x = by_attr ? get_path(in, it, a.pos[0]) : it;
    bool ok;
    if (a.pos.size() > first) {
      CallArgs targs;
      targs.pos.assign(a.pos.begin() + static_cast<std::ptrdiff_t>(first) + 1, a.pos.end());
      targs.kw = a.kw;
      ok = in.apply_test(soft_str(a.pos[first]), x, targs);
    } else {
      ok = x.truthy();
    }
    if (ok == keep) out.push_back(it);
  }
  return Value::list(std::move(out));
}
Value f_select(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, true); }
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, false); }
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, false); }

Value f_indent(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("indent", a, {"width", "first", "blank"});
  const Value& width = p.get(0, Value(4));
  std::string ind = width.is_string() ? width.str()
                                      : std::string(static_cast<std::size_t>(std::clamp<int64_t>(to_int_arg(width, "width"), 0, 1 << 20)), ' ');
  bool first = p.get(1, Value(false)).truthy();
  bool blank = p.get(2, Value(false)).truthy();
  CallArgs none;
  Value lines_v = in.call(get_method(Value(soft_str(v) + "\n"), "splitlines"), none);
  const auto& lines = lines_v.items();
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i].str();
    if (i > 0) out += "\n" + ((blank || !line.empty()) ? ind : std::string());
    out += line;
    in.check_size(out.size());
  }
  if (first) out = ind + out;
  return Value(std::move(out));
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs& a) {
  Params("wordcount", a, {});
  int64_t n = 0;
  bool in_word = false;
  for (uint32_t c : to_code_points(soft_str(v))) {
    bool w = (c < 0x80) ? (std::isalnum(static_cast<int>(c)) || c == '_')
                        : !(py_isspace(c) || (c >= 0x2000 && c <= 0x206F) || (c >= 0x3000 && c <= 0x303F) ||
                            (c >= 0xFF00 && c <= 0xFF0F));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value(n);
}

Value f_batch(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("batch", a, {"linecount", "fill_with"});
  int64_t n = to_int_arg(p.require(0), "linecount");
  if (n <= 0) throw Error("batch: linecount must be positive");
  std::vector<Value> out, cur;
  for (const auto& it : in.iterate(v)) {
    cur.push_back(it);
    if (static_cast<int64_t>(cur.size()) == n) {
      out.push_back(Value::list(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (p.has(1) && !p.get(1, Value()).is_none())
      while (static_cast<int64_t>(cur.size()) < n) cur.push_back(p.get(1, Value()));
    out.push_back(Value::list(std::move(cur)));
  }
  return Value::list(std::move(out));
}

Value f_slice(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("slice", a, {"slices", "fill_with"});
  int64_t slices = to_int_arg(p.require(0), "slices");
  if (slices <= 0 || slices > 100000) throw Error("slice: slices must be in 1..100000");
  auto seq = in.iterate(v);
  auto length = static_cast<int64_t>(seq.size());
  int64_t per = length / slices, extra = length % slices, offset = 0;
  std::vector<Value> out;
  for (int64_t s = 0; s < slices; ++s) {
    int64_t start = offset + s * per;
    if (s < extra) ++offset;
    int64_t end = offset + (s + 1) * per;
    std::vector<Value> tmp(seq.begin() + start, seq.begin() + end);
    if (p.has(1) && !p.get(1, Value()).is_none() && s >= extra) tmp.push_back(p.get(1, Value()));
    out.push_back(Value::list(std::move(tmp)));
  }
  return Value::list(std::move(out));
}

Value f_attr(Interpreter& in, const Value& v, CallArgs& a) {
  Params p("attr", a, {"name"});
  std::string name = soft_str(p.require(0));
  if (v.is_namespace()) return in.getattr(v, name);
  Value m = get_method(v, name);
  return m.is_undefined() ? Value::undefined("'" + v.type_name() + " object' has no attribute '" + name + "'") : m;
}

const std::unordered_map<std::string, FilterFn>& filter_table() {
  static const std::unordered_map<std::string, FilterFn> table = {
      {"tojson", f_tojson},       {"default", f_default},     {"d", f_default},
      {"length", f_length},       {"count", f_length},        {"string", f_string},
      {"safe", f_safe},           {"escape", f_escape},       {"e", f_escape},
      {"trim", f_trim},           {"upper", f_upper},         {"lower", f_lower},
      {"capitalize", f_capitalize}, {"title", f_title},       {"replace", f_replace},
      {"first", f_first},         {"last", f_last},           {"join", f_join},
      {"list", f_list},           {"int", f_int},             {"float", f_float},
      {"abs", f_abs},             {"round", f_round},         {"items", f_items},
      {"dictsort", f_dictsort},   {"sort", f_sort},           {"unique", f_unique},
      {"min", f_min},             {"max", f_max},             {"sum", f_sum},
      {"reverse", f_reverse},     {"map", f_map},             {"select", f_select},
      {"reject", f_reject},       {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr},
      {"indent", f_indent},       {"wordcount", f_wordcount}, {"batch", f_batch},
      {"slice", f_slice},         {"attr", f_attr},
  };
  return table;
}

}  // namespace

const FilterFn* find_filter(const std::string& name) {
  const auto& t = filter_table();
  auto it = t.find(name);
  return it == t.end() ? nullptr : &it->second;
}

}  // namespace nemotron::text::jinja
