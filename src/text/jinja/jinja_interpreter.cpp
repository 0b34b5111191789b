#include "text/jinja/jinja_interpreter.h"

#include <cmath>
#include <functional>

#include "text/jinja/jinja_builtins.h"
#include "text/jinja/jinja_strings.h"

namespace nemotron::text::jinja {

namespace {

// An Error already carrying a line number; outer statements pass it through unchanged.
class RenderError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void type_error(const std::string& op, const Value& a, const Value& b) {
  throw Error("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
              b.type_name() + "'");
}

[[noreturn]] void overflow() { throw Error("integer overflow (values beyond 64 bits are not supported)"); }

int64_t add_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}
int64_t sub_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}
int64_t mul_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

// Jinja's compiler rejects unknown filters and tests, except inside an `if` statement or
// an inline if-expression ("soft" frames), where they fail only when evaluated. For-loop
// bodies, macros, call/filter/set blocks and `with` open non-soft frames again.
void check_names(const Expr& e, bool soft) {
  if (!soft && e.kind == Expr::Kind::Filter && !find_filter(e.name))
    throw Error("template syntax error (line " + std::to_string(e.line) + "): No filter named '" +
                e.name + "'.");
  if (!soft && e.kind == Expr::Kind::Test && !find_test(e.name))
    throw Error("template syntax error (line " + std::to_string(e.line) + "): No test named '" +
                e.name + "'.");
  bool child_soft = soft || e.kind == Expr::Kind::Cond;
  for (const auto& a : e.args)
    if (a) check_names(*a, child_soft);
  for (const auto& kv : e.kwargs) check_names(*kv.second, child_soft);
}

void check_names_body(const Body& body, bool soft) {
  for (const auto& s : body) {
    switch (s->kind) {
      case Stmt::Kind::If:
        for (const auto& c : s->conds) check_names(*c, true);
        for (const auto& b : s->bodies) check_names_body(b, true);
        check_names_body(s->else_body, true);
        break;
      case Stmt::Kind::For:
        check_names(*s->expr, soft);
        if (s->cond) check_names(*s->cond, false);
        check_names_body(s->body, false);
        check_names_body(s->else_body, soft);
        break;
      case Stmt::Kind::Print:
      case Stmt::Kind::Set:
      case Stmt::Kind::Do:
        check_names(*s->expr, soft);
        break;
      case Stmt::Kind::Scope:
        check_names_body(s->body, soft);
        break;
      default:
        if (s->expr) check_names(*s->expr, false);
        for (const auto& c : s->conds) check_names(*c, false);
        for (const auto& d : s->defaults)
          if (d) check_names(*d, false);
        check_names_body(s->body, false);
    }
  }
}

}  // namespace

Template::Template(const std::string& source, const ParseLimits& limits)
    : body_(parse_template(source, limits)) {
  check_names_body(body_, false);
}

std::string Template::render(const std::vector<std::pair<std::string, Value>>& context,
                             const RenderLimits& limits) const {
  Interpreter interp(limits);
  for (const auto& [k, v] : context) interp.set_global(k, v);
  return interp.render(body_);
}

Interpreter::Interpreter(const RenderLimits& limits) : limits_(limits) {
  scopes_.push_back(new_frame());
  install_globals(*this);
}

namespace {

// Drops the weak pointers that expired once they are the majority (amortized O(1) per entry).
template <class T>
void prune(std::vector<std::weak_ptr<T>>& v) {
  if (v.size() < 64 || (v.size() & (v.size() - 1)) != 0) return;  // at powers of two
  std::erase_if(v, [](const std::weak_ptr<T>& w) { return w.expired(); });
}

}  // namespace

Interpreter::~Interpreter() {
  // Moving the contents out before destroying them: destroying a value may free other frames.
  for (auto& w : frames_) {
    if (auto f = w.lock()) {
      Frame dead;
      dead.swap(*f);
    }
  }
  for (auto& w : namespaces_) {
    if (auto d = w.lock()) {
      DictObj dead;
      std::swap(dead.items, d->items);
      std::swap(dead.index, d->index);
    }
  }
}

std::shared_ptr<Interpreter::Frame> Interpreter::new_frame() {
  auto f = std::make_shared<Frame>();
  frames_.push_back(f);
  prune(frames_);
  return f;
}

void Interpreter::track_namespace(const std::shared_ptr<DictObj>& ns) {
  namespaces_.push_back(ns);
  prune(namespaces_);
}

void Interpreter::set_global(const std::string& name, Value value) { (*scopes_[0])[name] = std::move(value); }

std::string Interpreter::render(const Body& body) { return capture(body); }

void Interpreter::step() {
  if (++steps_ > limits_.max_steps)
    throw Error("template exceeded " + std::to_string(limits_.max_steps) + " evaluation steps");
}

void Interpreter::check_size(std::size_t size) const {
  if (size > limits_.max_output_bytes)
    throw Error("template output exceeds the limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
}

void Interpreter::emit(const std::string& text) {
  check_size(out_->size() + text.size());
  out_->append(text);
}

std::string Interpreter::capture(const Body& body) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    exec_body(body);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buffer;
}

Value Interpreter::lookup(const std::string& name) const {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    auto f = (*it)->find(name);
    if (f != (*it)->end()) return f->second;
  }
  return Value::undefined("'" + name + "' is undefined");
}

void Interpreter::assign(const std::string& name, Value value) { (*scopes_.back())[name] = std::move(value); }

void Interpreter::unpack_assign(const std::vector<std::string>& names, bool tuple, const Value& value) {
  if (!tuple) {
    assign(names[0], value);
    return;
  }
  std::vector<Value> items = iterate(value);
  if (items.size() != names.size())
    throw Error(items.size() > names.size()
                    ? "too many values to unpack (expected " + std::to_string(names.size()) + ")"
                    : "not enough values to unpack (expected " + std::to_string(names.size()) +
                          ", got " + std::to_string(items.size()) + ")");
  for (std::size_t i = 0; i < names.size(); ++i) assign(names[i], items[i]);
}

std::vector<Value> Interpreter::iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return v.items();
    case Value::Kind::Dict: {
      std::vector<Value> keys;
      for (const auto& kv : v.dict_obj().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> chars;
      auto cps = to_code_points(v.str());
      for (std::size_t i = 0; i < cps.size(); ++i) chars.emplace_back(from_code_points(cps, i, i + 1));
      return chars;
    }
    default: throw Error("'" + v.type_name() + "' object is not iterable");
  }
}

// ---------------------------------------------------------------- statements

Interpreter::Flow Interpreter::exec_body(const Body& body) {
  for (const auto& s : body) {
    Flow f = exec(*s);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  step();
  try {
    switch (s.kind) {
      case Stmt::Kind::Text: emit(s.text); break;
      case Stmt::Kind::Print: emit(eval(*s.expr).to_str()); break;
      case Stmt::Kind::If:
        for (std::size_t i = 0; i < s.conds.size(); ++i)
          if (eval(*s.conds[i]).truthy()) return exec_body(s.bodies[i]);
        return exec_body(s.else_body);
      case Stmt::Kind::For: exec_for(s); break;
      case Stmt::Kind::Set: exec_set(s); break;
      case Stmt::Kind::SetBlock: assign(s.targets[0], Value(capture(s.body))); break;
      case Stmt::Kind::Macro: assign(s.name, define_macro(s)); break;
      case Stmt::Kind::CallBlock: {
        const Stmt* stmt = &s;
        auto closure = scopes_;
        Value caller = Value::func("caller", [this, stmt, closure](Interpreter&, CallArgs& args) {
          return call_macro(*stmt, closure, args);
        });
        CallArgs args = eval_args(*s.expr, 1);
        args.kw.emplace_back("caller", caller);
        emit(call(eval(*s.expr->args[0]), args).to_str());
        break;
      }
      case Stmt::Kind::FilterBlock: {
        Value text(capture(s.body));
        emit(eval_filter(*s.expr, &text).to_str());
        break;
      }
      case Stmt::Kind::Break: return Flow::Break;
      case Stmt::Kind::Continue: return Flow::Continue;
      case Stmt::Kind::Do: eval(*s.expr); break;
      case Stmt::Kind::With: {
        auto frame = new_frame();
        for (std::size_t i = 0; i < s.targets.size(); ++i) (*frame)[s.targets[i]] = eval(*s.conds[i]);
        scopes_.push_back(frame);
        Flow f;
        try {
          f = exec_body(s.body);
        } catch (...) {
          scopes_.pop_back();
          throw;
        }
        scopes_.pop_back();
        return f;
      }
      case Stmt::Kind::Scope: return exec_body(s.body);
    }
  } catch (const RenderError&) {
    throw;
  } catch (const Error& e) {
    throw RenderError("template render error (line " + std::to_string(s.line) + "): " + e.what());
  }
  return Flow::Normal;
}

void Interpreter::exec_for(const Stmt& s) {
  std::vector<Value> items = iterate(eval(*s.expr));
  if (s.cond) {
    std::vector<Value> kept;
    auto frame = new_frame();
    scopes_.push_back(frame);
    try {
      for (auto& item : items) {
        step();
        unpack_assign(s.targets, s.target_tuple, item);
        if (eval(*s.cond).truthy()) kept.push_back(item);
      }
    } catch (...) {
      scopes_.pop_back();
      throw;
    }
    scopes_.pop_back();
    items = std::move(kept);
  }
  if (items.empty()) {
    exec_body(s.else_body);
    return;
  }
  const auto n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    step();
    auto frame = new_frame();
    scopes_.push_back(frame);
    Flow f;
    try {
      auto loop = std::make_shared<DictObj>();
      loop->set(Value("index"), Value(i + 1));
      loop->set(Value("index0"), Value(i));
      loop->set(Value("revindex"), Value(n - i));
      loop->set(Value("revindex0"), Value(n - i - 1));
      loop->set(Value("first"), Value(i == 0));
      loop->set(Value("last"), Value(i == n - 1));
      loop->set(Value("length"), Value(n));
      loop->set(Value("depth"), Value(1));
      loop->set(Value("depth0"), Value(0));
      loop->set(Value("previtem"), i > 0 ? items[static_cast<std::size_t>(i - 1)]
                                           : Value::undefined("there is no previous item"));
      loop->set(Value("nextitem"), i + 1 < n ? items[static_cast<std::size_t>(i + 1)]
                                               : Value::undefined("there is no next item"));
      loop->set(Value("cycle"), Value::func("cycle", [i](Interpreter&, CallArgs& a) {
                  if (a.pos.empty()) throw Error("no items for cycling given");
                  return a.pos[static_cast<std::size_t>(i) % a.pos.size()];
                }));
      (*frame)["loop"] = Value::dict(loop);
      unpack_assign(s.targets, s.target_tuple, items[static_cast<std::size_t>(i)]);
      f = exec_body(s.body);
    } catch (...) {
      scopes_.pop_back();
      throw;
    }
    scopes_.pop_back();
    if (f == Flow::Break) break;
  }
}

void Interpreter::exec_set(const Stmt& s) {
  Value v = eval(*s.expr);
  if (!s.attr.empty()) {
    Value target = lookup(s.targets[0]);
    if (!target.is_namespace()) throw Error("cannot assign attribute on non-namespace object");
    target.namespace_attrs().set(Value(s.attr), std::move(v));
    return;
  }
  unpack_assign(s.targets, s.target_tuple, v);
}

Value Interpreter::define_macro(const Stmt& s) {
  const Stmt* stmt = &s;
  auto closure = scopes_;
  return Value::func(s.name, [this, stmt, closure](Interpreter&, CallArgs& args) {
    return call_macro(*stmt, closure, args);
  });
}

Value Interpreter::call_macro(const Stmt& s, std::vector<std::shared_ptr<Frame>> closure, CallArgs& args) {
  if (call_depth_ >= limits_.max_call_depth)
    throw Error("macro calls nested deeper than " + std::to_string(limits_.max_call_depth));
  const std::string& name = s.kind == Stmt::Kind::Macro ? s.name : std::string("caller");
  if (args.pos.size() > s.params.size())
    throw Error("macro '" + name + "' takes not more than " + std::to_string(s.params.size()) +
                " argument(s)");
  auto frame = new_frame();
  std::vector<bool> bound(s.params.size(), false);
  for (std::size_t i = 0; i < args.pos.size(); ++i) {
    (*frame)[s.params[i]] = args.pos[i];
    bound[i] = true;
  }
  for (auto& [k, v] : args.kw) {
    bool found = false;
    for (std::size_t i = 0; i < s.params.size(); ++i) {
      if (s.params[i] != k) continue;
      if (bound[i]) throw Error("macro '" + name + "' got multiple values for argument '" + k + "'");
      (*frame)[k] = v;
      bound[i] = found = true;
    }
    if (!found) {
      if (k != "caller") throw Error("macro '" + name + "' takes no keyword argument '" + k + "'");
      (*frame)[k] = v;
    }
  }
  auto saved_scopes = std::move(scopes_);
  scopes_ = std::move(closure);
  scopes_.push_back(frame);
  ++call_depth_;
  std::string out;
  try {
    for (std::size_t i = 0; i < s.params.size(); ++i) {
      if (bound[i]) continue;
      (*frame)[s.params[i]] = s.defaults[i] ? eval(*s.defaults[i])
                                            : Value::undefined("'" + s.params[i] + "' is undefined");
    }
    out = capture(s.body);
  } catch (...) {
    --call_depth_;
    scopes_ = std::move(saved_scopes);
    throw;
  }
  --call_depth_;
  scopes_ = std::move(saved_scopes);
  return Value(std::move(out));
}

// ---------------------------------------------------------------- expressions

CallArgs Interpreter::eval_args(const Expr& e, std::size_t first) {
  CallArgs args;
  for (std::size_t i = first; i < e.args.size(); ++i) args.pos.push_back(eval(*e.args[i]));
  for (const auto& [k, v] : e.kwargs) args.kw.emplace_back(k, eval(*v));
  return args;
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) callee.raise_undefined();
  if (!callee.is_func()) throw Error("'" + callee.type_name() + "' object is not callable");
  step();
  return callee.func_obj().fn(*this, args);
}

Value Interpreter::apply_filter(const std::string& name, const Value& subject, CallArgs& args) {
  const FilterFn* f = find_filter(name);
  if (!f) throw Error("No filter named '" + name + "'.");
  return (*f)(*this, subject, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& subject, CallArgs& args) {
  const TestFn* t = find_test(name);
  if (!t) throw Error("No test named '" + name + "'.");
  return (*t)(*this, subject, args);
}

static std::string object_desc(const Value& obj) {
  if (obj.is_none()) return "None";
  return "'" + obj.type_name() + " object'";
}

Value Interpreter::getattr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) obj.raise_undefined();
  auto missing = [&] { return Value::undefined(object_desc(obj) + " has no attribute '" + name + "'"); };
  if (name.size() >= 1 && name[0] == '_') return missing();  // sandbox: no private attributes
  if (obj.is_namespace()) {
    const Value* v = obj.namespace_attrs().find(Value(name));
    return v ? *v : missing();
  }
  Value m = get_method(obj, name);
  if (!m.is_undefined()) return m;
  if (obj.is_dict()) {
    const Value* v = obj.dict_obj().find(Value(name));
    if (v) return *v;
  }
  return missing();
}

Value Interpreter::getitem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) obj.raise_undefined();
  if (obj.is_dict()) {
    if (key.is_list() && !key.list_obj().tuple) throw Error("unhashable type: 'list'");
    if (key.is_dict()) throw Error("unhashable type: 'dict'");
    const Value* v = (key.is_string() || key.is_number() || key.is_none() || key.is_list())
                         ? obj.dict_obj().find(key) : nullptr;
    if (v) return *v;
  } else if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      auto n = static_cast<int64_t>(obj.items().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.items()[static_cast<std::size_t>(i)];
    } else {
      auto cps = to_code_points(obj.str());
      auto n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value(from_code_points(cps, static_cast<std::size_t>(i), static_cast<std::size_t>(i) + 1));
    }
    return Value::undefined(obj.type_name() + " object has no element " + std::to_string(key.as_int()));
  }
  if (key.is_string()) return getattr(obj, key.str());
  return Value::undefined((obj.is_none() ? std::string("None") : obj.type_name() + " object") +
                          " has no element " + key.repr());
}

bool Interpreter::contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      if (!item.is_string())
        throw Error("'in <string>' requires string as left operand, not " + item.type_name());
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::List:
      for (const auto& x : container.items())
        if (values_equal(x, item)) return true;
      return false;
    case Value::Kind::Dict: return container.dict_obj().find(item) != nullptr;
    default: throw Error("argument of type '" + container.type_name() + "' is not iterable");
  }
}

Value Interpreter::eval_binary(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) a.raise_undefined();
  if (b.is_undefined()) b.raise_undefined();
  const bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
  const bool nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) return Value(add_checked(a.as_int(), b.as_int()));
    if (nums) return Value(a.as_float() + b.as_float());
    if (a.is_string() && b.is_string()) {
      check_size(a.str().size() + b.str().size());
      return Value(a.str() + b.str());
    }
    if (a.is_list() && b.is_list() && a.list_obj().tuple == b.list_obj().tuple) {
      check_size(a.items().size() + b.items().size());
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(items), a.list_obj().tuple);
    }
    type_error(op, a, b);
  }
  if (op == "-") {
    if (ints) return Value(sub_checked(a.as_int(), b.as_int()));
    if (nums) return Value(a.as_float() - b.as_float());
    type_error(op, a, b);
  }
  if (op == "*") {
    if (ints) return Value(mul_checked(a.as_int(), b.as_int()));
    if (nums) return Value(a.as_float() * b.as_float());
    const Value* seq = (a.is_string() || a.is_list()) ? &a : (b.is_string() || b.is_list()) ? &b : nullptr;
    const Value* count = seq == &a ? &b : &a;
    if (seq && (count->is_int() || count->is_bool())) {
      int64_t n = std::max<int64_t>(0, count->as_int());
      std::size_t unit = seq->is_string() ? seq->str().size() : seq->items().size();
      // An empty sequence repeated any number of times is empty (at once, as in Python: a
      // count of 10^13 must not loop).
      if (unit == 0) n = 0;
      if (unit && static_cast<uint64_t>(n) > limits_.max_output_bytes / unit + 1) check_size(SIZE_MAX);
      check_size(unit * static_cast<std::size_t>(n));
      if (seq->is_string()) {
        std::string out;
        for (int64_t i = 0; i < n; ++i) out += seq->str();
        return Value(std::move(out));
      }
      std::vector<Value> out;
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq->items().begin(), seq->items().end());
      return Value::list(std::move(out), seq->list_obj().tuple);
    }
    type_error(op, a, b);
  }
  if (!nums) type_error(op, a, b);
  if (op == "/") {
    if (b.as_float() == 0) throw Error("division by zero");
    return Value(a.as_float() / b.as_float());
  }
  if (op == "//" || op == "%") {
    if (ints) {
      if (b.as_int() == 0) throw Error("integer division or modulo by zero");
      if (a.as_int() == INT64_MIN && b.as_int() == -1) overflow();
      int64_t q = a.as_int() / b.as_int(), m = a.as_int() % b.as_int();
      if (m != 0 && ((m < 0) != (b.as_int() < 0))) {
        --q;
        m += b.as_int();
      }
      return Value(op == "//" ? q : m);
    }
    double x = a.as_float(), y = b.as_float();
    if (y == 0) throw Error("float division by zero");
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    if (op == "%") return Value(m);
    return Value(std::floor((x - m) / y + 0.5));
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), acc = 1;
      while (e > 0) {
        if (e & 1) acc = mul_checked(acc, base);
        e >>= 1;
        if (e) base = mul_checked(base, base);
      }
      return Value(acc);
    }
    if (a.as_float() == 0 && b.as_float() < 0) throw Error("0.0 cannot be raised to a negative power");
    return Value(std::pow(a.as_float(), b.as_float()));
  }
  throw Error("unknown operator " + op);
}

Value Interpreter::eval_compare(const Expr& e) {
  Value left = eval(*e.args[0]);
  for (std::size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1]);
    const std::string& op = e.ops[i];
    bool ok;
    if (op == "==") ok = values_equal(left, right);
    else if (op == "!=") ok = !values_equal(left, right);
    else if (op == "in") ok = contains(right, left);
    else if (op == "notin") ok = !contains(right, left);
    else {
      if (left.is_undefined()) left.raise_undefined();
      if (right.is_undefined()) right.raise_undefined();
      if (op == "<") ok = values_less(left, right);
      else if (op == ">") ok = values_less(right, left);
      else if (op == "<=") ok = !values_less(right, left);
      else ok = !values_less(left, right);
    }
    if (!ok) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Interpreter::eval_slice(const Expr& e) {
  Value obj = eval(*e.args[0]);
  if (obj.is_undefined()) obj.raise_undefined();
  auto part = [&](int k, bool& present) -> int64_t {
    present = false;
    if (!e.args[static_cast<std::size_t>(k)]) return 0;
    Value v = eval(*e.args[static_cast<std::size_t>(k)]);
    if (v.is_none()) return 0;
    if (!v.is_int() && !v.is_bool())
      throw Error("slice indices must be integers or None");
    present = true;
    return v.as_int();
  };
  bool hs, he, hst;
  int64_t start = part(1, hs), stop = part(2, he), stepv = part(3, hst);
  if (!hst) stepv = 1;
  if (stepv == 0) throw Error("slice step cannot be zero");
  std::vector<uint32_t> cps;
  int64_t n;
  if (obj.is_string()) {
    cps = to_code_points(obj.str());
    n = static_cast<int64_t>(cps.size());
  } else if (obj.is_list()) {
    n = static_cast<int64_t>(obj.items().size());
  } else {
    throw Error("'" + obj.type_name() + "' object is not subscriptable");
  }
  auto clamp = [&](int64_t v, bool present, int64_t dflt) {
    if (!present) return dflt;
    if (v < 0) v += n;
    if (stepv > 0) return std::clamp<int64_t>(v, 0, n);
    return std::clamp<int64_t>(v, -1, n - 1);
  };
  int64_t b = clamp(start, hs, stepv > 0 ? 0 : n - 1);
  int64_t en = clamp(stop, he, stepv > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t i = b; stepv > 0 ? i < en : i > en; i += stepv) idx.push_back(i);
  if (obj.is_string()) {
    std::vector<uint32_t> out;
    for (auto i : idx) out.push_back(cps[static_cast<std::size_t>(i)]);
    return Value(from_code_points(out));
  }
  std::vector<Value> out;
  for (auto i : idx) out.push_back(obj.items()[static_cast<std::size_t>(i)]);
  return Value::list(std::move(out), obj.list_obj().tuple);
}

Value Interpreter::eval_filter(const Expr& e, const Value* block_subject) {
  Value subject = e.args[0] ? (e.args[0]->kind == Expr::Kind::Filter && !e.args[0]->args[0] && block_subject
                                   ? eval_filter(*e.args[0], block_subject)
                                   : eval(*e.args[0]))
                            : (block_subject ? *block_subject : Value::undefined());
  CallArgs args = eval_args(e, 1);
  return apply_filter(e.name, subject, args);
}

Value Interpreter::eval(const Expr& e) {
  step();
  switch (e.kind) {
    case Expr::Kind::Const: return e.value;
    case Expr::Kind::Name: return lookup(e.name);
    case Expr::Kind::Attr: return getattr(eval(*e.args[0]), e.name);
    case Expr::Kind::Item: {
      Value obj = eval(*e.args[0]);
      return getitem(obj, eval(*e.args[1]));
    }
    case Expr::Kind::Slice: return eval_slice(e);
    case Expr::Kind::Call: {
      Value callee = eval(*e.args[0]);
      CallArgs args = eval_args(e, 1);
      return call(callee, args);
    }
    case Expr::Kind::Filter: return eval_filter(e, nullptr);
    case Expr::Kind::Test: {
      Value subject = eval(*e.args[0]);
      CallArgs args = eval_args(e, 1);
      return Value(apply_test(e.name, subject, args) != e.negated);
    }
    case Expr::Kind::Neg:
    case Expr::Kind::Pos: {
      Value v = eval(*e.args[0]);
      if (v.is_undefined()) v.raise_undefined();
      if (!v.is_number()) throw Error("bad operand type for unary " + std::string(e.kind == Expr::Kind::Neg ? "-" : "+") + ": '" + v.type_name() + "'");
      if (e.kind == Expr::Kind::Pos) return v.is_bool() ? Value(v.as_int()) : v;
      if (v.is_float()) return Value(-v.as_float());
      if (v.as_int() == INT64_MIN) overflow();
      return Value(-v.as_int());
    }
    case Expr::Kind::Not: return Value(!eval(*e.args[0]).truthy());
    case Expr::Kind::Binary: {
      Value a = eval(*e.args[0]);
      Value b = eval(*e.args[1]);
      return eval_binary(e.name, a, b);
    }
    case Expr::Kind::And: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    case Expr::Kind::Or: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    case Expr::Kind::Concat: {
      std::string out;
      for (const auto& a : e.args) {
        out += eval(*a).to_str();
        check_size(out.size());
      }
      return Value(std::move(out));
    }
    case Expr::Kind::Compare: return eval_compare(e);
    case Expr::Kind::Cond:
      if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
      if (e.args[2]) return eval(*e.args[2]);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
    case Expr::Kind::List:
    case Expr::Kind::Tuple: {
      std::vector<Value> items;
      for (const auto& a : e.args) items.push_back(eval(*a));
      return Value::list(std::move(items), e.kind == Expr::Kind::Tuple);
    }
    case Expr::Kind::Dict: {
      auto d = std::make_shared<DictObj>();
      for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        d->set(k, eval(*e.args[i + 1]));
      }
      return Value::dict(std::move(d));
    }
  }
  return Value::undefined();
}

}  // namespace nemotron::text::jinja
