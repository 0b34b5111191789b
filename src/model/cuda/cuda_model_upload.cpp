// CudaModel's device arenas: the placing allocator of the buffer walk (cuda_buffers.h,
// cuda_model_internal.h), and the slots' host bookkeeping.
#ifdef NEMOTRON_HAVE_CUDA

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

namespace cuda_detail {

namespace {

std::string gb(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB", static_cast<double>(bytes) / 1e9);
  return buf;
}

}  // namespace

DeviceArenas::~DeviceArenas() {
  for (uint8_t* p : base_)
    if (p) cudaFree(p);
  for (void* p : extra_) cudaFree(p);
  for (void* p : host_) cudaFreeHost(p);
}

void DeviceArenas::reserve(const ArenaTable& counted, bool verbose, bool unified_memory) {
  if (placing() || table_.takes > 0) throw Error("CUDA model: device arenas reserved twice");
  counted_ = counted;
  verbose_ = verbose;
  // Callers that plan (serve, run) were refused before loading if this does not fit; the others
  // (bench, score, tests) are refused here, before any arena is taken. Not on unified memory:
  // there the GPU's free memory leaves out page cache the driver can reclaim (the checkpoint's
  // own pages, read since the plan), so it is no bound; the plan's MemAvailable rule is.
  std::size_t free_bytes = 0, total_bytes = 0;
  if (!unified_memory && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess &&
      counted.device() > static_cast<int64_t>(free_bytes))
    throw Error("CUDA model: needs " + gb(counted.device()) + " of device memory (weights " +
                gb(counted.of(ArenaKind::Weights)) + ", cache " + gb(counted.of(ArenaKind::Cache)) + ", step " +
                gb(counted.of(ArenaKind::Step)) + ") and the device has " + gb(static_cast<int64_t>(free_bytes)) +
                " free of " + gb(static_cast<int64_t>(total_bytes)) +
                ": ask for fewer sequences, shorter contexts or a smaller step budget (serve / run: "
                "--max-num-seqs, --max-model-len, --max-step-tokens; bench: --batch, --spec-batch, --depths)");
  for (int k = 0; k < kArenaKinds; ++k) {
    // An empty arena still gets a base (the walk takes at least 256 bytes per buffer, so only
    // a walk that takes nothing from it leaves it empty); check_consumed holds it to 0 bytes.
    const int64_t n = std::max<int64_t>(counted.arena[k], kArenaAlign);
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, static_cast<std::size_t>(n));
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw Error(std::string("cudaMalloc of the ") + arena_name(static_cast<ArenaKind>(k)) + " arena (" +
                  std::to_string(n) + " bytes, " + gb(n) + "): " + cudaGetErrorString(e) +
                  "; the memory plan counted it: is another process using the device?");
    }
    base_[k] = static_cast<uint8_t*>(p);
  }
}

void DeviceArenas::check_consumed() const {
  for (int k = 0; k < kArenaKinds; ++k)
    if (table_.arena[k] != counted_.arena[k])
      throw Error(std::string("CUDA model: the placing walk took ") + std::to_string(table_.arena[k]) +
                  " bytes of the " + arena_name(static_cast<ArenaKind>(k)) + " arena, the counting walk " +
                  std::to_string(counted_.arena[k]) + " (the walk must not depend on its mode)");
  if (table_.pinned_host != counted_.pinned_host || table_.takes != counted_.takes)
    throw Error("CUDA model: the placing walk took " + std::to_string(table_.takes) + " buffers and " +
                std::to_string(table_.pinned_host) + " pinned bytes, the counting walk " +
                std::to_string(counted_.takes) + " and " + std::to_string(counted_.pinned_host));
}

void DeviceArenas::copy(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  // Synchronous: from pageable memory it returns once the source has been read.
  check(cudaMemcpy(dst, src, static_cast<std::size_t>(bytes), cudaMemcpyHostToDevice), "weight upload");
  if (release_from_) sources_.emplace_back(static_cast<const uint8_t*>(src), static_cast<std::size_t>(bytes));
}

void DeviceArenas::produce(void* dst, int64_t bytes, const Fill& fill, const void* source, int64_t source_bytes) {
  if (bytes <= 0) return;
  std::vector<uint8_t> host(static_cast<std::size_t>(bytes));
  fill(host.data());
  check(cudaMemcpy(dst, host.data(), host.size(), cudaMemcpyHostToDevice), "weight upload");
  if (release_from_ && source && source_bytes > 0)
    sources_.emplace_back(static_cast<const uint8_t*>(source), static_cast<std::size_t>(source_bytes));
}

void DeviceArenas::zero(void* dst, int64_t bytes) {
  if (bytes > 0) check(cudaMemset(dst, 0, static_cast<std::size_t>(bytes)), "cudaMemset");
}

void* DeviceArenas::pinned(int64_t bytes) {
  DeviceAllocator::pinned(bytes);  // counts
  void* p = nullptr;
  const auto n = static_cast<std::size_t>(std::max<int64_t>(bytes, 16));
  check(cudaMallocHost(&p, n), "cudaMallocHost of " + std::to_string(n) + " bytes");
  host_.push_back(p);
  std::memset(p, 0, n);  // async copies from it never stage through the driver
  return p;
}

void DeviceArenas::weights_done() {
  if (release_from_ && !sources_.empty()) {
    // Tensors of a block lie together in the file: merge neighbours (small gaps are other
    // tensors of the block, read at load time) so that whole runs of pages go at once.
    std::vector<std::pair<uintptr_t, uintptr_t>> runs;  // [begin, end) addresses
    for (const auto& [p, n] : sources_)
      runs.emplace_back(reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + n);
    std::sort(runs.begin(), runs.end());
    std::size_t kept = 0;
    for (std::size_t i = 1; i < runs.size(); ++i) {
      if (runs[i].first <= runs[kept].second + 65536) runs[kept].second = std::max(runs[kept].second, runs[i].second);
      else runs[++kept] = runs[i];
    }
    runs.resize(kept + 1);
    for (const auto& [b, e] : runs) release_from_->release_pages(reinterpret_cast<const void*>(b), e - b);
    sources_.clear();
  }
  if (verbose_) {
    std::fprintf(stderr, "\ruploading weights: %s of %s", gb(table_.of(ArenaKind::Weights)).c_str(),
                 gb(counted_.of(ArenaKind::Weights)).c_str());
    std::fflush(stderr);
  }
}

void* DeviceArenas::alloc(std::size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<std::size_t>(n, 16)), "cudaMalloc of " + std::to_string(n) + " bytes");
  extra_.push_back(p);
  extra_bytes_ += static_cast<int64_t>(n);
  return p;
}

}  // namespace cuda_detail

void CudaModel::Impl::init_slots() {
  const int S = opt.max_seqs;
  in_use.assign(static_cast<std::size_t>(S), false);
  for (Stack* st : {&trunk, &mtp}) {
    if (st == &mtp && !model.config.has_mtp()) continue;
    st->pos.assign(static_cast<std::size_t>(S), 0);
    st->pages.assign(static_cast<std::size_t>(S), {});
    for (int64_t p = num_pages - 1; p >= 0; --p) st->free_pages.push_back(static_cast<int32_t>(p));
  }
}

}  // namespace nemotron::model

#endif
