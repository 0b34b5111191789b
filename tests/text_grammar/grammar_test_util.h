#pragma once
// Helpers for the grammar tests: byte-level accept/reject, and an independent reference
// recognizer (Earley over the grammar IR) that the automaton and the token masks are
// compared against.
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "text/grammar/grammar.h"

namespace grammar_test {

using nemotron::text::grammar::Grammar;
using nemotron::text::grammar::Matcher;

// Whole-text match through the matcher.
inline bool matches(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  Matcher m(g);
  return m.accept_bytes(text) && m.can_end();
}
// `text` can be continued into a match.
inline bool viable(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  Matcher m(g);
  return m.accept_bytes(text);
}

// Earley recognizer over Grammar::elems(): items (rule, position, origin). Nullable rules are
// handled by Aycock-Horspool (predicting a nullable rule also advances over it).
class Earley {
 public:
  explicit Earley(const Grammar& g) : g_(g) {
    const auto& el = g.elems();
    nullable_.assign(g.num_rules(), false);
    for (bool changed = true; changed;) {
      changed = false;
      for (std::size_t r = 0; r < g.num_rules(); ++r) {
        if (nullable_[r]) continue;
        for (int32_t a : g.alternatives(static_cast<int32_t>(r))) {
          bool all = true;
          for (auto p = static_cast<std::size_t>(a); el[p] != nemotron::text::grammar::kEnd; ++p)
            all = all && el[p] >= 0 && nullable_[static_cast<std::size_t>(el[p])];
          if (all) {
            nullable_[r] = true;
            changed = true;
            break;
          }
        }
      }
    }
    chart_.emplace_back();
    for (int32_t a : g.alternatives(g.root())) add(0, {g.root(), a, 0});
    close(0);
  }
  // Consumes bytes; false when the prefix is no longer viable (the chart stays as it was).
  bool feed(const std::string& bytes) {
    const std::size_t mark = chart_.size();
    for (char c : bytes) {
      step(static_cast<unsigned char>(c));
      if (chart_.back().empty()) {
        chart_.resize(mark);
        return false;
      }
    }
    return true;
  }
  void truncate(std::size_t n) { chart_.resize(n); }
  std::size_t size() const { return chart_.size(); }
  bool accepting() const {
    const auto& el = g_.elems();
    for (const Item& it : chart_.back())
      if (std::get<0>(it) == g_.root() && std::get<2>(it) == 0 && el[static_cast<std::size_t>(std::get<1>(it))] == nemotron::text::grammar::kEnd)
        return true;
    return false;
  }

 private:
  using Item = std::tuple<int32_t, int32_t, int32_t>;  // rule, position, origin
  void add(std::size_t k, Item it) {
    if (seen_.size() <= k) seen_.resize(k + 1);
    if (seen_[k].insert(it).second) chart_[k].push_back(it);
  }
  void close(std::size_t k) {
    const auto& el = g_.elems();
    for (std::size_t i = 0; i < chart_[k].size(); ++i) {
      const auto [rule, pos, origin] = chart_[k][i];
      const int32_t v = el[static_cast<std::size_t>(pos)];
      if (v == nemotron::text::grammar::kEnd) {  // complete
        for (std::size_t j = 0; j < chart_[static_cast<std::size_t>(origin)].size(); ++j) {
          const auto [r2, p2, o2] = chart_[static_cast<std::size_t>(origin)][j];
          if (el[static_cast<std::size_t>(p2)] == rule) add(k, {r2, p2 + 1, o2});
        }
      } else if (v >= 0) {  // predict
        for (int32_t a : g_.alternatives(v)) add(k, {v, a, static_cast<int32_t>(k)});
        if (nullable_[static_cast<std::size_t>(v)]) add(k, {rule, pos + 1, origin});
      }
    }
  }
  void step(unsigned b) {
    const auto& el = g_.elems();
    const std::size_t k = chart_.size() - 1;
    chart_.emplace_back();
    if (seen_.size() > k + 1) seen_[k + 1].clear();
    for (const Item& it : chart_[k]) {
      const int32_t v = el[static_cast<std::size_t>(std::get<1>(it))];
      if (v <= -2 && g_.set(-2 - v).test(b)) add(k + 1, {std::get<0>(it), std::get<1>(it) + 1, std::get<2>(it)});
    }
    close(k + 1);
  }
  const Grammar& g_;
  std::vector<bool> nullable_;
  std::vector<std::vector<Item>> chart_;
  std::vector<std::set<Item>> seen_;
};

}  // namespace grammar_test
