// Per-op timing of eager trunk steps and of the MTP head's steps (their ops named "mtp.<op>")
// (CudaModel::set_profiling, `nemotron bench --profile`).
// A step is enqueued behind a 20 ms device-side wait, so the host has queued its kernels (and
// the events between them) before the first one runs: event-to-event times are then kernel
// times plus the device's own gap between kernels, as in a graph replay.
#ifdef NEMOTRON_HAVE_CUDA

#include <cstring>
#include <string>

#include "kernels/elementwise_cuda.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using cuda_detail::check;

void CudaModel::Impl::prof_begin() {
  if (!profiling) return;
  if (!prof_start) check(cudaEventCreate(&prof_start), "cudaEventCreate");
  marks.clear();
  kernels::device_wait_cuda(20'000'000, stream);
  check(cudaEventRecord(prof_start, stream), "profile event");
  prof_active = true;
}

void CudaModel::Impl::mark(const char* op, double weight_bytes) {
  if (!prof_active) return;
  if (marks.size() == prof_events.size()) {
    cudaEvent_t e = nullptr;
    check(cudaEventCreate(&e), "cudaEventCreate");
    prof_events.push_back(e);
  }
  const cudaEvent_t e = prof_events[marks.size()];
  check(cudaEventRecord(e, stream), "profile event");
  marks.push_back({prof_prefix, op, weight_bytes, e});
}

void CudaModel::Impl::prof_end() {
  if (!prof_active) return;
  prof_active = false;
  cudaEvent_t prev = prof_start;
  for (const Mark& m : marks) {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, prev, m.ev), "profile event");
    prev = m.ev;
    const std::string name = std::string(m.prefix) + m.op;
    auto it = std::find_if(prof_totals.begin(), prof_totals.end(),
                           [&](const CudaModel::OpTime& t) { return t.op == name; });
    if (it == prof_totals.end()) it = prof_totals.insert(prof_totals.end(), CudaModel::OpTime{name, 0, 0, 0});
    it->ms += ms;
    it->calls += 1;
    it->weight_bytes += m.bytes;
  }
  marks.clear();
}

void CudaModel::set_profiling(bool on) {
  Impl& s = *impl_;
  s.profiling = on;
  s.prof_active = false;
  if (on) s.prof_totals.clear();
}

std::vector<CudaModel::OpTime> CudaModel::profile() const { return impl_->prof_totals; }

}  // namespace nemotron::model

#endif
