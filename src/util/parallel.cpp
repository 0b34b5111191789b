#include "util/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace nemotron {
namespace {

thread_local bool t_in_worker = false;

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i) for i in [0, count), the caller taking part. One job at a time.
  void run(int count, const std::function<void(int)>& task) {
    std::lock_guard<std::mutex> job_lock(job_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      task_ = &task;
      count_ = count;
      next_ = 0;
      pending_ = count;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    t_in_worker = true;
    work();
    t_in_worker = false;
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    for (;;) {
      int i;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!task_ || next_ >= count_) return;
        i = next_++;
      }
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
  void loop() {
    t_in_worker = true;
    unsigned long seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (generation_ != seen && task_ && next_ < count_); });
        if (stop_) return;
        seen = generation_;
      }
      work();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex job_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* task_ = nullptr;
  int count_ = 0, next_ = 0, pending_ = 0;
  unsigned long generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p(num_threads());
  return p;
}

}  // namespace

bool parallel_for_is_serial() { return t_in_worker; }

SerialScope::SerialScope() : prev_(t_in_worker) { t_in_worker = true; }

SerialScope::~SerialScope() { t_in_worker = prev_; }

int num_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("NEMOTRON_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) return v;
    }
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }();
  return n;
}

void parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn,
                  std::size_t min_chunk) {
  if (n == 0) return;
  min_chunk = std::max<std::size_t>(1, min_chunk);
  const std::size_t threads = static_cast<std::size_t>(num_threads());
  if (t_in_worker || threads == 1 || n <= min_chunk) {
    fn(0, n);
    return;
  }
  // A few chunks per thread for balance, none smaller than min_chunk.
  std::size_t chunks = std::min((n + min_chunk - 1) / min_chunk, threads * 4);
  const std::size_t step = (n + chunks - 1) / chunks;
  chunks = (n + step - 1) / step;
  pool().run(static_cast<int>(chunks), [&](int c) {
    const std::size_t b = static_cast<std::size_t>(c) * step;
    fn(b, std::min(n, b + step));
  });
}

}  // namespace nemotron
