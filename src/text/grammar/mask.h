#pragma once
// Allowed-token masks: a walk of the vocabulary trie from an automaton state, pruning every
// subtree whose prefix the grammar cannot continue with, and a bounded LRU cache of masks per
// state (states recur: inside a JSON string, between object keys).
//
// Mask layout: Vocabulary::mask_words() uint32 words, bit t (word t / 32, bit t % 32) set when
// token t may come next. End ids are the matcher's business (matcher.cpp), not the cache's.
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

namespace nemotron::text::grammar {

class Automaton;
class Vocabulary;

// Writes the mask of state s into bits (mask_words() words; cleared first).
void compute_mask(Automaton& a, const Vocabulary& v, int32_t s, uint32_t* bits);

class MaskCache {
 public:
  explicit MaskCache(std::shared_ptr<const Vocabulary> v) : vocab_(std::move(v)) {}
  // 256 masks: 4 MiB per grammar at 131,072 tokens.
  static constexpr std::size_t kCapacity = 256;

  // The mask of state s, computed on a miss; valid until the next call.
  const uint32_t* get(Automaton& a, int32_t s);
  void clear();
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    std::vector<uint32_t> bits;
    std::list<int32_t>::iterator pos;
  };
  std::shared_ptr<const Vocabulary> vocab_;
  std::list<int32_t> order_;  // most recent first
  std::unordered_map<int32_t, Entry> entries_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace nemotron::text::grammar
