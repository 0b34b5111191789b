#pragma once
// A small fixed thread pool for the CPU reference path.
// parallel_for(n, fn) calls fn(begin, end) on disjoint ranges covering [0, n); it returns
// when all ranges are done. Nested calls from inside a worker run serially.
#include <cstddef>
#include <functional>

namespace nemotron {

// Number of worker threads (NEMOTRON_THREADS, else hardware concurrency).
int num_threads();

void parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn,
                  std::size_t min_chunk = 1);

// Whether parallel_for on this thread runs serially (inside a worker, or a SerialScope).
bool parallel_for_is_serial();

// While alive, parallel_for on this thread runs serially: for threads that work for a caller
// which is itself inside a parallel_for (the pool runs one job at a time).
class SerialScope {
 public:
  SerialScope();
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool prev_;
};

}  // namespace nemotron
