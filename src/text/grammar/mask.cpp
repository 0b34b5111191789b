#include "text/grammar/mask.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "text/grammar/automaton.h"
#include "text/grammar/vocabulary.h"

namespace nemotron::text::grammar {

namespace {

// Every token in a subtree of `height` bytes, all from `sum`, is accepted from state s when
// each byte level stays inside the main step of the state it reaches (automaton.h): then no
// path below can die. Inside a JSON string the main step is a self-loop (checked once); in a
// string with maxLength it counts down, and the subtree is taken whole while enough remain.
bool whole_subtree(Automaton& a, int32_t s, const std::array<uint64_t, 4>& sum, uint32_t height) {
  for (uint32_t level = 0; level < height; ++level) {
    const Automaton::Main& m = a.main_step(s);
    if (m.target == kDead) return false;
    if (((sum[0] & ~m.bytes.w[0]) | (sum[1] & ~m.bytes.w[1]) | (sum[2] & ~m.bytes.w[2]) | (sum[3] & ~m.bytes.w[3])) != 0)
      return false;
    if (m.target == s) return true;  // a self-loop: every further level is the same check
    s = m.target;
  }
  return true;
}

}  // namespace

// Depth-first over (trie node, state) pairs; a child is entered only when the automaton can
// take its byte. Subtrees that cannot die (whole_subtree) are taken without walking them,
// which is what makes the "inside a JSON string" states cheap: most of the vocabulary is
// accepted at once.
void compute_mask(Automaton& a, const Vocabulary& v, int32_t s, uint32_t* bits) {
  std::memset(bits, 0, v.mask_words() * sizeof(uint32_t));
  const std::vector<Vocabulary::Node>& nodes = v.nodes();
  const std::vector<int32_t>& toks = v.node_tokens();
  const std::vector<int32_t>& sub = v.subtree_tokens();
  const auto& sums = v.summaries();
  if (nodes.empty()) return;
  auto set_bit = [bits](int32_t t) {
    const auto u = static_cast<uint32_t>(t);
    bits[u >> 5] |= uint32_t{1} << (u & 31);
  };
  std::vector<std::pair<uint32_t, int32_t>> stack;
  stack.reserve(256);
  stack.emplace_back(0u, s);
  while (!stack.empty()) {
    const auto [n, st] = stack.back();
    stack.pop_back();
    const Vocabulary::Node& nd = nodes[n];
    for (uint32_t c = nd.first_child, e = nd.first_child + nd.num_children; c < e; ++c) {
      const Vocabulary::Node& ch = nodes[c];
      const int32_t ns = a.next(st, ch.byte);
      if (ns == kDead) continue;
      for (uint32_t k = ch.tok_begin; k < ch.tok_end; ++k) set_bit(toks[k]);
      if (!ch.num_children) continue;
      if (ch.summary >= 0 && whole_subtree(a, ns, sums[static_cast<std::size_t>(ch.summary)], ch.height)) {
        for (uint32_t k = ch.desc_begin; k < ch.desc_end; ++k) set_bit(sub[k]);
        continue;
      }
      stack.emplace_back(c, ns);
    }
  }
}

const uint32_t* MaskCache::get(Automaton& a, int32_t s) {
  auto it = entries_.find(s);
  if (it != entries_.end()) {
    ++hits_;
    order_.splice(order_.begin(), order_, it->second.pos);
    return it->second.bits.data();
  }
  ++misses_;
  std::vector<uint32_t> bits;
  if (entries_.size() >= kCapacity) {  // evict the least recent, reusing its buffer
    const int32_t old = order_.back();
    order_.pop_back();
    auto o = entries_.find(old);
    bits = std::move(o->second.bits);
    entries_.erase(o);
  }
  bits.resize(vocab_->mask_words());
  compute_mask(a, *vocab_, s, bits.data());
  order_.push_front(s);
  Entry& e = entries_[s];
  e.bits = std::move(bits);
  e.pos = order_.begin();
  return e.bits.data();
}

void MaskCache::clear() {
  entries_.clear();
  order_.clear();
}

}  // namespace nemotron::text::grammar
