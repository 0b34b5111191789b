#pragma once
// The one intermediate representation every front end (JSON Schema, regex, EBNF, the
// composition helpers) compiles to: rules of alternatives of sequences of elements, where an
// element is a set of bytes or a reference to a rule. Everything works on BYTES: a character
// class over code points becomes alternatives of UTF-8 byte-range sequences (charset.h).
//
// Front ends build `Expr` trees (sequence, alternation, repetition, byte sets, rule
// references); GrammarBuilder lowers each rule body to alternatives, adding helper rules for
// nested alternations and repetitions (right-recursive, so the matcher's tail calls keep its
// stacks flat), and `build` checks the result (every rule defined, no left recursion, the
// root matches some text) into an immutable Grammar.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nemotron::text::grammar {

class Grammar;

// 256-bit set of byte values.
struct ByteSet {
  std::array<uint64_t, 4> w{};
  void set(unsigned b) { w[b >> 6] |= uint64_t{1} << (b & 63); }
  void set_range(unsigned lo, unsigned hi) {
    for (unsigned b = lo; b <= hi; ++b) set(b);
  }
  bool test(unsigned b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  bool empty() const { return (w[0] | w[1] | w[2] | w[3]) == 0; }
  bool operator==(const ByteSet& o) const { return w == o.w; }
  static ByteSet single(unsigned b) {
    ByteSet s;
    s.set(b);
    return s;
  }
  static ByteSet range(unsigned lo, unsigned hi) {
    ByteSet s;
    s.set_range(lo, hi);
    return s;
  }
};

// The most copies one repetition may unroll to (GrammarBuilder refuses more).
constexpr int32_t kMaxRepeatCount = 10000;

// A regular-ish expression over bytes and rule references.
struct Expr {
  enum class Kind : uint8_t { Seq, Alt, Bytes, Ref, Repeat };
  Kind kind = Kind::Seq;  // a Seq without kids is the empty string; an Alt without kids matches nothing
  ByteSet bytes;          // Bytes
  int32_t rule = -1;      // Ref
  int32_t min = 0;        // Repeat: kids[0] repeated min..max times
  int32_t max = 0;        // Repeat: -1 = unbounded
  std::vector<Expr> kids;

  static Expr empty() { return Expr{}; }
  static Expr nothing() {
    Expr e;
    e.kind = Kind::Alt;
    return e;
  }
  static Expr byteset(const ByteSet& s) {
    Expr e;
    e.kind = Kind::Bytes;
    e.bytes = s;
    return e;
  }
  static Expr byte(unsigned b) { return byteset(ByteSet::single(b)); }
  static Expr literal(std::string_view text);
  static Expr seq(std::vector<Expr> parts);
  static Expr alt(std::vector<Expr> options);
  static Expr ref(int32_t rule) {
    Expr e;
    e.kind = Kind::Ref;
    e.rule = rule;
    return e;
  }
  // Normalized (ir.cpp): a body that can be empty, and a repetition of a repetition, are
  // rewritten to the unambiguous equivalent.
  static Expr repeat(Expr body, int32_t min, int32_t max);
  static Expr opt(Expr body) { return repeat(std::move(body), 0, 1); }
  static Expr star(Expr body) { return repeat(std::move(body), 0, -1); }
  static Expr plus(Expr body) { return repeat(std::move(body), 1, -1); }

  bool is_nothing() const { return kind == Kind::Alt && kids.empty(); }
  bool is_empty() const { return kind == Kind::Seq && kids.empty(); }
};

// Lowered form: an element is one int32. >= 0: a reference to that rule; kEnd: the end of a
// sequence; <= -2: byte set number (-2 - v) of the grammar's set table.
constexpr int32_t kEnd = -1;
inline bool elem_is_ref(int32_t v) { return v >= 0; }
inline bool elem_is_bytes(int32_t v) { return v <= -2; }
inline int32_t elem_set(int32_t v) { return -2 - v; }

class GrammarBuilder {
 public:
  // A new rule, to be defined later (forward references, recursion). Names are for error
  // messages and dumps only; they need not be unique.
  int32_t declare(const std::string& name);
  void define(int32_t rule, const Expr& body);
  int32_t add(const std::string& name, const Expr& body) {
    const int32_t r = declare(name);
    define(r, body);
    return r;
  }
  bool defined(int32_t rule) const { return defined_[static_cast<std::size_t>(rule)]; }
  const std::string& name(int32_t rule) const { return names_[static_cast<std::size_t>(rule)]; }
  // Copies every rule of `g` (renamed "<prefix><name>"); returns the copy of g's root.
  int32_t import(const Grammar& g, const std::string& prefix = "");

  // Checks and freezes. Throws nemotron::Error naming the rule at fault: a rule referenced but
  // never defined, left recursion, or a root that matches no text (`what` names the grammar in
  // that message, e.g. "JSON schema").
  std::shared_ptr<const Grammar> build(int32_t root, const std::string& what = "grammar") const;

  // Repetitions are unrolled; more than this many copies of one body is refused.
  static constexpr int32_t kMaxRepeat = kMaxRepeatCount;

 private:
  int32_t set_index(const ByteSet& s);
  void lower_alts(const Expr& e, const std::string& name, std::vector<std::vector<int32_t>>& alts);
  void lower_seq(const Expr& e, const std::string& name, std::vector<int32_t>& out);
  int32_t helper(const std::string& name, const Expr& body);
  int32_t single_element(const Expr& e, const std::string& name);

  std::vector<std::string> names_;
  std::vector<std::vector<std::vector<int32_t>>> rules_;  // rule -> alternatives -> elements
  std::vector<bool> defined_;
  std::vector<ByteSet> sets_;
  std::unordered_map<std::string, int32_t> set_ids_;  // key: the 32 bytes of the set
};

// The frozen, checked grammar. Sequences are laid out in one array: a rule's alternative
// starts at a position of `elems()` and runs to the next kEnd. Immutable and shareable
// between threads; the per-vocabulary automaton it lazily builds (automaton.h) is guarded
// by a mutex.
class Grammar {
 public:
  int32_t root() const { return root_; }
  std::size_t num_rules() const { return alts_.size(); }
  const std::string& rule_name(int32_t r) const { return names_[static_cast<std::size_t>(r)]; }
  const std::vector<int32_t>& alternatives(int32_t r) const { return alts_[static_cast<std::size_t>(r)]; }
  const std::vector<int32_t>& elems() const { return elems_; }
  const ByteSet& set(int32_t i) const { return sets_[static_cast<std::size_t>(i)]; }
  std::size_t num_sets() const { return sets_.size(); }
  // Fewest bytes that complete the sequence from position p to its end (kEnd: 0).
  int64_t min_len_from(int32_t p) const { return min_from_[static_cast<std::size_t>(p)]; }
  int64_t min_len_rule(int32_t r) const { return min_rule_[static_cast<std::size_t>(r)]; }
  // Human-readable EBNF-like dump (tests, debugging).
  std::string dump() const;

  // Composition helpers (the tool-call format: literal tags around schema-typed values).
  static std::shared_ptr<const Grammar> literal(std::string_view text);
  static std::shared_ptr<const Grammar> sequence(const std::vector<std::shared_ptr<const Grammar>>& parts);
  static std::shared_ptr<const Grammar> alternatives(const std::vector<std::shared_ptr<const Grammar>>& options);
  static std::shared_ptr<const Grammar> repeat(const std::shared_ptr<const Grammar>& body, int32_t min, int32_t max);
  // Exactly the special token `id` (Vocabulary::special_token_bytes), e.g. <tool_call>.
  static std::shared_ptr<const Grammar> token(int32_t id);

  // Internal: the shared automaton slot (automaton.cpp).
  struct Cache;
  Cache& cache() const { return *cache_; }
  ~Grammar();
  Grammar();

 private:
  friend class GrammarBuilder;
  int32_t root_ = 0;
  std::vector<std::string> names_;
  std::vector<std::vector<int32_t>> alts_;
  std::vector<int32_t> elems_;
  std::vector<ByteSet> sets_;
  std::vector<int64_t> min_from_, min_rule_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace nemotron::text::grammar
