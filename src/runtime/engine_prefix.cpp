// The engine's side of the prefix cache (runtime/prefix_cache.h): resuming a fresh sequence
// from the longest cached prefix of its prompt, where prefill chunks end (snapshot points),
// taking a snapshot (the MTP head brought to the point first), and holding back a fresh
// sequence whose prompt another one is prefilling.
#include <algorithm>

#include "runtime/engine.h"

namespace nemotron::runtime {

void Engine::resume_from_cache(Sequence& s, ScheduledChunk& c) {
  const auto& prompt = s.request.prompt;
  const int64_t n = static_cast<int64_t>(prompt.size());
  const PrefixCache::Hit hit = cache_->lookup(prompt.data(), n);
  if (hit.tokens > 0) {
    try {
      backend_->load_snapshot(hit.id, s.slot);
    } catch (...) {
      // This request fails (its slot may hold part of the snapshot); the entry goes, so that
      // the next request with the prefix resumes from another one or prefills.
      cache_->remove(hit.id);
      head_rows_.erase(hit.id);
      try {
        backend_->drop_snapshot(hit.id);
      } catch (...) {
      }
      throw;
    }
    if (s.request.sampling.penalized()) backend_->observe_prompt(s.slot, prompt.data(), hit.tokens);
    s.cached = hit.tokens;
    // The MTP head stands at hit - 1: its next pair is (this prompt's token at hit, the
    // snapshot's last hidden row).
    const auto row = head_rows_.find(hit.id);
    if (row != head_rows_.end() && options_.speculative_tokens > 0 && !spec_retired_ &&
        backend_->mtp_position(s.slot) == hit.tokens - 1) {
      s.mtp_ids.assign(1, prompt[static_cast<std::size_t>(hit.tokens)]);
      s.mtp_hidden = row->second;
    }
  }
  // The scheduler planned the chunk from the same cache (its resume hint); the chunk starts
  // where the slot's state now is, whatever it planned.
  c.count = std::min(c.count, n - hit.tokens);
  c.start = hit.tokens;
}

int64_t Engine::cached_prefix(Sequence& s) {
  if (s.cached_prefix_generation != cache_->generation()) {
    s.cached_prefix = cache_->cached_tokens(s.request.prompt.data(), static_cast<int64_t>(s.request.prompt.size()));
    s.cached_prefix_generation = cache_->generation();
  }
  return s.cached_prefix;
}

int64_t Engine::next_snapshot_point(const Sequence& s, int64_t after) const {
  const int64_t n = static_cast<int64_t>(s.request.prompt.size()), every = options_.prefix_snapshot_interval;
  int64_t p = std::min(n, (after / every + 1) * every);
  for (int64_t q : s.request.snapshot_at)
    if (q > after) p = std::min(p, q);
  if (s.lead_prefix && n - 1 > after) p = std::min(p, n - 1);
  return p;
}

void Engine::save_prefix(Sequence& s, const int32_t* ids, int64_t n) {
  // The point before a leader's last token is kept whatever the gap: its followers resume there.
  const bool lead_point = s.lead_prefix && n == static_cast<int64_t>(s.request.prompt.size()) - 1;
  if (!lead_point && s.last_snapshot > 0 && n - s.last_snapshot < options_.prefix_snapshot_min_gap) return;
  if (cache_->contains(ids, n)) {
    s.last_snapshot = n;
    return;
  }
  // The head first: a backend error there registers nothing.
  std::vector<float> row = head_to(s, n);
  std::vector<uint64_t> evicted;
  const uint64_t id = next_snapshot_++;
  if (!cache_->insert(ids, n, id, backend_->snapshot_bytes(n), evicted)) return;
  for (uint64_t e : evicted) {
    backend_->drop_snapshot(e);
    head_rows_.erase(e);
  }
  try {
    backend_->save_snapshot(s.slot, id);
  } catch (...) {
    cache_->remove(id);  // no entry without its snapshot: a later request would resume from it
    throw;
  }
  if (!row.empty()) head_rows_[id] = std::move(row);
  s.last_snapshot = n;
}

std::vector<float> Engine::head_to(Sequence& s, int64_t n) {
  if (s.mtp_ids.empty() || s.slot < 0) return {};
  const int64_t H = backend_->model().config.hidden_size;
  // The pending pairs are positions [head, head + pending) (pair p: token p + 1, hidden row p).
  const int64_t head = backend_->mtp_position(s.slot), pending = static_cast<int64_t>(s.mtp_ids.size());
  const int64_t feed = n - 1 - head;
  if (feed < 0 || feed >= pending) return {};
  if (feed > 0) {
    backend_->mtp_feed({{s.slot, s.mtp_ids.data(), s.mtp_hidden.data(), feed}});
    s.mtp_ids.erase(s.mtp_ids.begin(), s.mtp_ids.begin() + feed);
    s.mtp_hidden.erase(s.mtp_hidden.begin(), s.mtp_hidden.begin() + feed * H);
  }
  return std::vector<float>(s.mtp_hidden.begin(), s.mtp_hidden.begin() + H);
}

void Engine::defer_same_prompts(std::vector<ScheduledChunk>& plan) {
  // A fresh sequence whose prompt equals that of a sequence still prefilling (started, no
  // token yet) or of an earlier fresh one in this plan waits; that one becomes its leader.
  // Once the cache holds the prompt less its last token (a leader's point), every fresh
  // sequence with that prompt resumes there at once: none waits and none leads (else the
  // followers of one prompt would join one per step, each leading the next).
  std::vector<Sequence*> prefilling;
  for (auto& [id, seq] : sequences_)
    if (seq->slot >= 0 && seq->output.empty()) prefilling.push_back(seq.get());
  std::vector<ScheduledChunk> kept;
  for (const auto& c : plan) {
    Sequence& s = *sequences_.at(c.seq);
    const auto& prompt = s.request.prompt;
    const int64_t n = static_cast<int64_t>(prompt.size());
    if (!c.decode() && s.slot < 0 && !(n > 1 && cached_prefix(s) == n - 1)) {
      Sequence* leader = nullptr;
      for (Sequence* p : prefilling)
        if (p != &s && p->request.prompt == prompt) leader = p;
      if (leader && n > 1) {
        leader->lead_prefix = true;
        continue;  // waits for the leader's snapshot
      }
      prefilling.push_back(&s);  // leads the later ones of this plan
    }
    kept.push_back(c);
  }
  plan.swap(kept);
}

}  // namespace nemotron::runtime
