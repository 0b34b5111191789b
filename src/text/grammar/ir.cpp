#include "text/grammar/ir.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>

#include "text/grammar/automaton.h"
#include "text/grammar/vocabulary.h"
#include "util/error.h"

namespace nemotron::text::grammar {

namespace {
constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
}

Expr Expr::literal(std::string_view text) {
  Expr e;
  for (char c : text) e.kids.push_back(byte(static_cast<unsigned char>(c)));
  return e;
}

Expr Expr::seq(std::vector<Expr> parts) {
  Expr e;
  for (Expr& p : parts) {
    if (p.is_nothing()) return nothing();
    if (p.kind == Kind::Seq) {
      for (Expr& k : p.kids) e.kids.push_back(std::move(k));
    } else {
      e.kids.push_back(std::move(p));
    }
  }
  if (e.kids.size() == 1) return std::move(e.kids[0]);
  return e;
}

// Flattens nested alternations and merges the single-byte-set options into one set.
Expr Expr::alt(std::vector<Expr> options) {
  Expr e;
  e.kind = Kind::Alt;
  ByteSet merged;
  bool have_bytes = false;
  std::function<void(Expr&)> add = [&](Expr& o) {
    if (o.kind == Kind::Alt) {
      for (Expr& k : o.kids) add(k);
    } else if (o.kind == Kind::Bytes) {
      for (int i = 0; i < 4; ++i) merged.w[static_cast<std::size_t>(i)] |= o.bytes.w[static_cast<std::size_t>(i)];
      have_bytes = true;
    } else {
      e.kids.push_back(std::move(o));
    }
  };
  for (Expr& o : options) add(o);
  if (have_bytes && !merged.empty()) e.kids.insert(e.kids.begin(), byteset(merged));
  if (e.kids.size() == 1) return std::move(e.kids[0]);
  return e;
}

namespace {

// True only when `e` surely matches the empty string (a rule reference counts as not: its
// rule may not be defined yet).
bool surely_nullable(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::Seq:
      return std::all_of(e.kids.begin(), e.kids.end(), surely_nullable);
    case Expr::Kind::Alt:
      return std::any_of(e.kids.begin(), e.kids.end(), surely_nullable);
    case Expr::Kind::Repeat:
      return e.min == 0 || surely_nullable(e.kids[0]);
    case Expr::Kind::Bytes:
    case Expr::Kind::Ref:
      return false;
  }
  return false;
}

// A version of `e` without the empty string: L(e) minus "" <= L(result) <= L(e) (a rule
// reference is kept as it is, empty string or not). Used on repetition bodies: x{m,n} of a
// body that matches "" is the same language as (x without ""){0,n}, and the latter has one
// way to split a text into copies where the former has as many as there are copies left to
// be empty, which the matcher pays for with one stack per way (p?{10000}: 10,000 stacks).
Expr without_empty(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::Bytes:
    case Expr::Kind::Ref:
      return e;
    case Expr::Kind::Alt: {
      std::vector<Expr> kids;
      for (const Expr& k : e.kids) kids.push_back(without_empty(k));
      return Expr::alt(std::move(kids));
    }
    case Expr::Kind::Seq: {
      if (!surely_nullable(e)) return e;
      // Every part can be empty: the text's first non-empty part is part i.
      constexpr std::size_t kMaxParts = 32;  // beyond, kept as is (correct, only ambiguous)
      if (e.kids.size() > kMaxParts) return e;
      std::vector<Expr> options;
      for (std::size_t i = 0; i < e.kids.size(); ++i) {
        std::vector<Expr> parts{without_empty(e.kids[i])};
        for (std::size_t j = i + 1; j < e.kids.size(); ++j) parts.push_back(e.kids[j]);
        options.push_back(Expr::seq(std::move(parts)));
      }
      return Expr::alt(std::move(options));
    }
    case Expr::Kind::Repeat:
      // Expr::repeat has made a body that can be empty non-empty, and min 0: 1..max copies.
      return Expr::repeat(e.kids[0], std::max<int32_t>(e.min, 1), e.max);
  }
  return e;
}

}  // namespace

// Normalizes two shapes whose unrolled form is ambiguous (many stacks per text):
//   - a body that can be empty: x{m,n} = (x without ""){0,n};
//   - a repetition of a repetition with at most one required copy: (y{a,b}){c,d} with a <= 1
//     is y{a*c, b*d} (the counts k*[a,b] for k in [c,d] cover every integer in between).
Expr Expr::repeat(Expr body, int32_t min, int32_t max) {
  if (max == 0) return empty();
  if (body.is_nothing()) return min == 0 ? empty() : nothing();
  if (body.is_empty()) return empty();
  if (surely_nullable(body)) {
    body = without_empty(body);
    min = 0;
    if (body.is_nothing()) return empty();
  }
  if (body.kind == Kind::Repeat && body.min <= 1) {
    const int64_t lo = int64_t{body.min} * min;
    const int64_t hi = (body.max < 0 || max < 0) ? -1 : int64_t{body.max} * max;
    // Past the count limit the product is left nested (lowering refuses counts over the
    // limit, and the nested form is within it).
    if (hi <= kMaxRepeatCount && lo <= kMaxRepeatCount) {
      Expr inner = std::move(body.kids[0]);
      return repeat(std::move(inner), static_cast<int32_t>(lo), static_cast<int32_t>(hi));
    }
  }
  Expr e;
  e.kind = Kind::Repeat;
  e.min = min;
  e.max = max;
  e.kids.push_back(std::move(body));
  return e;
}

// ---- GrammarBuilder ---------------------------------------------------------------------

int32_t GrammarBuilder::declare(const std::string& name) {
  names_.push_back(name);
  rules_.emplace_back();
  defined_.push_back(false);
  return static_cast<int32_t>(names_.size() - 1);
}

int32_t GrammarBuilder::set_index(const ByteSet& s) {
  std::string key(sizeof s.w, '\0');
  std::memcpy(key.data(), s.w.data(), sizeof s.w);
  auto it = set_ids_.find(key);
  if (it != set_ids_.end()) return it->second;
  const auto id = static_cast<int32_t>(sets_.size());
  sets_.push_back(s);
  set_ids_.emplace(std::move(key), id);
  return id;
}

void GrammarBuilder::define(int32_t rule, const Expr& body) {
  auto& alts = rules_[static_cast<std::size_t>(rule)];
  alts.clear();
  const std::string n = names_[static_cast<std::size_t>(rule)];
  std::vector<std::vector<int32_t>> out;
  lower_alts(body, n, out);
  rules_[static_cast<std::size_t>(rule)] = std::move(out);
  defined_[static_cast<std::size_t>(rule)] = true;
}

int32_t GrammarBuilder::helper(const std::string& name, const Expr& body) {
  const int32_t r = declare(name);
  define(r, body);
  return r;
}

void GrammarBuilder::lower_alts(const Expr& e, const std::string& name, std::vector<std::vector<int32_t>>& alts) {
  if (e.kind == Expr::Kind::Alt) {
    for (const Expr& k : e.kids) lower_alts(k, name, alts);
    return;
  }
  std::vector<int32_t> seq;
  lower_seq(e, name, seq);
  alts.push_back(std::move(seq));
}

// The one element standing for `e` (a byte set, a rule reference, or a helper rule).
int32_t GrammarBuilder::single_element(const Expr& e, const std::string& name) {
  if (e.kind == Expr::Kind::Bytes) return -2 - set_index(e.bytes);
  if (e.kind == Expr::Kind::Ref) return e.rule;
  return helper(name, e);
}

void GrammarBuilder::lower_seq(const Expr& e, const std::string& name, std::vector<int32_t>& out) {
  switch (e.kind) {
    case Expr::Kind::Seq:
      for (const Expr& k : e.kids) lower_seq(k, name, out);
      return;
    case Expr::Kind::Bytes:
      out.push_back(-2 - set_index(e.bytes));
      return;
    case Expr::Kind::Ref:
      out.push_back(e.rule);
      return;
    case Expr::Kind::Alt:
      if (e.kids.size() == 1) {
        lower_seq(e.kids[0], name, out);
      } else {
        out.push_back(helper(name + "/alt", e));
      }
      return;
    case Expr::Kind::Repeat: {
      if (e.min > kMaxRepeat || e.max > kMaxRepeat)
        throw Error("grammar rule '" + name + "': repetition count " + std::to_string(std::max(e.min, e.max)) +
                    " is over the limit of " + std::to_string(kMaxRepeat));
      const int32_t x = single_element(e.kids[0], name + "/item");
      for (int32_t i = 0; i < e.min; ++i) out.push_back(x);
      if (e.max < 0) {
        // S ::= x S | ""   (the recursive reference is a tail call)
        const int32_t s = declare(name + "/star");
        rules_[static_cast<std::size_t>(s)] = {{x, s}, {}};
        defined_[static_cast<std::size_t>(s)] = true;
        out.push_back(s);
      } else if (e.max > e.min) {
        // O_k ::= x O_{k+1} | ""  for the optional copies, built from the last one.
        int32_t next = -1;
        for (int32_t k = e.max - e.min; k >= 1; --k) {
          const int32_t o = declare(name + "/opt" + std::to_string(k));
          std::vector<int32_t> a{x};
          if (next >= 0) a.push_back(next);
          rules_[static_cast<std::size_t>(o)] = {a, {}};
          defined_[static_cast<std::size_t>(o)] = true;
          next = o;
        }
        out.push_back(next);
      }
      return;
    }
  }
}

int32_t GrammarBuilder::import(const Grammar& g, const std::string& prefix) {
  const auto base = static_cast<int32_t>(names_.size());
  for (std::size_t r = 0; r < g.num_rules(); ++r) declare(prefix + g.rule_name(static_cast<int32_t>(r)));
  const std::vector<int32_t>& el = g.elems();
  for (std::size_t r = 0; r < g.num_rules(); ++r) {
    std::vector<std::vector<int32_t>> alts;
    for (int32_t start : g.alternatives(static_cast<int32_t>(r))) {
      std::vector<int32_t> seq;
      for (auto p = static_cast<std::size_t>(start); el[p] != kEnd; ++p) {
        const int32_t v = el[p];
        seq.push_back(elem_is_ref(v) ? v + base : -2 - set_index(g.set(elem_set(v))));
      }
      alts.push_back(std::move(seq));
    }
    rules_[static_cast<std::size_t>(base) + r] = std::move(alts);
    defined_[static_cast<std::size_t>(base) + r] = true;
  }
  return base + g.root();
}

std::shared_ptr<const Grammar> GrammarBuilder::build(int32_t root, const std::string& what) const {
  const std::size_t n = rules_.size();
  for (std::size_t r = 0; r < n; ++r)
    if (!defined_[r]) throw Error(what + ": rule '" + names_[r] + "' is referenced but not defined");
  auto rules = rules_;
  // Productive rules (derive some finite text); alternatives using anything else are dropped.
  std::vector<char> productive(n, 0);
  auto elem_ok = [&](int32_t v) {
    return elem_is_ref(v) ? productive[static_cast<std::size_t>(v)] != 0 : !sets_[static_cast<std::size_t>(elem_set(v))].empty();
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t r = 0; r < n; ++r) {
      if (productive[r]) continue;
      for (const auto& a : rules[r])
        if (std::all_of(a.begin(), a.end(), elem_ok)) {
          productive[r] = 1;
          changed = true;
          break;
        }
    }
  }
  if (!productive[static_cast<std::size_t>(root)]) throw Error(what + ": matches no text at all");
  for (auto& alts : rules)
    alts.erase(std::remove_if(alts.begin(), alts.end(),
                              [&](const std::vector<int32_t>& a) { return !std::all_of(a.begin(), a.end(), elem_ok); }),
               alts.end());
  // Nullable rules, then left recursion: r -> s when s can be the first thing r expands to.
  std::vector<char> nullable(n, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const auto& a : rules[r])
        if (std::all_of(a.begin(), a.end(), [&](int32_t v) { return elem_is_ref(v) && nullable[static_cast<std::size_t>(v)]; })) {
          nullable[r] = 1;
          changed = true;
          break;
        }
    }
  }
  // Left recursion: r -> s when s can be the first thing r expands to; the edge is a TAIL call
  // when s ends its alternative (the matcher then pushes no frame). A cycle of tail calls
  // only (a repetition of something that can be empty, e.g. ("a"?)*) keeps stacks flat and
  // the matcher's closure stops at the repeated configuration; a cycle with any other call
  // would grow the stack forever and is refused. Edges inside one strongly connected
  // component are exactly the edges on cycles (Tarjan, iterative).
  struct Edge {
    std::size_t to;
    bool tail;
  };
  std::vector<std::vector<Edge>> edges(n);
  for (std::size_t r = 0; r < n; ++r)
    for (const auto& a : rules[r])
      for (std::size_t i = 0; i < a.size(); ++i) {
        const int32_t v = a[i];
        if (!elem_is_ref(v)) break;
        edges[r].push_back({static_cast<std::size_t>(v), i + 1 == a.size()});
        if (!nullable[static_cast<std::size_t>(v)]) break;
      }
  std::vector<int64_t> index(n, -1), low(n, 0), comp(n, -1);
  std::vector<char> on_stack(n, 0);
  std::vector<std::size_t> tstack;
  int64_t counter = 0, ncomp = 0;
  for (std::size_t start = 0; start < n; ++start) {
    if (index[start] >= 0) continue;
    std::vector<std::pair<std::size_t, std::size_t>> work{{start, 0}};  // (node, next edge)
    index[start] = low[start] = counter++;
    tstack.push_back(start);
    on_stack[start] = 1;
    while (!work.empty()) {
      auto& [u, ei] = work.back();
      if (ei < edges[u].size()) {
        const std::size_t w = edges[u][ei++].to;
        if (index[w] < 0) {
          index[w] = low[w] = counter++;
          tstack.push_back(w);
          on_stack[w] = 1;
          work.emplace_back(w, 0);
        } else if (on_stack[w]) {
          low[u] = std::min(low[u], index[w]);
        }
        continue;
      }
      const std::size_t done = u;
      work.pop_back();
      if (!work.empty()) low[work.back().first] = std::min(low[work.back().first], low[done]);
      if (low[done] == index[done]) {
        for (;;) {
          const std::size_t w = tstack.back();
          tstack.pop_back();
          on_stack[w] = 0;
          comp[w] = ncomp;
          if (w == done) break;
        }
        ++ncomp;
      }
    }
  }
  for (std::size_t r = 0; r < n; ++r)
    for (const Edge& e : edges[r])
      if (comp[r] == comp[e.to] && !e.tail)
        throw Error(what + ": left recursion through rule '" + names_[e.to] +
                    "' (a rule must consume text before it can refer back to itself)");

  auto g = std::shared_ptr<Grammar>(new Grammar());
  g->root_ = root;
  g->names_ = names_;
  g->sets_ = sets_;
  g->alts_.resize(n);
  // Shortest completion per rule (fixpoint), then per position.
  g->min_rule_.assign(n, kInf);
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t r = 0; r < n; ++r)
      for (const auto& a : rules[r]) {
        int64_t len = 0;
        for (int32_t v : a) len = std::min(kInf, len + (elem_is_ref(v) ? g->min_rule_[static_cast<std::size_t>(v)] : 1));
        if (len < g->min_rule_[r]) {
          g->min_rule_[r] = len;
          changed = true;
        }
      }
  }
  for (std::size_t r = 0; r < n; ++r)
    for (const auto& a : rules[r]) {
      g->alts_[r].push_back(static_cast<int32_t>(g->elems_.size()));
      for (int32_t v : a) g->elems_.push_back(v);
      g->elems_.push_back(kEnd);
    }
  g->min_from_.assign(g->elems_.size(), 0);
  for (std::size_t p = g->elems_.size(); p-- > 0;) {
    const int32_t v = g->elems_[p];
    if (v == kEnd) continue;
    const int64_t here = elem_is_ref(v) ? g->min_rule_[static_cast<std::size_t>(v)] : 1;
    g->min_from_[p] = std::min(kInf, here + g->min_from_[p + 1]);
  }
  return g;
}

// ---- Grammar ------------------------------------------------------------------------------

Grammar::Grammar() : cache_(std::make_unique<Cache>()) {}
Grammar::~Grammar() = default;

namespace {
std::string set_text(const ByteSet& s) {
  auto ch = [](unsigned b) {
    static const char* hex = "0123456789ABCDEF";
    if (b >= 0x21 && b < 0x7F && b != '\\' && b != ']' && b != '-' && b != '^' && b != '"') return std::string(1, static_cast<char>(b));
    return std::string("\\x") + hex[b >> 4] + hex[b & 15];
  };
  int count = 0;
  for (unsigned b = 0; b < 256; ++b) count += s.test(b);
  if (count == 1)
    for (unsigned b = 0; b < 256; ++b)
      if (s.test(b)) return "\"" + ch(b) + "\"";
  std::string out = "[";
  for (unsigned b = 0; b < 256;) {
    if (!s.test(b)) {
      ++b;
      continue;
    }
    unsigned e = b;
    while (e + 1 < 256 && s.test(e + 1)) ++e;
    out += ch(b);
    if (e > b) out += "-" + ch(e);
    b = e + 1;
  }
  return out + "]";
}
}  // namespace

std::string Grammar::dump() const {
  std::string out;
  for (std::size_t r = 0; r < alts_.size(); ++r) {
    out += names_[r] + "#" + std::to_string(r) + (static_cast<int32_t>(r) == root_ ? " (root)" : "") + " ::=";
    bool first = true;
    for (int32_t start : alts_[r]) {
      out += first ? " " : " | ";
      first = false;
      bool any = false;
      for (auto p = static_cast<std::size_t>(start); elems_[p] != kEnd; ++p) {
        const int32_t v = elems_[p];
        if (any) out += ' ';
        any = true;
        out += elem_is_ref(v) ? names_[static_cast<std::size_t>(v)] + "#" + std::to_string(v) : set_text(set(elem_set(v)));
      }
      if (!any) out += "\"\"";
    }
    out += '\n';
  }
  return out;
}

std::shared_ptr<const Grammar> Grammar::literal(std::string_view text) {
  GrammarBuilder b;
  return b.build(b.add("literal", Expr::literal(text)), "literal");
}

std::shared_ptr<const Grammar> Grammar::sequence(const std::vector<std::shared_ptr<const Grammar>>& parts) {
  GrammarBuilder b;
  std::vector<Expr> seq;
  for (std::size_t i = 0; i < parts.size(); ++i) seq.push_back(Expr::ref(b.import(*parts[i], "seq" + std::to_string(i) + ".")));
  return b.build(b.add("sequence", Expr::seq(std::move(seq))), "sequence");
}

std::shared_ptr<const Grammar> Grammar::alternatives(const std::vector<std::shared_ptr<const Grammar>>& options) {
  GrammarBuilder b;
  std::vector<Expr> alt;
  for (std::size_t i = 0; i < options.size(); ++i) alt.push_back(Expr::ref(b.import(*options[i], "alt" + std::to_string(i) + ".")));
  return b.build(b.add("alternatives", Expr::alt(std::move(alt))), "alternatives");
}

std::shared_ptr<const Grammar> Grammar::repeat(const std::shared_ptr<const Grammar>& body, int32_t min, int32_t max) {
  if (min < 0 || (max >= 0 && max < min)) throw Error("Grammar::repeat: bad bounds {" + std::to_string(min) + "," + std::to_string(max) + "}");
  GrammarBuilder b;
  const int32_t x = b.import(*body, "rep.");
  return b.build(b.add("repeat", Expr::repeat(Expr::ref(x), min, max)), "repeat");
}

std::shared_ptr<const Grammar> Grammar::token(int32_t id) {
  GrammarBuilder b;
  return b.build(b.add("token" + std::to_string(id), Expr::literal(Vocabulary::special_token_bytes(id))), "token");
}

}  // namespace nemotron::text::grammar
