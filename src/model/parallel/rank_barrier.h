#pragma once
// Where the ranks of one group (threads of this process) meet inside a collective: arrive()
// returns once all `size` members have arrived, the last one first running a callback under
// the lock (a check of what the members posted). abort() (a rank failed) wakes every waiting
// member with an Error, and later arrivals throw too, until reset(). Used by the CPU's
// in-process communicator and the CUDA same-device group.
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "util/error.h"

namespace nemotron::model {

class RankBarrier {
 public:
  explicit RankBarrier(int size) : size_(size) {}

  template <class F>
  void arrive(F&& last) {
    std::unique_lock<std::mutex> lock(mu_);
    if (aborted_) throw Error("collective aborted: another rank failed");
    if (++waiting_ == size_) {
      last();
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    const uint64_t gen = generation_;
    cv_.wait(lock, [&] { return generation_ != gen || aborted_; });
    if (generation_ == gen) throw Error("collective aborted: another rank failed");
  }
  void arrive() {
    arrive([] {});
  }
  void abort() {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = true;
    cv_.notify_all();
  }
  // After every member has left its collective: usable again.
  void reset() {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = false;
    waiting_ = 0;
  }

 private:
  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

}  // namespace nemotron::model
