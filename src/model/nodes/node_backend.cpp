// model/nodes/node_backend.h: the hello, the leader's forwarding Backend, the follower loop.
#include "model/nodes/node_backend.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <type_traits>

#include "model/cpu/cpu_backend.h"
#include "model/cuda/cuda_model.h"
#include "model/cuda/cuda_ranks.h"
#include "model/nodes/node_wire.h"
#include "model/parallel/socket_communicator.h"
#include "model/parallel/socket_mesh.h"

namespace nemotron::model {
namespace {

using nodes::ByteReader;
using nodes::ByteWriter;
using nodes::Call;

constexpr char kMagic[8] = {'N', 'E', 'M', 'O', 'N', 'O', 'D', '1'};
constexpr char kSnapMagic[8] = {'N', 'O', 'D', 'E', 'S', 'N', 'P', '1'};

// Ends the process (status 1, naming the node) when a peer closes its link while this node is
// not stopping: a node that stopped or died. Checked every 100 ms; a closed link waits 5 s for
// stop() first (a follower reads node 0's bye while node 0 is already closing, and its peers
// close as they end). This catches what the calls cannot: a follower gone while node 0 idles,
// and NCCL collectives that would wait forever for a dead rank.
class LinkWatch {
 public:
  explicit LinkWatch(const Mesh& mesh) : mesh_(mesh), thread_([this] { watch(); }) {}
  ~LinkWatch() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  void watch() {
    using namespace std::chrono_literals;
    while (!stop_) {
      for (int q = 0; q < mesh_.world && !stop_; ++q) {
        if (q == mesh_.rank || !mesh_.links[static_cast<std::size_t>(q)]->peer_gone()) continue;
        for (int i = 0; i < 50 && !stop_; ++i) std::this_thread::sleep_for(100ms);
        if (stop_) return;
        std::fprintf(stderr, "error: node %d failed or disconnected (its connection to node %d closed); stopping\n",
                     q, mesh_.rank);
        std::fflush(stderr);
        std::_Exit(1);
      }
      std::this_thread::sleep_for(100ms);
    }
  }
  const Mesh& mesh_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// This process's part of the run: the links, its rank's communicators, its backend, the watch.
// Members are destroyed in reverse order: the watch, then the backend, which holds the
// communicators, which hold the mesh.
struct NodeRun {
  Mesh mesh;
  std::unique_ptr<SocketCommunicator> world, tp;
  std::unique_ptr<Backend> local;
  std::unique_ptr<LinkWatch> watch;
};

// The mesh and, on the CPU (one rank per node), the rank's communicators over it.
std::unique_ptr<NodeRun> join(const ParallelConfig& p, const std::string& device) {
  auto run = std::make_unique<NodeRun>();
  run->mesh = connect_mesh(p.node_rank, p.nnodes, p.master_addr, p.master_port);
  if (device != "cpu") return run;  // CUDA ranks meet through NCCL
  std::vector<int> all(static_cast<std::size_t>(p.nnodes));
  for (int q = 0; q < p.nnodes; ++q) all[static_cast<std::size_t>(q)] = q;
  run->world = std::make_unique<SocketCommunicator>(run->mesh, all);
  const int T = p.tensor_parallel;
  if (T < p.world()) {  // the TP group of this rank's replica of the dense part
    std::vector<int> group;
    for (int q = p.node_rank / T * T; q < (p.node_rank / T + 1) * T; ++q) group.push_back(q);
    run->tp = std::make_unique<SocketCommunicator>(run->mesh, group);
  }
  return run;
}

// This node's backend: the CPU's rank over the socket communicators, or the node's CUDA ranks
// (GPUs 0 .. local_ranks - 1) joined to the others' through the NCCL ids of the hello.
void make_local(NodeRun& run, const Model& m, const BackendOptions& o, const CudaNodeRanks& ids) {
  const ParallelConfig& p = o.parallel;
  if (o.device == "cpu") {
    const CpuRanks::NodeRank node{p.node_rank, run.world.get(), run.tp.get()};
    run.local = make_cpu_backend(m, o, &node);
    return;
  }
  CudaNodeRanks node = ids;
  node.first = p.first_local_rank();
  run.local = std::make_unique<CudaRanks>(m, p, cuda_model_options(o), cuda_rank_devices(p.local_ranks(), false),
                                          &node);
}

// The hello: the format (magic, pointer size, byte order), the model's shape and the leader's
// BackendOptions. The shape travels as named numbers, so that a mismatch can be named.
std::vector<std::pair<std::string, int64_t>> model_shape(const Config& c) {
  std::vector<std::pair<std::string, int64_t>> v = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"layers", static_cast<int64_t>(c.layers.size())},
      {"mtp layers", static_cast<int64_t>(c.mtp_layers.size())},
      {"n_routed_experts", c.n_routed_experts},
      {"num_experts_per_tok", c.num_experts_per_tok},
      {"moe_intermediate_size", c.moe_intermediate_size},
      {"num_attention_heads", c.num_attention_heads},
      {"mamba_num_heads", c.mamba_num_heads},
  };
  for (std::size_t l = 0; l < c.layers.size(); ++l)
    v.emplace_back("layer " + std::to_string(l) + " kind", static_cast<int64_t>(c.layers[l]));
  return v;
}

std::vector<uint8_t> hello(const Model& m, const BackendOptions& o, const CudaNodeRanks& ids) {
  ByteWriter w;
  w.pod(Call::Hello);
  w.raw(kMagic, sizeof kMagic);
  w.pod(static_cast<uint32_t>(sizeof(void*)));
  w.pod(uint32_t{0x01020304});
  const auto shape = model_shape(m.config);
  w.pod(static_cast<int64_t>(shape.size()));
  for (const auto& [name, value] : shape) {
    w.text(name);
    w.pod(value);
  }
  w.pod(o.max_seqs);
  w.pod(o.max_step_tokens);
  w.pod(o.kv_tokens);
  w.pod(static_cast<uint8_t>(o.kv_fp8));
  w.pod(o.ssm_state);
  w.pod(static_cast<uint8_t>(o.sampled_logits_only));
  w.pod(o.max_spec_seqs);
  w.pod(o.max_spec_rows);
  w.pod(o.prefix_cache_bytes);
  w.pod(o.parallel.tensor_parallel);
  w.pod(o.parallel.expert_parallel);
  w.pod(o.parallel.nnodes);
  w.text(o.device);
  w.array(ids.world_id.data(), static_cast<int64_t>(ids.world_id.size()));
  w.pod(static_cast<int64_t>(ids.tp_ids.size()));
  for (const auto& id : ids.tp_ids) w.array(id.data(), static_cast<int64_t>(id.size()));
  return std::move(w.bytes());
}

// The follower's side: checks the format and the shape against its own model, and returns its
// options with the leader's sizes (its own device, node rank, verbosity).
BackendOptions read_hello(const std::vector<uint8_t>& msg, const Model& m, const BackendOptions& own,
                          CudaNodeRanks& ids) {
  ByteReader r(msg);
  char magic[8];
  if (r.pod<Call>() != Call::Hello) throw Error("node 0 did not begin with its hello");
  r.raw(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, sizeof magic) != 0 || r.pod<uint32_t>() != sizeof(void*) ||
      r.pod<uint32_t>() != 0x01020304)
    throw Error("node 0 speaks another protocol (another nemotron version or architecture)");
  const auto mine = model_shape(m.config);
  const auto n = r.pod<int64_t>();
  if (n != static_cast<int64_t>(mine.size()))
    throw Error("node 0's model has " + std::to_string(n) + " shape entries, this node's " +
                std::to_string(mine.size()) + " (a different model: " + m.config.path + ")");
  for (const auto& [name, value] : mine) {
    const std::string theirs_name = r.text();
    const auto theirs = r.pod<int64_t>();
    if (theirs_name != name || theirs != value)
      throw Error("node 0's model differs from this node's (" + m.config.path + "): " + name + " is " +
                  std::to_string(theirs) + " there, " + std::to_string(value) + " here");
  }
  BackendOptions o = own;
  o.max_seqs = r.pod<int>();
  o.max_step_tokens = r.pod<int64_t>();
  o.kv_tokens = r.pod<int64_t>();
  o.kv_fp8 = r.pod<uint8_t>() != 0;
  o.ssm_state = r.pod<kernels::SsmStateFormat>();
  o.sampled_logits_only = r.pod<uint8_t>() != 0;
  o.max_spec_seqs = r.pod<int>();
  o.max_spec_rows = r.pod<int64_t>();
  o.prefix_cache_bytes = r.pod<int64_t>();
  const int tp = r.pod<int>(), ep = r.pod<int>(), nn = r.pod<int>();
  if (tp != own.parallel.tensor_parallel || ep != own.parallel.expert_parallel || nn != own.parallel.nnodes)
    throw Error("node 0 runs --tensor-parallel-size " + std::to_string(tp) + " --expert-parallel-size " +
                std::to_string(ep) + " --nnodes " + std::to_string(nn) + ", this node " + own.parallel.describe() +
                ": start every node with the same flags");
  const std::string device = r.text();
  if (device != own.device)
    throw Error("node 0 runs on " + device + ", this node on " + own.device + ": start every node with the same --device");
  ids.world_id = r.array<uint8_t>();
  const auto groups = r.pod<int64_t>();
  if (groups < 0 || groups > 1024) throw Error("node message: " + std::to_string(groups) + " TP group ids");
  for (int64_t g = 0; g < groups; ++g) ids.tp_ids.push_back(r.array<uint8_t>());
  return o;
}

// A follower's answer to a call that returns something (hello, export, import): ok + bytes, or
// an error text.
void reply(SocketLink& l, bool ok, const std::vector<uint8_t>& bytes) {
  ByteWriter w;
  w.pod(static_cast<uint8_t>(ok));
  w.array(bytes.data(), static_cast<int64_t>(bytes.size()));
  l.send_message(w.bytes());
}
std::vector<uint8_t> text_bytes(const std::string& s) { return {s.begin(), s.end()}; }
// Replies with what `f` returns, or with the text of the Error it throws.
template <class F>
void reply_with(SocketLink& l, F&& f) {
  std::vector<uint8_t> bytes;
  try {
    bytes = f();
  } catch (const Error& e) {
    return reply(l, false, text_bytes(e.what()));
  }
  reply(l, true, bytes);
}

// Node 0's reading of a reply.
struct Answer {
  bool ok = false;
  std::vector<uint8_t> bytes;
  // "node q: <its error>" for the first refusal of several (kept in `first`).
  void note_refusal(int q, std::string& first) const {
    if (!ok && first.empty()) first = "node " + std::to_string(q) + ": " + std::string(bytes.begin(), bytes.end());
  }
};
Answer read_answer(SocketLink& l) {
  const std::vector<uint8_t> msg = l.recv_message();
  ByteReader r(msg);
  Answer a;
  a.ok = r.pod<uint8_t>() != 0;
  a.bytes = r.array<uint8_t>();
  return a;
}

// Node 0's backend: its own rank's, with every call that changes state told to the followers.
// Calls that meet the other ranks in collectives (steps, MTP forwards) go out first, then run
// here (every node checks them the same way and throws the same Error); the others run here
// first and go out only when they succeeded.
class LeaderBackend final : public Backend {
 public:
  explicit LeaderBackend(std::unique_ptr<NodeRun> run) : run_(std::move(run)), local_(*run_->local) {}
  ~LeaderBackend() override {
    run_->watch.reset();  // the followers close their links as they end
    ByteWriter w;
    w.pod(Call::Bye);
    for (int q = 1; q < run_->mesh.world; ++q) try {
        run_->mesh.to(q).send_message(w.bytes());
      } catch (const Error&) {
      }
  }

  const Model& model() const override { return local_.model(); }
  const char* device() const override { return local_.device(); }
  int slots() const override { return local_.slots(); }
  int64_t position(int slot) const override { return local_.position(slot); }
  std::vector<float> last_hidden() const override { return local_.last_hidden(); }
  int64_t mtp_position(int slot) const override { return local_.mtp_position(slot); }
  bool can_roll_back() const override { return local_.can_roll_back(); }
  bool steps_in_begin() const override { return local_.steps_in_begin(); }
  KeepLimits keep_limits() const override { return local_.keep_limits(); }
  bool can_snapshot() const override { return local_.can_snapshot(); }
  int64_t snapshot_bytes(int64_t pos) const override { return local_.snapshot_bytes(pos); }
  int64_t snapshot_capacity() const override { return local_.snapshot_capacity(); }
  std::vector<std::vector<int32_t>> routing() const override { return local_.routing(); }

  int acquire_slot() override {
    std::lock_guard lock(mu_);
    const int s = local_.acquire_slot();
    tell([&](ByteWriter& w) { w.pod(Call::Acquire); w.pod(int32_t{s}); });
    return s;
  }
  void release_slot(int slot) override {
    std::lock_guard lock(mu_);
    local_.release_slot(slot);
    tell([&](ByteWriter& w) { w.pod(Call::Release); w.pod(int32_t{slot}); });
  }

  void begin_step(const std::vector<StepChunk>& chunks) override {
    std::lock_guard lock(mu_);
    if (pending_) throw Error("begin_step while the previous step is not finished");
    const int64_t V = model().config.vocab_size;
    tell([&](ByteWriter& w) { w.pod(Call::Step); nodes::encode_chunks(w, chunks, V); });
    guarded([&] { local_.begin_step(chunks); });
    pending_ = true;
  }
  std::vector<StepOutput> finish_step() override {
    std::lock_guard lock(mu_);
    pending_ = false;
    return guarded([&] { return local_.finish_step(); });
  }

  std::vector<float> mtp_forward(int slot, const int32_t* next_ids, const float* hidden, int64_t T,
                                 bool all_logits) override {
    std::lock_guard lock(mu_);
    tell([&](ByteWriter& w) {
      w.pod(Call::MtpForward); w.pod(static_cast<uint8_t>(all_logits));
      nodes::encode_drafts(w, {{slot, next_ids, hidden, T}}, model().config.hidden_size);
    });
    return guarded([&] { return local_.mtp_forward(slot, next_ids, hidden, T, all_logits); });
  }
  std::vector<std::vector<int32_t>> mtp_draft(const std::vector<DraftInput>& inputs, int K) override {
    std::lock_guard lock(mu_);
    tell([&](ByteWriter& w) {
      w.pod(Call::MtpDraft); w.pod(int32_t{K});
      nodes::encode_drafts(w, inputs, model().config.hidden_size);
    });
    return guarded([&] { return local_.mtp_draft(inputs, K); });
  }
  void mtp_feed(const std::vector<DraftInput>& inputs) override {
    std::lock_guard lock(mu_);
    tell([&](ByteWriter& w) { w.pod(Call::MtpFeed); nodes::encode_drafts(w, inputs, model().config.hidden_size); });
    guarded([&] { local_.mtp_feed(inputs); });
  }

  void roll_back(int slot, int64_t pos) override {
    std::lock_guard lock(mu_);
    local_.roll_back(slot, pos);
    tell([&](ByteWriter& w) { w.pod(Call::RollBack); w.pod(int32_t{slot}); w.pod(pos); });
  }
  void mtp_roll_back(int slot, int64_t pos) override {
    std::lock_guard lock(mu_);
    local_.mtp_roll_back(slot, pos);
    tell([&](ByteWriter& w) { w.pod(Call::MtpRollBack); w.pod(int32_t{slot}); w.pod(pos); });
  }

  void save_snapshot(int slot, uint64_t id) override {
    std::lock_guard lock(mu_);
    local_.save_snapshot(slot, id);
    tell([&](ByteWriter& w) { w.pod(Call::SaveSnapshot); w.pod(int32_t{slot}); w.pod(id); });
  }
  void load_snapshot(uint64_t id, int slot) override {
    std::lock_guard lock(mu_);
    local_.load_snapshot(id, slot);
    tell([&](ByteWriter& w) { w.pod(Call::LoadSnapshot); w.pod(id); w.pod(int32_t{slot}); });
  }
  void drop_snapshot(uint64_t id) override {
    std::lock_guard lock(mu_);
    local_.drop_snapshot(id);
    tell([&](ByteWriter& w) { w.pod(Call::DropSnapshot); w.pod(id); });
  }

  // Every node's share: kSnapMagic, int32 nodes, then each node's bytes (int64 count first).
  std::vector<uint8_t> export_snapshot(uint64_t id) const override {
    std::lock_guard lock(mu_);
    const std::vector<uint8_t> mine = local_.export_snapshot(id);
    tell([&](ByteWriter& w) { w.pod(Call::ExportSnapshot); w.pod(id); });
    ByteWriter out;
    out.raw(kSnapMagic, sizeof kSnapMagic);
    out.pod(static_cast<int32_t>(run_->mesh.world));
    out.array(mine.data(), static_cast<int64_t>(mine.size()));
    std::string failure;
    for (int q = 1; q < run_->mesh.world; ++q) {
      const Answer a = answer(q);
      a.note_refusal(q, failure);
      out.array(a.bytes.data(), static_cast<int64_t>(a.bytes.size()));
    }
    if (!failure.empty()) throw Error("export_snapshot " + std::to_string(id) + ": " + failure);
    return std::move(out.bytes());
  }
  void import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) override {
    std::lock_guard lock(mu_);
    ByteReader r(bytes);
    char magic[8] = {};
    if (bytes.size() < sizeof magic + 4) throw Error("snapshot bytes: not a snapshot of a run over several nodes");
    r.raw(magic, sizeof magic);
    if (std::memcmp(magic, kSnapMagic, sizeof magic) != 0)
      throw Error("snapshot bytes: not a snapshot of a run over several nodes");
    const auto n = r.pod<int32_t>();
    if (n != run_->mesh.world)
      throw Error("snapshot bytes: written by a run over " + std::to_string(n) + " nodes, this one has " +
                  std::to_string(run_->mesh.world));
    std::vector<std::vector<uint8_t>> parts;
    for (int q = 0; q < n; ++q) parts.push_back(r.array<uint8_t>());
    if (!r.done()) throw Error("snapshot bytes: trailing bytes after the nodes' shares");
    local_.import_snapshot(id, parts[0]);
    for (int q = 1; q < n; ++q) {
      ByteWriter w;
      w.pod(Call::ImportSnapshot); w.pod(id); w.array(parts[q].data(), static_cast<int64_t>(parts[q].size()));
      send(q, w);
    }
    std::string failure;
    for (int q = 1; q < n; ++q) answer(q).note_refusal(q, failure);
    if (!failure.empty()) {  // no node keeps a part of it
      local_.drop_snapshot(id);
      tell([&](ByteWriter& w) { w.pod(Call::DropSnapshot); w.pod(id); });
      throw Error("import_snapshot " + std::to_string(id) + ": " + failure);
    }
  }

  void observe_prompt(int slot, const int32_t* ids, int64_t n) override {
    std::lock_guard lock(mu_);
    local_.observe_prompt(slot, ids, n);
    tell([&](ByteWriter& w) { w.pod(Call::ObservePrompt); w.pod(int32_t{slot}); w.array(ids, n); });
  }
  void record_routing(bool on) override {
    std::lock_guard lock(mu_);
    local_.record_routing(on);
    tell([&](ByteWriter& w) { w.pod(Call::RecordRouting); w.pod(static_cast<uint8_t>(on)); });
  }

 private:
  // A failed link ends the run: the collectives cannot go on without that node.
  [[noreturn]] void lost_node(const std::string& what) const {
    const int q = run_->mesh.failed_peer();
    std::fprintf(stderr, "error: node %d failed or disconnected (%s); stopping\n", q, what.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  }
  template <class F>
  std::invoke_result_t<F> guarded(F&& f) const {
    try {
      return f();
    } catch (const Error& e) {
      if (run_->mesh.failed_peer() >= 0) lost_node(e.what());
      throw;
    }
  }
  void send(int q, ByteWriter& w) const {
    guarded([&] { run_->mesh.to(q).send_message(w.bytes()); });
  }
  template <class F>
  void tell(F&& write) const {
    ByteWriter w;
    write(w);
    for (int q = 1; q < run_->mesh.world; ++q) send(q, w);
  }
  Answer answer(int q) const {
    return guarded([&] { return read_answer(run_->mesh.to(q)); });
  }

  std::unique_ptr<NodeRun> run_;
  Backend& local_;
  mutable std::mutex mu_;
  bool pending_ = false;
};

// Runs node 0's calls on this node's backend until the Bye. A call that fails here failed the
// same way on node 0 (the same state, the same checks): the loop goes on. A message that does
// not decode, a slot other than node 0's, or a failed link ends it (Error).
void follow(NodeRun& run) {
  SocketLink& leader = run.mesh.to(0);
  Backend& b = *run.local;
  const int64_t V = b.model().config.vocab_size, H = b.model().config.hidden_size;
  auto mirror = [&](auto&& f) {  // a call that meets the others: its Error was node 0's too
    try {
      f();
    } catch (const Error&) {
      if (run.mesh.failed_peer() >= 0) throw;
    }
  };
  for (;;) {
    const std::vector<uint8_t> msg = leader.recv_message();
    ByteReader r(msg);
    const auto call = r.pod<Call>();
    switch (call) {
      case Call::Bye:
        return;
      case Call::Acquire: {
        const auto want = r.pod<int32_t>();
        const int got = b.acquire_slot();
        if (got != want)
          throw Error("node 0 acquired slot " + std::to_string(want) + ", this node slot " + std::to_string(got) +
                      " (the nodes' states diverged)");
        break;
      }
      case Call::Release:
        b.release_slot(r.pod<int32_t>());
        break;
      case Call::Step: {
        const nodes::DecodedChunks d = nodes::decode_chunks(r, V);
        mirror([&] { b.step(d.chunks); });
        break;
      }
      case Call::MtpForward: {
        const bool all = r.pod<uint8_t>() != 0;
        const nodes::DecodedDrafts d = nodes::decode_drafts(r, H);
        if (d.inputs.size() != 1) throw Error("node message: an MTP forward of " + std::to_string(d.inputs.size()) + " inputs");
        const auto& in = d.inputs[0];
        mirror([&] { b.mtp_forward(in.slot, in.next_ids, in.hidden, in.T, all); });
        break;
      }
      case Call::MtpDraft: {
        const auto K = r.pod<int32_t>();
        const nodes::DecodedDrafts d = nodes::decode_drafts(r, H);
        mirror([&] { b.mtp_draft(d.inputs, K); });
        break;
      }
      case Call::MtpFeed: {
        const nodes::DecodedDrafts d = nodes::decode_drafts(r, H);
        mirror([&] { b.mtp_feed(d.inputs); });
        break;
      }
      case Call::RollBack: {
        const auto slot = r.pod<int32_t>();
        b.roll_back(slot, r.pod<int64_t>());
        break;
      }
      case Call::MtpRollBack: {
        const auto slot = r.pod<int32_t>();
        b.mtp_roll_back(slot, r.pod<int64_t>());
        break;
      }
      case Call::SaveSnapshot: {
        const auto slot = r.pod<int32_t>();
        b.save_snapshot(slot, r.pod<uint64_t>());
        break;
      }
      case Call::LoadSnapshot: {
        const auto id = r.pod<uint64_t>();
        b.load_snapshot(id, r.pod<int32_t>());
        break;
      }
      case Call::DropSnapshot:
        b.drop_snapshot(r.pod<uint64_t>());
        break;
      case Call::ExportSnapshot: {
        const auto id = r.pod<uint64_t>();
        reply_with(leader, [&] { return b.export_snapshot(id); });
        break;
      }
      case Call::ImportSnapshot: {
        const auto id = r.pod<uint64_t>();
        const std::vector<uint8_t> bytes = r.array<uint8_t>();
        reply_with(leader, [&] {
          b.import_snapshot(id, bytes);
          return std::vector<uint8_t>{};
        });
        break;
      }
      case Call::ObservePrompt: {
        const auto slot = r.pod<int32_t>();
        const std::vector<int32_t> ids = r.array<int32_t>();
        b.observe_prompt(slot, ids.data(), static_cast<int64_t>(ids.size()));
        break;
      }
      case Call::RecordRouting:
        b.record_routing(r.pod<uint8_t>() != 0);
        break;
      default:
        throw Error("node message: unknown call " + std::to_string(static_cast<int>(call)));
    }
  }
}

}  // namespace

std::unique_ptr<Backend> make_node_backend(const Model& model, const BackendOptions& options) {
  const ParallelConfig& p = options.parallel;
  require_parallel_supported(options.device, p);
  validate_parallel(model.config, p);
  if (options.device == "cuda" && !cuda_nccl_available())
    throw Error("--nnodes " + std::to_string(p.nnodes) + " with --device cuda: this build has no NCCL (install the "
                "CUDA toolkit's NCCL or libnccl-dev and reconfigure)");
  if (!p.follower()) {
    const CudaNodeRanks ids = options.device == "cuda" ? cuda_node_ids(p) : CudaNodeRanks{};
    auto run = join(p, options.device);
    const std::vector<uint8_t> h = hello(model, options, ids);
    for (int q = 1; q < p.nnodes; ++q) run->mesh.to(q).send_message(h);
    std::string refused;
    for (int q = 1; q < p.nnodes; ++q) read_answer(run->mesh.to(q)).note_refusal(q, refused);
    if (!refused.empty()) throw Error(refused);
    make_local(*run, model, options, ids);
    run->watch = std::make_unique<LinkWatch>(run->mesh);
    return std::make_unique<LeaderBackend>(std::move(run));
  }
  auto run = join(p, options.device);
  SocketLink& leader = run->mesh.to(0);
  BackendOptions o;
  CudaNodeRanks ids;
  try {
    o = read_hello(leader.recv_message(), model, options, ids);
  } catch (const Error& e) {
    if (run->mesh.failed_peer() < 0) reply(leader, false, text_bytes(e.what()));
    throw;
  }
  reply(leader, true, {});
  make_local(*run, model, o, ids);
  std::fprintf(stderr, "node %d of %d: following node 0 at %s:%d (%s)\n", p.node_rank, p.nnodes, p.master_addr.c_str(),
               p.master_port, p.describe().c_str());
  std::fflush(stderr);
  run->watch = std::make_unique<LinkWatch>(run->mesh);
  try {
    follow(*run);
    run->watch.reset();
  } catch (const Error& e) {
    run->watch.reset();
    std::fprintf(stderr, "error: node %d: %s; stopping\n", p.node_rank, e.what());
    std::fflush(stderr);
    throw FollowerDone{1};
  }
  std::fprintf(stderr, "node %d: node 0 ended the run\n", p.node_rank);
  throw FollowerDone{0};
}

}  // namespace nemotron::model
