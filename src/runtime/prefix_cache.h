#pragma once
// The prefix cache's index: which token prefixes have a backend snapshot (model/backend.h),
// within a byte budget, least recently used evicted first. Pure bookkeeping (no model): the
// engine saves, loads and drops the snapshots it names.
//
// An entry is a prefix ids[0, n) with the id of the snapshot of a sequence that has been fed
// exactly those tokens. lookup(prompt) returns the longest entry that is a proper prefix of the
// prompt (at least one token is left to feed, so that the step that feeds it yields the next
// token's logits). Prefixes are found by a 64-bit polynomial hash of ids[0, n) per distinct
// entry length, then compared token by token (a hash collision never returns a wrong prefix).
#include <cstdint>
#include <list>
#include <set>
#include <unordered_map>
#include <vector>

namespace nemotron::runtime {

struct PrefixCacheStats {
  int64_t entries = 0, bytes = 0, budget = 0;
  uint64_t query_tokens = 0, hit_tokens = 0;  // prompt tokens looked up / found cached
  uint64_t queries = 0, hits = 0;
};

class PrefixCache {
 public:
  explicit PrefixCache(int64_t budget_bytes) { stats_.budget = budget_bytes; }

  struct Hit {
    int64_t tokens = 0;  // 0: no hit
    uint64_t id = 0;
  };
  // The longest cached proper prefix of ids[0, n) (marked as just used); counts the query.
  Hit lookup(const int32_t* ids, int64_t n);
  // The length lookup would return, without marking or counting anything (0: none).
  int64_t cached_tokens(const int32_t* ids, int64_t n) const;
  // Changes whenever an entry is added or removed (answers computed at one generation hold
  // until the next).
  uint64_t generation() const { return generation_; }
  bool contains(const int32_t* ids, int64_t n) const;
  // Registers snapshot `id` of ids[0, n) taking `bytes`. Entries are evicted (least recently
  // used first) until it fits; their ids are appended to `evicted` (the caller drops the
  // snapshots). Returns false, registering nothing, when it can never fit the budget or the
  // prefix is cached already.
  bool insert(const int32_t* ids, int64_t n, uint64_t id, int64_t bytes, std::vector<uint64_t>& evicted);
  // Unregisters snapshot `id` (the caller drops it); false when no entry has it.
  bool remove(uint64_t id);
  // Empties the index; the ids of every entry are appended to `evicted`.
  void clear(std::vector<uint64_t>& evicted);
  const PrefixCacheStats& stats() const { return stats_; }
  struct EntryView {
    const std::vector<int32_t>* ids;
    uint64_t id;
    int64_t bytes;
  };
  std::vector<EntryView> entries() const;  // least recently used first

 private:
  struct Entry {
    std::vector<int32_t> ids;
    uint64_t id = 0;
    int64_t bytes = 0;
    uint64_t hash = 0;
  };
  using Lru = std::list<Entry>;  // front = most recently used
  static uint64_t hash_step(uint64_t h, int32_t token);
  // The longest entry that is a proper prefix of ids[0, n), or lru_.end().
  Lru::const_iterator longest(const int32_t* ids, int64_t n) const;
  void erase(Lru::iterator it);
  Lru lru_;
  std::unordered_multimap<uint64_t, Lru::iterator> by_hash_;  // hash of ids[0, n) -> entries
  std::multiset<int64_t> lengths_;                             // lengths of the entries
  PrefixCacheStats stats_;
  uint64_t generation_ = 0;
};

}  // namespace nemotron::runtime
