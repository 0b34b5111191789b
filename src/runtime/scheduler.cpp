#include "runtime/scheduler.h"

#include <algorithm>
#include <numeric>

namespace nemotron::runtime {

bool Scheduler::add(uint64_t seq, int64_t prompt_len, int64_t max_tokens, int64_t lookahead) {
  if (prompt_len <= 0 || max_tokens < 0 || lookahead < 0 ||
      prompt_len + max_tokens + lookahead > limits_.kv_token_capacity)
    return false;
  entries_[seq] = {prompt_len, max_tokens, 0, lookahead};
  waiting_.push_back(seq);
  return true;
}

void Scheduler::remove(uint64_t seq) {
  auto it = entries_.find(seq);
  if (it == entries_.end()) return;
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) {
    running_.erase(r);
    kv_reserved_ -= it->second.kv();
  } else {
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq), waiting_.end());
  }
  entries_.erase(it);
}

int64_t Scheduler::decoding() const {
  int64_t n = 0;
  for (uint64_t seq : running_) {
    const Entry& e = entries_.at(seq);
    n += e.prefilled == e.prompt_len;
  }
  return n;
}

int64_t Scheduler::prefill_pending() const {
  int64_t n = 0;
  for (uint64_t seq : running_) {
    const Entry& e = entries_.at(seq);
    n += e.prompt_len - e.prefilled;
  }
  const std::size_t free = static_cast<std::size_t>(std::max(0, limits_.max_num_seqs - static_cast<int>(running_.size())));
  for (std::size_t i = 0; i < waiting_.size() && i < free; ++i) n += entries_.at(waiting_[i]).prompt_len;
  return n;
}

std::vector<ScheduledChunk> Scheduler::schedule(int64_t lookahead) {
  // Admit FIFO while a slot and the KV reservation are available.
  while (!waiting_.empty() && static_cast<int>(running_.size()) < limits_.max_num_seqs) {
    const Entry& e = entries_[waiting_.front()];
    const int64_t need = e.kv();
    if (kv_reserved_ + need > limits_.kv_token_capacity) break;
    kv_reserved_ += need;
    running_.push_back(waiting_.front());
    waiting_.pop_front();
  }
  std::vector<ScheduledChunk> step;
  // Decodes first, 1 + lookahead tokens each, never past the budget. When they do not all fit
  // (more running sequences than the budget holds), the ones left out start the next step's
  // decodes (round robin), so none waits more than a few steps.
  std::vector<uint64_t> decoding;
  for (uint64_t seq : running_)
    if (entries_[seq].prefilled == entries_[seq].prompt_len) decoding.push_back(seq);
  const std::size_t first = static_cast<std::size_t>(
      std::find(decoding.begin(), decoding.end(), decode_next_) - decoding.begin()) % std::max<std::size_t>(1, decoding.size());
  decode_next_ = 0;
  // No decode waits on a prompts-only step: it may take the larger prefill budget.
  int64_t budget = decoding.empty() ? std::max(limits_.max_step_tokens, limits_.prefill_step_tokens)
                                    : limits_.max_step_tokens;
  for (std::size_t k = 0; k < decoding.size(); ++k) {
    const uint64_t seq = decoding[(first + k) % decoding.size()];
    const int64_t own = entries_[seq].lookahead;
    const int64_t cost = 1 + (lookahead >= 0 ? std::min(lookahead, own) : own);
    if (cost > budget) {
      decode_next_ = seq;
      break;
    }
    step.push_back({seq, -1, 1});
    budget -= cost;
  }
  // Prompts share the rest: the oldest first gets up to an equal share (at least one token),
  // then the prompts with the fewest tokens left take what they need, fewest first (the older
  // first among equals), until the budget is spent.
  std::vector<uint64_t> prefilling;
  for (uint64_t seq : running_) {
    const Entry& e = entries_[seq];
    if (e.prefilled < e.prompt_len) prefilling.push_back(seq);
  }
  if (prefilling.empty() || budget <= 0) return step;
  std::vector<int64_t> start(prefilling.size()), left(prefilling.size()), take(prefilling.size(), 0);
  for (std::size_t i = 0; i < prefilling.size(); ++i) {
    const Entry& e = entries_[prefilling[i]];
    start[i] = e.prefilled;
    if (e.prefilled == 0 && resume_hint_)
      start[i] = std::clamp<int64_t>(resume_hint_(prefilling[i]), 0, e.prompt_len - 1);
    left[i] = e.prompt_len - start[i];
  }
  const int64_t share = std::max<int64_t>(1, budget / static_cast<int64_t>(prefilling.size()));
  const std::size_t shared = limits_.equal_prefill_shares ? prefilling.size() : 1;
  for (std::size_t i = 0; i < shared && budget > 0; ++i) {
    take[i] = std::min({share, budget, left[i]});
    budget -= take[i];
  }
  std::vector<std::size_t> order(prefilling.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (!limits_.equal_prefill_shares)
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return left[a] - take[a] < left[b] - take[b]; });
  for (std::size_t i : order) {
    if (budget <= 0) break;
    const int64_t more = std::min(budget, left[i] - take[i]);
    take[i] += more;
    budget -= more;
  }
  for (std::size_t i = 0; i < prefilling.size(); ++i)
    if (take[i] > 0) step.push_back({prefilling[i], start[i], take[i]});
  return step;
}

void Scheduler::commit(const std::vector<ScheduledChunk>& step) {
  for (const auto& c : step) {
    if (c.decode()) continue;
    auto it = entries_.find(c.seq);
    if (it != entries_.end()) it->second.prefilled = std::max(it->second.prefilled, c.start + c.count);
  }
}

}  // namespace nemotron::runtime
