#include "runtime/scheduler.h"

#include <algorithm>

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

std::vector<ScheduledChunk> Scheduler::schedule() {
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
  int64_t budget = limits_.max_step_tokens;
  for (uint64_t seq : running_) {
    if (budget <= 0) break;
    const Entry& e = entries_[seq];
    if (e.prefilled == e.prompt_len) {
      step.push_back({seq, -1, 1});
      budget -= 1 + e.lookahead;
    }
  }
  for (uint64_t seq : running_) {
    if (budget <= 0) break;
    const Entry& e = entries_[seq];
    if (e.prefilled < e.prompt_len) {
      const int64_t n = std::min(budget, e.prompt_len - e.prefilled);
      step.push_back({seq, e.prefilled, n});
      budget -= n;
    }
  }
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
