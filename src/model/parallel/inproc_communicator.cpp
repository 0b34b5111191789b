#include "model/parallel/inproc_communicator.h"

#include <algorithm>
#include <string>

#include "util/error.h"

namespace nemotron::model {

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(InProcessGroup& g, int rank) : g_(g), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.size_; }

  void all_reduce_sum(float* data, int64_t n) override {
    const int N = g_.size_;
    if (N == 1) return;
    g_.posts_[rank_] = {data, data, n};
    g_.barrier_.arrive([&] {
      g_.mismatch_ = std::any_of(g_.posts_.begin(), g_.posts_.end(), [&](const auto& p) { return p.n != n; });
      if (!g_.mismatch_) g_.result_.resize(static_cast<std::size_t>(n));
    });
    check("all_reduce_sum");
    const int64_t i0 = n * rank_ / N, i1 = n * (rank_ + 1) / N;
    for (int64_t i = i0; i < i1; ++i) {
      float s = g_.posts_[0].in[i];
      for (int q = 1; q < N; ++q) s += g_.posts_[q].in[i];
      g_.result_[i] = s;
    }
    g_.barrier_.arrive();  // the result is complete
    std::copy(g_.result_.begin(), g_.result_.begin() + n, data);
    g_.barrier_.arrive();  // nobody reuses result_ before every rank has copied it
  }

  void all_gather(const float* in, const std::vector<int64_t>& counts, float* out) override {
    const int N = g_.size_;
    if (static_cast<int>(counts.size()) != N)
      throw Error("all_gather: " + std::to_string(counts.size()) + " counts for a group of " + std::to_string(N));
    g_.posts_[rank_] = {in, out, counts[rank_]};
    g_.barrier_.arrive([&] {
      g_.mismatch_ = false;
      for (int q = 0; q < N; ++q) g_.mismatch_ |= g_.posts_[q].n != counts[q];
    });
    check("all_gather");
    int64_t at = 0;
    for (int q = 0; q < N; ++q) {
      std::copy(g_.posts_[q].in, g_.posts_[q].in + counts[q], out + at);
      at += counts[q];
    }
    g_.barrier_.arrive();  // every rank has read every input
  }

  void barrier() override { g_.barrier_.arrive(); }

 private:
  void check(const char* what) const {
    if (g_.mismatch_)
      throw Error(std::string(what) + ": the ranks of a group passed different sizes (rank " + std::to_string(rank_) +
                  " of " + std::to_string(g_.size_) + ")");
  }
  InProcessGroup& g_;
  const int rank_;
};

InProcessGroup::InProcessGroup(int size) : size_(size), posts_(static_cast<std::size_t>(size)), barrier_(size) {
  if (size < 1) throw Error("communicator group of " + std::to_string(size) + " ranks");
  for (int r = 0; r < size; ++r) members_.push_back(std::make_unique<InProcessCommunicator>(*this, r));
}

InProcessGroup::~InProcessGroup() = default;

Communicator& InProcessGroup::member(int rank) { return *members_.at(static_cast<std::size_t>(rank)); }

void InProcessGroup::abort() { barrier_.abort(); }

void InProcessGroup::reset() {
  barrier_.reset();
  mismatch_ = false;
}

}  // namespace nemotron::model
