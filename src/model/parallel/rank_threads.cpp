#include "model/parallel/rank_threads.h"

#include <optional>

#include "util/parallel.h"

namespace nemotron::model {

RankThreads::RankThreads(int n, std::function<void()> on_error) : n_(n), on_error_(std::move(on_error)) {
  for (int r = 1; r < n; ++r) threads_.emplace_back([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void RankThreads::call(int rank) {
  try {
    std::optional<SerialScope> serial;
    if (serial_) serial.emplace();
    (*job_)(rank);
  } catch (...) {
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) {
        error_ = std::current_exception();
        first = true;
      }
    }
    if (first && on_error_) on_error_();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (--pending_ == 0) done_cv_.notify_all();
}

void RankThreads::loop(int rank) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    call(rank);
  }
}

void RankThreads::run(const std::function<void(int)>& fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    pending_ = n_;
    error_ = nullptr;
    serial_ = parallel_for_is_serial();
    ++generation_;
  }
  cv_.notify_all();
  call(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

}  // namespace nemotron::model
