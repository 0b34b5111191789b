#pragma once
// Runs one function per rank: rank 0 on the calling thread, ranks 1..n-1 on threads kept for
// the runner's lifetime (ranks as threads: the CPU backend's sharded forward). When a rank
// throws, `on_error` runs (abort the communicators, so that ranks blocked in a collective
// return), and run() rethrows the first error once every rank has returned. A caller that is
// itself inside a parallel_for gets ranks whose own parallel_for runs serially (util/parallel).
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nemotron::model {

class RankThreads {
 public:
  RankThreads(int n, std::function<void()> on_error);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  int size() const { return n_; }
  void run(const std::function<void(int rank)>& fn);

 private:
  void loop(int rank);
  void call(int rank);

  const int n_;
  std::function<void()> on_error_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool serial_ = false, stop_ = false;
  std::exception_ptr error_;
};

}  // namespace nemotron::model
