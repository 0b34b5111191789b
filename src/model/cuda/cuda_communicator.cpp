// CUDA communicators (cuda_communicator.h): the same-device group and NCCL.
#ifdef NEMOTRON_HAVE_CUDA

#include "model/cuda/cuda_communicator.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "kernels/collective_cuda.h"
#include "util/error.h"

#ifdef NEMOTRON_HAVE_NCCL
#include <nccl.h>
#endif

namespace nemotron::model {

namespace {

void check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw Error(what + ": " + cudaGetErrorString(e));
}

int64_t type_bytes(CommType t) { return t == CommType::BF16 ? 2 : 4; }

}  // namespace

// Every collective runs in three host-ordered phases (barriers) whose device order comes from
// events: (1) a rank records `ready` after its input and posts it; (2) each rank waits for
// every rank's `ready`, reads all inputs (the sum into its scratch, or the gather's copies) and
// records `read`; (3) each rank waits for every rank's `read` before its stream may write its
// input again (the sum's copy back from scratch).
class SameDeviceCommunicator final : public CudaCommunicator {
 public:
  SameDeviceCommunicator(SameDeviceGroup& g, int rank) : g_(g), rank_(rank) {}
  ~SameDeviceCommunicator() override {
    if (scratch_) cudaFree(scratch_);
  }
  int rank() const override { return rank_; }
  int size() const override { return g_.size_; }
  bool capturable() const override { return false; }

  void all_reduce_sum(void* data, int64_t n, CommType t, cudaStream_t stream) override {
    // n == 0 still meets the others: a rank that skipped would leave them waiting on a mismatch.
    if (g_.size_ == 1) return;
    const int64_t bytes = n * type_bytes(t);
    grow(bytes);
    post(data, n, t, stream);
    std::vector<const void*> in(static_cast<std::size_t>(g_.size_));
    for (int q = 0; q < g_.size_; ++q) in[static_cast<std::size_t>(q)] = g_.posts_[static_cast<std::size_t>(q)].in;
    kernels::sum_buffers_cuda(in.data(), g_.size_, scratch_, n, t == CommType::BF16, stream);
    finish_reads(stream);
    if (bytes > 0)
      check(cudaMemcpyAsync(data, scratch_, static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice, stream),
            "all_reduce_sum copy");
  }

  void all_gather(const void* in, int64_t count, CommType t, void* out, cudaStream_t stream) override {
    const int64_t bytes = count * type_bytes(t);
    if (g_.size_ == 1) {
      if (bytes > 0 && in != out)
        check(cudaMemcpyAsync(out, in, static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice, stream),
              "all_gather copy");
      return;
    }
    post(in, count, t, stream);
    for (int q = 0; q < g_.size_; ++q)
      if (bytes > 0)
        check(cudaMemcpyAsync(static_cast<uint8_t*>(out) + q * bytes, g_.posts_[static_cast<std::size_t>(q)].in,
                              static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice, stream),
              "all_gather copy");
    finish_reads(stream);
  }

  void abort() override { g_.barrier_.abort(); }
  void reset() override {
    g_.barrier_.reset();
    g_.mismatch_ = false;
  }

 private:
  void grow(int64_t bytes) {
    if (bytes <= scratch_bytes_) return;
    if (scratch_) cudaFree(scratch_);
    scratch_ = nullptr;
    check(cudaMalloc(&scratch_, static_cast<std::size_t>(bytes)), "same-device group scratch");
    scratch_bytes_ = bytes;
  }
  // Phase 1, then every rank's input ready on this stream.
  void post(const void* in, int64_t n, CommType t, cudaStream_t stream) {
    check(cudaEventRecord(g_.ready_[static_cast<std::size_t>(rank_)], stream), "collective event");
    g_.posts_[static_cast<std::size_t>(rank_)] = {in, n, t};
    g_.barrier_.arrive([&] {
      g_.mismatch_ = false;
      for (const auto& p : g_.posts_) g_.mismatch_ |= p.n != g_.posts_[0].n || p.t != g_.posts_[0].t;
    });
    if (g_.mismatch_)
      throw Error("collective: the ranks of a group passed different sizes or types (rank " + std::to_string(rank_) +
                  " of " + std::to_string(g_.size_) + ")");
    for (int q = 0; q < g_.size_; ++q)
      if (q != rank_) check(cudaStreamWaitEvent(stream, g_.ready_[static_cast<std::size_t>(q)], 0), "collective wait");
  }
  // Phase 2's end and phase 3: no rank writes its input before every rank has read it.
  void finish_reads(cudaStream_t stream) {
    check(cudaEventRecord(g_.read_[static_cast<std::size_t>(rank_)], stream), "collective event");
    g_.barrier_.arrive();
    for (int q = 0; q < g_.size_; ++q)
      if (q != rank_) check(cudaStreamWaitEvent(stream, g_.read_[static_cast<std::size_t>(q)], 0), "collective wait");
  }

  SameDeviceGroup& g_;
  const int rank_;
  void* scratch_ = nullptr;
  int64_t scratch_bytes_ = 0;
};

SameDeviceGroup::SameDeviceGroup(int size, int device)
    : size_(size), device_(device), posts_(static_cast<std::size_t>(std::max(size, 0))), barrier_(size) {
  if (size < 1 || size > kernels::kMaxCommRanks)
    throw Error("same-device group of " + std::to_string(size) + " ranks (1.." +
                std::to_string(kernels::kMaxCommRanks) + ")");
  check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
  for (int r = 0; r < size; ++r) {
    members_.push_back(std::make_unique<SameDeviceCommunicator>(*this, r));
    cudaEvent_t a = nullptr, b = nullptr;
    check(cudaEventCreateWithFlags(&a, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&b, cudaEventDisableTiming), "cudaEventCreate");
    ready_.push_back(a);
    read_.push_back(b);
  }
}

SameDeviceGroup::~SameDeviceGroup() {
  members_.clear();
  for (cudaEvent_t e : ready_) cudaEventDestroy(e);
  for (cudaEvent_t e : read_) cudaEventDestroy(e);
}

CudaCommunicator& SameDeviceGroup::member(int rank) { return *members_.at(static_cast<std::size_t>(rank)); }

#ifdef NEMOTRON_HAVE_NCCL

namespace {

void nccl_check(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess) throw Error(what + ": " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(CommType t) { return t == CommType::BF16 ? ncclBfloat16 : ncclFloat32; }

class NcclCommunicator final : public CudaCommunicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool capturable() const override { return true; }
  void all_reduce_sum(void* data, int64_t n, CommType t, cudaStream_t stream) override {
    if (size_ == 1 || n == 0) return;
    nccl_check(ncclAllReduce(data, data, static_cast<std::size_t>(n), nccl_type(t), ncclSum, comm_, stream),
               "ncclAllReduce");
  }
  void all_gather(const void* in, int64_t count, CommType t, void* out, cudaStream_t stream) override {
    nccl_check(ncclAllGather(in, out, static_cast<std::size_t>(count), nccl_type(t), comm_, stream), "ncclAllGather");
  }
  void abort() override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  void reset() override {
    if (!comm_) throw Error("NCCL communicator of rank " + std::to_string(rank_) + " was aborted");
  }

 private:
  ncclComm_t comm_;
  const int rank_, size_;
};

ncclUniqueId unique_id(const std::vector<uint8_t>& bytes) {
  ncclUniqueId id{};
  if (bytes.size() != sizeof id)
    throw Error("NCCL: a unique id of " + std::to_string(bytes.size()) + " bytes (this NCCL's is " +
                std::to_string(sizeof id) + ": another NCCL version on another node?)");
  std::memcpy(&id, bytes.data(), sizeof id);
  return id;
}

// Ranks [first, first + devices.size()) of a group of `size` ranks that joins through `id`.
std::vector<std::unique_ptr<CudaCommunicator>> init_ranks(const std::vector<int>& devices, int first, int size,
                                                          const ncclUniqueId& id) {
  std::vector<ncclComm_t> comms(devices.size());
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  for (std::size_t i = 0; i < devices.size(); ++i) {
    check(cudaSetDevice(devices[i]), "cudaSetDevice(" + std::to_string(devices[i]) + ")");
    nccl_check(ncclCommInitRank(&comms[i], size, id, first + static_cast<int>(i)), "ncclCommInitRank");
  }
  nccl_check(ncclGroupEnd(), "ncclCommInitRank (group)");
  std::vector<std::unique_ptr<CudaCommunicator>> out;
  for (std::size_t i = 0; i < comms.size(); ++i)
    out.push_back(std::make_unique<NcclCommunicator>(comms[i], first + static_cast<int>(i), size));
  return out;
}

}  // namespace

bool nccl_available() { return true; }

std::vector<uint8_t> nccl_unique_id() {
  ncclUniqueId id{};
  nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  const auto* b = reinterpret_cast<const uint8_t*>(&id);
  return {b, b + sizeof id};
}

NcclGroups make_nccl_node_groups(const std::vector<int>& devices, int first, int world, int tp,
                                 const std::vector<uint8_t>& world_id, const std::vector<std::vector<uint8_t>>& tp_ids) {
  const int L = static_cast<int>(devices.size());
  if (std::set<int>(devices.begin(), devices.end()).size() != devices.size())
    throw Error("NCCL: each rank needs its own GPU (a device appears twice among the ranks' devices)");
  if (tp < 1 || world % tp != 0 || first < 0 || first + L > world)
    throw Error("NCCL: ranks [" + std::to_string(first) + ", " + std::to_string(first + L) + ") of " +
                std::to_string(world) + " with TP " + std::to_string(tp));
  if (tp < world && static_cast<int>(tp_ids.size()) != world / tp)
    throw Error("NCCL: " + std::to_string(tp_ids.size()) + " TP group ids for " + std::to_string(world / tp) +
                " groups");
  NcclGroups g;
  g.world = init_ranks(devices, first, world, unique_id(world_id));
  if (tp < world)
    for (int i = 0; i < L;) {  // this node's ranks group by group
      const int r = first + i, grp = r / tp, n = std::min(L - i, (grp + 1) * tp - r);
      auto part = init_ranks(std::vector<int>(devices.begin() + i, devices.begin() + i + n), r % tp, tp,
                             unique_id(tp_ids[static_cast<std::size_t>(grp)]));
      for (auto& c : part) g.tp.push_back(std::move(c));
      i += n;
    }
  return g;
}

NcclGroups make_nccl_groups(const std::vector<int>& devices, int tp) {
  // One process holding every rank: the nodes' way with fresh ids (what ncclCommInitAll does).
  const int W = static_cast<int>(devices.size());
  if (tp < 1 || W % tp != 0) throw Error("NCCL: " + std::to_string(tp) + " TP ranks do not divide the world");
  std::vector<std::vector<uint8_t>> tp_ids;
  if (tp < W)
    for (int g = 0; g < W / tp; ++g) tp_ids.push_back(nccl_unique_id());
  return make_nccl_node_groups(devices, 0, W, tp, nccl_unique_id(), tp_ids);
}

#else

bool nccl_available() { return false; }

NcclGroups make_nccl_groups(const std::vector<int>&, int) {
  throw Error("this build has no NCCL: tensor / expert parallel over several GPUs needs it (install libnccl-dev "
              "or the CUDA toolkit's NCCL and reconfigure)");
}

NcclGroups make_nccl_node_groups(const std::vector<int>&, int, int, int, const std::vector<uint8_t>&,
                                 const std::vector<std::vector<uint8_t>>&) {
  return make_nccl_groups({}, 1);
}

std::vector<uint8_t> nccl_unique_id() {
  make_nccl_groups({}, 1);
  return {};
}

#endif

}  // namespace nemotron::model

#endif
