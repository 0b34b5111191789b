#include "text/grammar/mask.h"

#include <algorithm>
#include <cstring>

#include "text/grammar/automaton.h"
#include "text/grammar/vocabulary.h"

namespace nemotron::text::grammar {

// Depth-first over (trie node, state) pairs; a child is entered only when the automaton can
// take its byte. A subtree whose byte summary lies inside the state's self-loop set is taken
// whole (every token below stays in that state), which is what makes the "inside a JSON
// string" states cheap: most of the vocabulary is accepted without walking it.
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
      if (ch.summary >= 0) {
        const ByteSet& loop = a.self_loop(ns);
        const auto& sum = sums[static_cast<std::size_t>(ch.summary)];
        if (((sum[0] & ~loop.w[0]) | (sum[1] & ~loop.w[1]) | (sum[2] & ~loop.w[2]) | (sum[3] & ~loop.w[3])) == 0) {
          for (uint32_t k = ch.desc_begin; k < ch.desc_end; ++k) set_bit(sub[k]);
          continue;
        }
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
