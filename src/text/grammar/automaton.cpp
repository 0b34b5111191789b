#include "text/grammar/automaton.h"

#include <algorithm>
#include <atomic>
#include <limits>

#include "text/grammar/mask.h"
#include "text/grammar/vocabulary.h"
#include "util/error.h"

namespace nemotron::text::grammar {

std::size_t Automaton::KeyHash::operator()(const std::vector<int32_t>& k) const noexcept {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ k.size();
  for (int32_t v : k) {
    h ^= static_cast<uint32_t>(v);
    h *= 0x100000001B3ull;
    h ^= h >> 29;
  }
  return static_cast<std::size_t>(h);
}

Automaton::Automaton(const Grammar& g) : g_(g) {}

namespace {
std::atomic<std::size_t> g_max_states{Automaton::kMaxStates};
std::atomic<uint64_t> g_max_work{Automaton::kMaxWorkPerCall};
}  // namespace

void Automaton::set_max_states(std::size_t n) { g_max_states = n; }
void Automaton::set_max_work_per_call(uint64_t n) { g_max_work = n; }
uint64_t Automaton::max_work_per_call() { return g_max_work.load(std::memory_order_relaxed); }

Automaton::Call::Call(Automaton& a) : lock_(a.mutex), a_(a) { a.work_limit_ = a.work_ + max_work_per_call(); }
Automaton::Call::~Call() { a_.work_limit_ = UINT64_MAX; }

void Automaton::add_work(std::size_t n) {
  work_ += n;
  if (work_ > work_limit_)
    throw Error("the grammar is too ambiguous to match: one step needed more than " +
                std::to_string(max_work_per_call()) +
                " units of work (a bounded repetition of an item that can match the same text in "
                "several ways, such as (a|aa){1000}, keeps one parse per way)");
}

void Automaton::maybe_reset() {
  if (states_.size() <= g_max_states.load(std::memory_order_relaxed) && key_ints_ <= kMaxKeyInts) return;
  key_ints_ = 0;
  states_.clear();
  rows_.clear();
  ids_.clear();
  initial_ = -1;
  ++generation_;
  for (auto& m : masks_) m.second->clear();
}

// Expands the top of `st` until it is a byte-set element (or the stack is empty), appending
// each resulting stack to `out`. Consumes `st`.
void Automaton::closure(std::vector<int32_t>& st, std::vector<std::vector<int32_t>>& out,
                        std::unordered_set<std::vector<int32_t>, KeyHash>& seen) {
  const std::vector<int32_t>& el = g_.elems();
  for (;;) {
    if (out.size() >= kMaxStacks) return;  // cut (see header)
    if (st.empty()) {
      out.emplace_back();
      return;
    }
    const int32_t p = st.back();
    const int32_t v = el[static_cast<std::size_t>(p)];
    if (v == kEnd) {  // the rule on top is complete: return to its caller
      st.pop_back();
      continue;
    }
    if (elem_is_bytes(v)) {
      add_work(st.size() + 1);
      out.push_back(std::move(st));
      return;
    }
    // A call: the caller continues at p + 1, or nowhere when p + 1 ends its sequence.
    add_work(st.size() + 1);
    if (!seen.insert(st).second) return;  // expanded before in this closure
    if (el[static_cast<std::size_t>(p) + 1] == kEnd) st.pop_back();
    else st.back() = p + 1;
    if (st.size() >= kMaxDepth) return;  // cut (see header)
    const std::vector<int32_t>& alts = g_.alternatives(v);
    for (std::size_t i = 0; i < alts.size(); ++i) {
      std::vector<int32_t> s2;
      if (i + 1 < alts.size()) s2 = st;
      else s2 = std::move(st);
      s2.push_back(alts[i]);
      closure(s2, out, seen);
    }
    return;
  }
}

int32_t Automaton::intern_stacks(std::vector<std::vector<int32_t>>& stacks) {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  std::vector<int32_t> key;
  for (const auto& s : stacks) {
    key.push_back(static_cast<int32_t>(s.size()));
    key.insert(key.end(), s.begin(), s.end());
  }
  return intern(key);
}

int32_t Automaton::intern(const std::vector<int32_t>& key) {
  auto it = ids_.find(key);
  if (it != ids_.end()) return it->second;
  State st;
  st.key = key;
  key_ints_ += key.size();
  st.min_completion = std::numeric_limits<int64_t>::max();
  const std::vector<int32_t>& el = g_.elems();
  for (std::size_t i = 0; i < key.size();) {
    const auto len = static_cast<std::size_t>(key[i]);
    int64_t need = 0;
    for (std::size_t k = 1; k <= len; ++k) need += g_.min_len_from(key[i + k]);
    st.min_completion = std::min(st.min_completion, need);
    if (len == 0) {
      st.accepting = true;
    } else {
      st.live = true;
      const ByteSet& top = g_.set(elem_set(el[static_cast<std::size_t>(key[i + len])]));
      for (std::size_t w = 0; w < 4; ++w) st.first.w[w] |= top.w[w];
    }
    i += len + 1;
  }
  const auto id = static_cast<int32_t>(states_.size());
  states_.push_back(std::move(st));
  rows_.emplace_back();
  ids_.emplace(key, id);
  return id;
}

int32_t Automaton::initial() {
  if (initial_ >= 0) return initial_;
  std::vector<std::vector<int32_t>> out;
  std::unordered_set<std::vector<int32_t>, KeyHash> seen;
  for (int32_t a : g_.alternatives(g_.root())) {
    std::vector<int32_t> st{a};
    closure(st, out, seen);
  }
  initial_ = intern_stacks(out);
  return initial_;
}

int32_t Automaton::next_slow(int32_t s, unsigned byte) {
  if (!rows_[static_cast<std::size_t>(s)]) {
    rows_[static_cast<std::size_t>(s)].reset(new int32_t[256]);
    std::fill_n(rows_[static_cast<std::size_t>(s)].get(), 256, kUnknown);
  }
  int32_t result = kDead;
  if (states_[static_cast<std::size_t>(s)].first.test(byte)) {
    const std::vector<int32_t> key = states_[static_cast<std::size_t>(s)].key;  // copy: interning may reallocate
    const std::vector<int32_t>& el = g_.elems();
    std::vector<std::vector<int32_t>> out;
    std::unordered_set<std::vector<int32_t>, KeyHash> seen;
    for (std::size_t i = 0; i < key.size();) {
      const auto len = static_cast<std::size_t>(key[i]);
      if (len > 0) {
        const int32_t top = key[i + len];
        if (g_.set(elem_set(el[static_cast<std::size_t>(top)])).test(byte)) {
          std::vector<int32_t> st(key.begin() + static_cast<std::ptrdiff_t>(i + 1),
                                  key.begin() + static_cast<std::ptrdiff_t>(i + 1 + len));
          st.back() = top + 1;
          closure(st, out, seen);
        }
      }
      i += len + 1;
    }
    if (!out.empty()) result = intern_stacks(out);
  }
  rows_[static_cast<std::size_t>(s)][byte] = result;
  return result;
}

const Automaton::Main& Automaton::main_step(int32_t s) {
  if (!states_[static_cast<std::size_t>(s)].main_known) {
    const ByteSet first = states_[static_cast<std::size_t>(s)].first;
    int32_t target[256];
    std::unordered_map<int32_t, int> count;
    for (unsigned b = 0; b < 256; ++b) {
      target[b] = first.test(b) ? next(s, b) : kDead;
      if (target[b] != kDead) ++count[target[b]];
    }
    Main m;
    int best = 0;
    for (const auto& [t, c] : count)
      if (c > best || (c == best && t < m.target)) {
        best = c;
        m.target = t;
      }
    if (m.target != kDead)
      for (unsigned b = 0; b < 256; ++b)
        if (target[b] == m.target) m.bytes.set(b);
    states_[static_cast<std::size_t>(s)].main = m;
    states_[static_cast<std::size_t>(s)].main_known = true;
  }
  return states_[static_cast<std::size_t>(s)].main;
}

MaskCache& Automaton::masks(const std::shared_ptr<const Vocabulary>& vocab) {
  for (auto it = masks_.begin(); it != masks_.end();) {
    auto held = it->first.lock();
    if (!held) {
      it = masks_.erase(it);
      continue;
    }
    if (held == vocab) return *it->second;
    ++it;
  }
  masks_.emplace_back(vocab, std::make_unique<MaskCache>(vocab));
  return *masks_.back().second;
}

std::shared_ptr<Automaton> automaton_of(const Grammar& g) {
  Grammar::Cache& c = g.cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.automaton) c.automaton = std::make_shared<Automaton>(g);
  return c.automaton;
}

}  // namespace nemotron::text::grammar
