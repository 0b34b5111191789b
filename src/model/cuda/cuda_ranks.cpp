// CudaRanks: see cuda_ranks.h.
#include "model/cuda/cuda_ranks.h"

#include <cstring>
#include <string>

#include "util/env.h"
#include "util/error.h"

#include "model/parallel/shard.h"

namespace nemotron::model {

namespace {

// Counting only: a stand-in for the data of a slice that was not copied (never dereferenced).
void stand_in(Linear& L) {
  static const uint8_t kStandIn[16] = {};
  if (L.w.data || L.w.out <= 0 || L.w.in <= 0) return;
  L.w.data = kStandIn;
  if (L.w.format == kernels::WeightFormat::NVFP4) L.w.block_scale = kStandIn;
}

void stand_in(BlockWeights& b) {
  for (Linear* L : {&b.mamba.in_proj, &b.mamba.out_proj, &b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o, &b.moe.gate,
                    &b.moe.shared_up, &b.moe.shared_down, &b.moe.fc1_latent, &b.moe.fc2_latent, &b.mlp.up, &b.mlp.down})
    stand_in(*L);
  for (auto* list : {&b.moe.up, &b.moe.down})
    for (Linear& L : *list) stand_in(L);
}

}  // namespace

Model cuda_rank_model(const Model& m, const RankShard& shard, bool counting) {
  Model r;
  r.config = shard.config;
  r.quant = m.quant;
  r.checkpoint = m.checkpoint;
  r.weights = shard.weights;
  if (m.config.has_mtp()) r.weights.mtp.eh_proj = m.weights.mtp.eh_proj;
  if (counting) {
    for (auto& b : r.weights.blocks) stand_in(b);
    for (auto& b : r.weights.mtp.blocks) stand_in(b);
    stand_in(r.weights.lm_head);
  }
  return r;
}

CudaModelOptions cuda_rank_options(const Model& m, const RankShard& shard, const CudaModelOptions& base, int device) {
  CudaModelOptions o = base;
  o.device = device;
  o.tp_vocab = shard.tp_vocab;
  o.tp_rank = shard.layout.tp_rank;
  const Range experts = split_range(m.config.n_routed_experts, shard.layout.ep_size, shard.layout.ep_rank);
  o.expert_lo = experts.begin;
  o.expert_hi = experts.end;
  return o;
}

}  // namespace nemotron::model

#ifndef NEMOTRON_HAVE_CUDA

namespace nemotron::model {
struct CudaRanks::State {};
CudaNodeRanks cuda_node_ids(const ParallelConfig&) { throw Error("this build has no CUDA backend"); }
bool cuda_nccl_available() { return false; }
CudaRanks::CudaRanks(const Model& m, const ParallelConfig&, const CudaModelOptions&, const std::vector<int>&,
                     const CudaNodeRanks*)
    : model_(m) {
  throw Error("this build has no CUDA backend (configure with -DNEMOTRON_CUDA=ON)");
}
CudaRanks::~CudaRanks() = default;
int CudaRanks::ranks() const { return 0; }
CudaModel& CudaRanks::rank(int) { throw Error("no CUDA backend"); }
int CudaRanks::slots() const { return 0; }
int CudaRanks::acquire_slot() { throw Error("no CUDA backend"); }
void CudaRanks::release_slot(int) {}
int64_t CudaRanks::position(int) const { return 0; }
void CudaRanks::begin_step(const std::vector<StepChunk>&) { throw Error("no CUDA backend"); }
std::vector<StepOutput> CudaRanks::finish_step() { throw Error("no CUDA backend"); }
std::vector<float> CudaRanks::last_hidden() const { throw Error("no CUDA backend"); }
bool CudaRanks::can_roll_back() const { return false; }
KeepLimits CudaRanks::keep_limits() const { return {0, 0}; }
void CudaRanks::roll_back(int, int64_t) { throw Error("no CUDA backend"); }
void CudaRanks::mtp_roll_back(int, int64_t) { throw Error("no CUDA backend"); }
bool CudaRanks::can_snapshot() const { return false; }
int64_t CudaRanks::snapshot_bytes(int64_t) const { return 0; }
int64_t CudaRanks::snapshot_capacity() const { return 0; }
void CudaRanks::save_snapshot(int, uint64_t) { throw Error("no CUDA backend"); }
void CudaRanks::load_snapshot(uint64_t, int) { throw Error("no CUDA backend"); }
void CudaRanks::drop_snapshot(uint64_t) {}
std::vector<uint8_t> CudaRanks::export_snapshot(uint64_t) const { throw Error("no CUDA backend"); }
void CudaRanks::import_snapshot(uint64_t, const std::vector<uint8_t>&) { throw Error("no CUDA backend"); }
void CudaRanks::observe_prompt(int, const int32_t*, int64_t) { throw Error("no CUDA backend"); }
std::vector<float> CudaRanks::mtp_forward(int, const int32_t*, const float*, int64_t, bool) {
  throw Error("no CUDA backend");
}
int64_t CudaRanks::mtp_position(int) const { return 0; }
std::vector<std::vector<int32_t>> CudaRanks::mtp_draft(const std::vector<DraftInput>&, int) {
  throw Error("no CUDA backend");
}
void CudaRanks::mtp_feed(const std::vector<DraftInput>&) { throw Error("no CUDA backend"); }
void CudaRanks::record_routing(bool) {}
std::vector<std::vector<int32_t>> CudaRanks::routing() const { return {}; }
std::vector<int> cuda_rank_devices(int, bool) { throw Error("this build has no CUDA backend"); }
}  // namespace nemotron::model

#else

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>

#include "kernels/collective_cuda.h"
#include "model/cuda/cuda_communicator.h"
#include "model/parallel/rank_threads.h"

namespace nemotron::model {

std::vector<int> cuda_rank_devices(int world, bool same_device) {
  if (world < 1) throw Error("tensor / expert parallel: " + std::to_string(world) + " ranks");
  same_device = same_device || env_equals("NEMOTRON_SAME_DEVICE_RANKS", "1");
  if (same_device) return std::vector<int>(static_cast<std::size_t>(world), 0);
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  if (n < world)
    throw Error("tensor / expert parallel over " + std::to_string(world) + " ranks needs " + std::to_string(world) +
                " GPUs, this machine has " + std::to_string(n) +
                " (NEMOTRON_SAME_DEVICE_RANKS=1 runs every rank on GPU 0, for tests)");
  std::vector<int> d(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) d[static_cast<std::size_t>(r)] = r;
  return d;
}

struct CudaRanks::State {
  std::vector<int> devices;
  std::vector<std::unique_ptr<Model>> models;  // rank r's config (its weights are dropped once uploaded)
  // Same-device groups (all ranks on one GPU), or NCCL communicators.
  std::unique_ptr<SameDeviceGroup> world_group;
  std::vector<std::unique_ptr<SameDeviceGroup>> tp_groups;
  NcclGroups nccl;
  std::vector<CudaCommunicator*> world, tp;  // [rank]
  std::vector<std::unique_ptr<CudaModel>> ranks;
  std::unique_ptr<RankThreads> threads;

  void abort_all() {
    for (CudaCommunicator* c : world) c->abort();
    for (CudaCommunicator* c : tp) c->abort();
  }
  // fn(r) on every rank at once, each on its thread with its device current.
  void run(const std::function<void(int)>& fn) {
    try {
      threads->run([&](int r) {
        if (cudaSetDevice(devices[static_cast<std::size_t>(r)]) != cudaSuccess)
          throw Error("cudaSetDevice(" + std::to_string(devices[static_cast<std::size_t>(r)]) + ") for rank " +
                      std::to_string(r));
        fn(r);
      });
    } catch (...) {
      // Every rank has returned: the same-device groups are usable again (NCCL communicators an
      // abort took down stay down: their reset() throws, and so does the next collective).
      for (CudaCommunicator* c : world) c->reset();
      for (CudaCommunicator* c : tp) c->reset();
      throw;
    }
  }
  // Rank 0's result of fn(r, model) run on every rank.
  template <class R>
  R on_all(const std::function<R(int, CudaModel&)>& fn) {
    std::vector<R> out(ranks.size());
    run([&](int r) { out[static_cast<std::size_t>(r)] = fn(r, *ranks[static_cast<std::size_t>(r)]); });
    return std::move(out[0]);
  }
  void on_all(const std::function<void(int, CudaModel&)>& fn) {
    run([&](int r) { fn(r, *ranks[static_cast<std::size_t>(r)]); });
  }
  CudaModel& first() const { return *ranks[0]; }
};

bool cuda_nccl_available() { return nccl_available(); }

CudaNodeRanks cuda_node_ids(const ParallelConfig& p) {
  CudaNodeRanks ids;
  ids.world_id = nccl_unique_id();
  if (p.tensor_parallel < p.world())
    for (int g = 0; g < p.world() / p.tensor_parallel; ++g) ids.tp_ids.push_back(nccl_unique_id());
  return ids;
}

CudaRanks::CudaRanks(const Model& m, const ParallelConfig& p, const CudaModelOptions& o,
                     const std::vector<int>& devices, const CudaNodeRanks* node)
    : model_(m), s_(std::make_unique<State>()) {
  State& s = *s_;
  validate_parallel(m.config, p);
  const int W = p.world(), T = p.tensor_parallel;
  const int first = node ? node->first : 0, L = node ? static_cast<int>(devices.size()) : W;  // this node's ranks
  if (!node && static_cast<int>(devices.size()) != W)
    throw Error("CUDA ranks: " + std::to_string(devices.size()) + " devices for " + std::to_string(W) + " ranks");
  if (node && (L < 1 || first < 0 || first + L > W))
    throw Error("CUDA ranks: ranks [" + std::to_string(first) + ", " + std::to_string(first + L) + ") of " +
                std::to_string(W));
  if (W > kernels::kMaxCommRanks)
    throw Error("CUDA ranks: at most " + std::to_string(kernels::kMaxCommRanks) + " ranks, asked for " +
                std::to_string(W));
  s.devices = devices;
  const bool same = !node && std::all_of(devices.begin(), devices.end(), [&](int d) { return d == devices[0]; });
  if (same) {
    s.world_group = std::make_unique<SameDeviceGroup>(W, devices[0]);
    for (int r = 0; r < W; ++r) s.world.push_back(&s.world_group->member(r));
    if (T < W) {
      for (int g = 0; g < W / T; ++g) s.tp_groups.push_back(std::make_unique<SameDeviceGroup>(T, devices[0]));
      for (int r = 0; r < W; ++r) s.tp.push_back(&s.tp_groups[static_cast<std::size_t>(r / T)]->member(r % T));
    } else {
      s.tp = s.world;
    }
  } else {
    s.nccl = node ? make_nccl_node_groups(devices, first, W, T, node->world_id, node->tp_ids)
                  : make_nccl_groups(devices, T);
    for (int i = 0; i < L; ++i) {
      s.world.push_back(s.nccl.world[static_cast<std::size_t>(i)].get());
      s.tp.push_back(T < W ? s.nccl.tp[static_cast<std::size_t>(i)].get() : s.world.back());
    }
  }
  for (int i = 0; i < L; ++i) {  // local index i, rank first + i
    const int r = first + i;
    RankShard sh = shard_model(m, p, r);
    if (sh.mamba_norm_split)
      throw Error("CUDA ranks: n_groups (" + std::to_string(sh.mamba_groups) + ") smaller than " + p.describe() +
                  "'s tensor-parallel size splits a gated-norm group over ranks, which the CUDA backend does not "
                  "do yet (the CPU backend does)");
    s.models.push_back(std::make_unique<Model>(cuda_rank_model(m, sh)));
    CudaModelOptions ro = cuda_rank_options(m, sh, o, devices[static_cast<std::size_t>(i)]);
    ro.verbose = o.verbose && i == 0;
    s.ranks.push_back(std::make_unique<CudaModel>(*s.models.back(), ro,
                                                  CudaRankComms{s.tp[static_cast<std::size_t>(i)],
                                                                s.world[static_cast<std::size_t>(i)]}));
    // The rank's weights are on its device (a CudaModel reads its host weights only while it is
    // built): the slices copied for it (row-parallel ones: about half of a rank's weights) go with
    // `sh` at the end of this iteration, before the next rank's are made; nothing keeps pointers
    // into them.
    s.models.back()->weights = ModelWeights{};
  }
  s.threads = std::make_unique<RankThreads>(L, [this] { s_->abort_all(); });
  // Calls that read rank 0 alone (position, last_hidden, routing) run on this thread, which is
  // also rank 0's thread in every run(): its device is rank 0's from here on.
  if (cudaSetDevice(devices[0]) != cudaSuccess) throw Error("cudaSetDevice(" + std::to_string(devices[0]) + ")");
}

CudaRanks::~CudaRanks() = default;

int CudaRanks::ranks() const { return static_cast<int>(s_->ranks.size()); }
CudaModel& CudaRanks::rank(int r) { return *s_->ranks.at(static_cast<std::size_t>(r)); }
int CudaRanks::slots() const { return s_->first().slots(); }

int CudaRanks::acquire_slot() {
  std::vector<int> got(s_->ranks.size());
  s_->on_all([&](int r, CudaModel& m) { got[static_cast<std::size_t>(r)] = m.acquire_slot(); });
  for (int g : got)
    if (g != got[0]) throw Error("CUDA ranks: the ranks' slots went out of step (" + std::to_string(g) + " vs " +
                                 std::to_string(got[0]) + ")");
  return got[0];
}

void CudaRanks::release_slot(int slot) {
  s_->on_all([&](int, CudaModel& m) { m.release_slot(slot); });
}
int64_t CudaRanks::position(int slot) const { return s_->first().position(slot); }

void CudaRanks::begin_step(const std::vector<StepChunk>& chunks) {
  s_->on_all([&](int, CudaModel& m) { m.begin_step(chunks); });
}

std::vector<StepOutput> CudaRanks::finish_step() {
  return s_->on_all<std::vector<StepOutput>>([](int, CudaModel& m) { return m.finish_step(); });
}

std::vector<float> CudaRanks::last_hidden() const { return s_->first().last_hidden(); }
bool CudaRanks::can_roll_back() const { return s_->first().can_roll_back(); }
KeepLimits CudaRanks::keep_limits() const { return s_->first().keep_limits(); }

void CudaRanks::roll_back(int slot, int64_t pos) {
  s_->on_all([&](int, CudaModel& m) { m.roll_back(slot, pos); });
}
void CudaRanks::mtp_roll_back(int slot, int64_t pos) {
  s_->on_all([&](int, CudaModel& m) { m.mtp_roll_back(slot, pos); });
}

bool CudaRanks::can_snapshot() const { return s_->first().can_snapshot(); }

int64_t CudaRanks::snapshot_bytes(int64_t pos) const {
  int64_t most = 0;
  for (const auto& m : s_->ranks) most = std::max(most, m->snapshot_bytes(pos));
  return most * static_cast<int64_t>(s_->ranks.size());
}

int64_t CudaRanks::snapshot_capacity() const {
  int64_t least = INT64_MAX;
  for (const auto& m : s_->ranks) least = std::min(least, m->snapshot_capacity());
  const auto W = static_cast<int64_t>(s_->ranks.size());
  return least > INT64_MAX / W ? INT64_MAX : least * W;
}

void CudaRanks::save_snapshot(int slot, uint64_t id) {
  s_->on_all([&](int, CudaModel& m) { m.save_snapshot(slot, id); });
}
void CudaRanks::load_snapshot(uint64_t id, int slot) {
  s_->on_all([&](int, CudaModel& m) { m.load_snapshot(id, slot); });
}
void CudaRanks::drop_snapshot(uint64_t id) {
  s_->on_all([&](int, CudaModel& m) { m.drop_snapshot(id); });
}

std::vector<uint8_t> CudaRanks::export_snapshot(uint64_t id) const {
  std::vector<std::vector<uint8_t>> parts(s_->ranks.size());
  s_->run([&](int r) { parts[static_cast<std::size_t>(r)] = s_->ranks[static_cast<std::size_t>(r)]->export_snapshot(id); });
  std::vector<uint8_t> out;
  for (const auto& part : parts) {
    const uint64_t n = part.size();
    const auto* b = reinterpret_cast<const uint8_t*>(&n);
    out.insert(out.end(), b, b + 8);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

void CudaRanks::import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) {
  std::vector<std::vector<uint8_t>> parts;
  std::size_t at = 0;
  while (at < bytes.size() && parts.size() < s_->ranks.size()) {
    uint64_t n = 0;
    if (bytes.size() - at < 8) break;
    std::memcpy(&n, bytes.data() + at, 8);
    at += 8;
    if (n > bytes.size() - at) break;
    parts.emplace_back(bytes.begin() + static_cast<std::ptrdiff_t>(at), bytes.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
  }
  if (parts.size() != s_->ranks.size() || at != bytes.size())
    throw Error("snapshot bytes: not a snapshot of " + std::to_string(s_->ranks.size()) +
                " CUDA ranks (each rank's bytes behind an 8-byte length)");
  s_->on_all([&](int r, CudaModel& m) { m.import_snapshot(id, parts[static_cast<std::size_t>(r)]); });
}

void CudaRanks::observe_prompt(int slot, const int32_t* ids, int64_t n) {
  s_->on_all([&](int, CudaModel& m) { m.observe_prompt(slot, ids, n); });
}

std::vector<float> CudaRanks::mtp_forward(int slot, const int32_t* next_ids, const float* hidden, int64_t T,
                                          bool all_logits) {
  return s_->on_all<std::vector<float>>(
      [&](int, CudaModel& m) { return m.mtp_forward(slot, next_ids, hidden, T, all_logits); });
}
int64_t CudaRanks::mtp_position(int slot) const { return s_->first().mtp_position(slot); }

std::vector<std::vector<int32_t>> CudaRanks::mtp_draft(const std::vector<DraftInput>& inputs, int K) {
  return s_->on_all<std::vector<std::vector<int32_t>>>([&](int, CudaModel& m) { return m.mtp_draft(inputs, K); });
}
void CudaRanks::mtp_feed(const std::vector<DraftInput>& inputs) {
  s_->on_all([&](int, CudaModel& m) { m.mtp_feed(inputs); });
}

void CudaRanks::record_routing(bool on) {
  s_->on_all([&](int, CudaModel& m) { m.record_routing(on); });
}
std::vector<std::vector<int32_t>> CudaRanks::routing() const { return s_->first().routing(); }

}  // namespace nemotron::model

#endif
