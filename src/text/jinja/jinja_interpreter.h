#pragma once
// Tree-walking renderer for parsed templates, with the semantics of transformers'
// ImmutableSandboxedEnvironment: default Undefined (prints "", iterates empty, raises on
// attribute access, calls and arithmetic), Jinja scoping (for-loop bodies and macros get
// their own frames, `if` does not, `namespace()` objects carry state out of loops),
// immutable lists/dicts (mutating methods raise), range() capped at 100000 items.
//
// Bounded: output and every intermediate string/list at most max_output_bytes, at most
// max_steps evaluation steps (statements, expressions, loop iterations), macro call depth
// at most max_call_depth. Every failure is a nemotron::Error whose message starts with
// "template render error (line N): ".
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/jinja/jinja_ast.h"
#include "text/jinja/jinja_parser.h"
#include "text/jinja/jinja_value.h"

namespace nemotron::text::jinja {

struct RenderLimits {
  std::size_t max_output_bytes = std::size_t{16} << 20;
  uint64_t max_steps = 2'000'000;
  int max_call_depth = 64;
};

// A parsed template. Construction validates filter and test names (as Jinja's compiler
// does), so an unknown filter is an error even in a branch that is never taken.
class Template {
 public:
  explicit Template(const std::string& source, const ParseLimits& limits = {});
  // globals: the render context (messages, tools, ...); builtins are added underneath.
  std::string render(const std::vector<std::pair<std::string, Value>>& context,
                     const RenderLimits& limits = {}) const;
  const Body& body() const { return body_; }

 private:
  Body body_;
};

class Interpreter {
 public:
  explicit Interpreter(const RenderLimits& limits);
  // Clears every frame and namespace the render created that is still alive: a macro keeps
  // the frames it was defined in (its closure), so a macro stored in one of them (every
  // top-level macro: the globals frame holds it) or in a namespace, or a namespace stored in
  // itself, is a reference cycle that would otherwise outlive the render, with every value
  // it reaches (the request's messages).
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;
  void set_global(const std::string& name, Value value);
  std::string render(const Body& body);

  // Hooks for the builtins.
  Value call(const Value& callee, CallArgs& args);
  Value apply_filter(const std::string& name, const Value& subject, CallArgs& args);
  bool apply_test(const std::string& name, const Value& subject, CallArgs& args);
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  std::vector<Value> iterate(const Value& v);  // Python iter(): dict keys, str chars
  void step();
  // Throws when a string or list of `size` bytes/items would exceed the output limit.
  void check_size(std::size_t size) const;
  const RenderLimits& limits() const { return limits_; }
  // Registers a namespace() object (the one mutable value kind) for clearing at the end.
  void track_namespace(const std::shared_ptr<DictObj>& ns);

 private:
  enum class Flow { Normal, Break, Continue };
  using Frame = std::unordered_map<std::string, Value>;

  RenderLimits limits_;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
  std::string* out_ = nullptr;
  std::vector<std::shared_ptr<Frame>> scopes_;  // [0] = globals and template top level
  // Every frame and namespace created, for ~Interpreter (weak: the acyclic ones die as usual).
  std::vector<std::weak_ptr<Frame>> frames_;
  std::vector<std::weak_ptr<DictObj>> namespaces_;

  std::shared_ptr<Frame> new_frame();

  Flow exec_body(const Body& body);
  Flow exec(const Stmt& s);
  void exec_for(const Stmt& s);
  void exec_set(const Stmt& s);
  Value define_macro(const Stmt& s);
  Value call_macro(const Stmt& s, std::vector<std::shared_ptr<Frame>> closure, CallArgs& args);
  std::string capture(const Body& body);
  void emit(const std::string& text);

  Value eval(const Expr& e);
  Value eval_filter(const Expr& e, const Value* block_subject);
  Value eval_binary(const std::string& op, const Value& a, const Value& b);
  Value eval_compare(const Expr& e);
  Value eval_slice(const Expr& e);
  CallArgs eval_args(const Expr& e, std::size_t first);
  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value value);
  void unpack_assign(const std::vector<std::string>& names, bool tuple, const Value& value);
  bool contains(const Value& container, const Value& item);
};

}  // namespace nemotron::text::jinja
