#include "runtime/prefix_cache.h"

#include <algorithm>

namespace nemotron::runtime {

uint64_t PrefixCache::hash_step(uint64_t h, int32_t token) {
  return (h ^ static_cast<uint32_t>(token)) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
}

PrefixCache::Lru::const_iterator PrefixCache::longest(const int32_t* ids, int64_t n) const {
  if (n <= 1 || lengths_.empty()) return lru_.end();
  std::vector<uint64_t> h(static_cast<std::size_t>(n) + 1, 0);
  for (int64_t i = 0; i < n; ++i) h[static_cast<std::size_t>(i) + 1] = hash_step(h[static_cast<std::size_t>(i)], ids[i]);
  // Distinct entry lengths below n, longest first.
  for (auto it = lengths_.lower_bound(n); it != lengths_.begin();) {
    --it;
    const int64_t L = *it;
    const auto [b, e] = by_hash_.equal_range(h[static_cast<std::size_t>(L)]);
    for (auto m = b; m != e; ++m) {
      const Entry& entry = *m->second;
      if (static_cast<int64_t>(entry.ids.size()) == L && std::equal(entry.ids.begin(), entry.ids.end(), ids))
        return m->second;
    }
    it = lengths_.lower_bound(L);  // skip the other entries of this length
  }
  return lru_.end();
}

PrefixCache::Hit PrefixCache::lookup(const int32_t* ids, int64_t n) {
  stats_.queries++;
  stats_.query_tokens += static_cast<uint64_t>(std::max<int64_t>(n, 0));
  const auto found = longest(ids, n);
  if (found == lru_.end()) return {};
  const int64_t L = static_cast<int64_t>(found->ids.size());
  lru_.splice(lru_.begin(), lru_, found);  // now the most recently used
  stats_.hits++;
  stats_.hit_tokens += static_cast<uint64_t>(L);
  return {L, found->id};
}

int64_t PrefixCache::cached_tokens(const int32_t* ids, int64_t n) const {
  const auto found = longest(ids, n);
  return found == lru_.end() ? 0 : static_cast<int64_t>(found->ids.size());
}

bool PrefixCache::contains(const int32_t* ids, int64_t n) const {
  if (n <= 0 || !lengths_.count(n)) return false;
  uint64_t h = 0;
  for (int64_t i = 0; i < n; ++i) h = hash_step(h, ids[i]);
  const auto [b, e] = by_hash_.equal_range(h);
  for (auto m = b; m != e; ++m)
    if (static_cast<int64_t>(m->second->ids.size()) == n && std::equal(m->second->ids.begin(), m->second->ids.end(), ids))
      return true;
  return false;
}

void PrefixCache::erase(Lru::iterator it) {
  const auto [b, e] = by_hash_.equal_range(it->hash);
  for (auto m = b; m != e; ++m)
    if (m->second == it) {
      by_hash_.erase(m);
      break;
    }
  lengths_.erase(lengths_.find(static_cast<int64_t>(it->ids.size())));
  ++generation_;
  stats_.bytes -= it->bytes;
  stats_.entries--;
  lru_.erase(it);
}

bool PrefixCache::insert(const int32_t* ids, int64_t n, uint64_t id, int64_t bytes, std::vector<uint64_t>& evicted) {
  if (n <= 0 || bytes < 0 || bytes > stats_.budget || contains(ids, n)) return false;
  while (stats_.bytes + bytes > stats_.budget && !lru_.empty()) {
    evicted.push_back(lru_.back().id);
    erase(std::prev(lru_.end()));
  }
  uint64_t h = 0;
  for (int64_t i = 0; i < n; ++i) h = hash_step(h, ids[i]);
  lru_.push_front({std::vector<int32_t>(ids, ids + n), id, bytes, h});
  by_hash_.emplace(h, lru_.begin());
  lengths_.insert(n);
  stats_.bytes += bytes;
  stats_.entries++;
  ++generation_;
  return true;
}

std::vector<PrefixCache::EntryView> PrefixCache::entries() const {
  std::vector<EntryView> out;
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) out.push_back({&it->ids, it->id, it->bytes});
  return out;
}

bool PrefixCache::remove(uint64_t id) {
  for (auto it = lru_.begin(); it != lru_.end(); ++it)
    if (it->id == id) {
      erase(it);
      return true;
    }
  return false;
}

void PrefixCache::clear(std::vector<uint64_t>& evicted) {
  while (!lru_.empty()) {
    evicted.push_back(lru_.back().id);
    erase(std::prev(lru_.end()));
  }
}

}  // namespace nemotron::runtime
