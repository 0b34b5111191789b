// CudaModel: see cuda_model.h. Construction, sequence slots and the public calls; the block
// kernels of a step are in cuda_model_step.cpp, weight upload in cuda_model_upload.cpp.
#include "model/cuda/cuda_model.h"

#include "util/error.h"

#ifndef NEMOTRON_HAVE_CUDA

namespace nemotron::model {
bool cuda_backend_available() { return false; }
struct CudaModel::Impl {};
CudaModel::CudaModel(const Model&, const CudaModelOptions&, CudaRankComms) {
  throw Error("this build has no CUDA backend (configure with -DNEMOTRON_CUDA=ON)");
}
CudaModel::~CudaModel() = default;
const Model& CudaModel::model() const { throw Error("no CUDA backend"); }
int CudaModel::acquire_slot() { throw Error("no CUDA backend"); }
void CudaModel::release_slot(int) {}
int64_t CudaModel::position(int) const { return 0; }
int CudaModel::slots() const { return 0; }
void CudaModel::roll_back(int, int64_t) { throw Error("no CUDA backend"); }
void CudaModel::save_snapshot(int, uint64_t) { throw Error("no CUDA backend"); }
std::vector<uint8_t> CudaModel::export_snapshot(uint64_t) const { throw Error("no CUDA backend"); }
void CudaModel::import_snapshot(uint64_t, const std::vector<uint8_t>&) { throw Error("no CUDA backend"); }
void CudaModel::load_snapshot(uint64_t, int) { throw Error("no CUDA backend"); }
void CudaModel::observe_prompt(int, const int32_t*, int64_t) { throw Error("no CUDA backend"); }
bool CudaModel::can_roll_back() const { return false; }
KeepLimits CudaModel::keep_limits() const { return {0, 0}; }
bool CudaModel::can_snapshot() const { return false; }
int64_t CudaModel::snapshot_bytes(int64_t) const { return 0; }
int64_t CudaModel::snapshot_capacity() const { return 0; }
void CudaModel::drop_snapshot(uint64_t) {}
void CudaModel::mtp_roll_back(int, int64_t) { throw Error("no CUDA backend"); }
void CudaModel::begin_step(const std::vector<StepChunk>&) { throw Error("no CUDA backend"); }
std::vector<StepOutput> CudaModel::finish_step() { throw Error("no CUDA backend"); }
std::vector<std::vector<float>> CudaModel::forward(const std::vector<CudaChunk>&) { throw Error("no CUDA backend"); }
std::vector<int32_t> CudaModel::forward_greedy(const std::vector<CudaChunk>&) { throw Error("no CUDA backend"); }
void CudaModel::set_cuda_graphs(bool) {}
std::vector<float> CudaModel::mtp_forward(int, const int32_t*, const float*, int64_t, bool) {
  throw Error("no CUDA backend");
}
int64_t CudaModel::mtp_position(int) const { return 0; }
std::vector<std::vector<int32_t>> CudaModel::mtp_draft(const std::vector<DraftInput>&, int) {
  throw Error("no CUDA backend");
}
void CudaModel::mtp_feed(const std::vector<DraftInput>&) { throw Error("no CUDA backend"); }
std::vector<float> CudaModel::last_hidden() const { throw Error("no CUDA backend"); }
void CudaModel::record_routing(bool) {}
std::vector<std::vector<int32_t>> CudaModel::routing() const { return {}; }
void CudaModel::set_profiling(bool) {}
int64_t CudaModel::graph_nodes() const { return 0; }
int64_t CudaModel::device_bytes() const { return 0; }
int64_t CudaModel::graph_device_bytes() const { return 0; }
std::vector<CudaModel::OpTime> CudaModel::profile() const { return {}; }
double CudaModel::upload_seconds() const { return 0; }
int64_t CudaModel::weight_bytes() const { return 0; }
}  // namespace nemotron::model

#else

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "kernels/collective_cuda.h"
#include "kernels/sampling_cuda.h"
#include "model/cuda/cuda_communicator.h"
#include "model/cuda/cuda_memory.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;
using cuda_detail::kPage;

bool cuda_backend_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

CudaModel::CudaModel(const Model& model, const CudaModelOptions& options, CudaRankComms comms)
    : impl_(std::make_unique<Impl>(model, options, comms)) {
  Impl& s = *impl_;
  if (options.max_seqs < 1 || options.max_step_tokens < 1 || options.kv_tokens < 1)
    throw Error("CUDA model: max_seqs, max_step_tokens and kv_tokens must be positive");
  if (s.sharded()) {
    if (!comms.tp || !comms.world)
      throw Error("CUDA model: a rank of a sharded model needs its TP and world communicators");
    if (options.tp_rank < 0 || options.tp_rank >= static_cast<int>(options.tp_vocab.size()) ||
        static_cast<int>(options.tp_vocab.size()) != comms.tp->size() ||
        static_cast<int>(options.tp_vocab.size()) > kernels::kMaxCommRanks)
      throw Error("CUDA model: tp_rank " + std::to_string(options.tp_rank) + " of " +
                  std::to_string(options.tp_vocab.size()) + " vocab ranges, TP group of " +
                  std::to_string(comms.tp->size()));
    // Collectives that cannot be captured (the same-device group) keep every step eager.
    if (!comms.tp->capturable() || !comms.world->capturable()) s.opt.cuda_graphs = false;
  }
  check(cudaSetDevice(options.device), "cudaSetDevice(" + std::to_string(options.device) + ")");
  check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaStreamCreateWithFlags(&s.side_stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaEventCreateWithFlags(&s.fork_ev, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventCreateWithFlags(&s.join_ev, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventCreateWithFlags(&s.latent_ev, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventCreateWithFlags(&s.inputs_done, cudaEventDisableTiming), "cudaEventCreate");
  int sms = 0, integrated = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, options.device), "multiprocessor count");
  check(cudaDeviceGetAttribute(&integrated, cudaDevAttrIntegrated, options.device), "integrated attribute");
  const auto t0 = std::chrono::steady_clock::now();

  // The walk of cuda_buffers.h twice: counted (the planner's table, cuda_memory), then placed
  // into one allocation per arena of exactly the counted size, which it must consume exactly.
  // On unified memory (integrated GPU) each block's checkpoint pages are dropped as soon as
  // the block is on the device, so the upload never holds the checkpoint twice.
  s.arena.reserve(cuda_memory(model, options, sms).table, options.verbose, integrated != 0);
  if (integrated) s.arena.release_pages_from(&model.checkpoint);
  cuda_detail::walk_device_buffers(model, options, sms, s.arena, s);
  s.arena.check_consumed();
  check(cudaDeviceSynchronize(), "weight upload");
  // The weights live on the device now: the checkpoint's page cache can go (its mapping
  // stays valid; the CPU paths fault pages back in when they read it).
  model.checkpoint.release_pages();
  s.upload_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.weight_bytes = s.arena.table().of(cuda_detail::ArenaKind::Weights);
  if (options.verbose)
    std::fprintf(stderr, "\ruploaded %.2f GB of weights in %.2f s (%.2f GB/s); device arenas: weights %.2f GB, "
                 "cache %.2f GB, step %.2f GB\n",
                 static_cast<double>(s.weight_bytes) / 1e9, s.upload_s,
                 static_cast<double>(s.weight_bytes) / 1e9 / std::max(s.upload_s, 1e-9),
                 static_cast<double>(s.weight_bytes) / 1e9,
                 static_cast<double>(s.arena.table().of(cuda_detail::ArenaKind::Cache)) / 1e9,
                 static_cast<double>(s.arena.table().of(cuda_detail::ArenaKind::Step)) / 1e9);
  s.init_slots();
  // Prepares the sampling kernels (shared-memory attributes) before any graph capture; the
  // walk planned no workspace for them.
  if (kernels::sample_workspace_bytes(options.max_seqs, model.config.vocab_size) != s.sample_ws_bytes)
    throw Error("CUDA model: the sampler's workspace differs from the planned one");
  s.graphs.assign(static_cast<std::size_t>(options.max_seqs) + 1, nullptr);
  if (model.config.has_mtp())
    s.draft_graphs.assign(static_cast<std::size_t>(std::min<int64_t>(options.max_seqs, kMaxSpecGraphSeqs)) + 1,
                          nullptr);
  s.route_rows.assign(s.trunk.blocks.size() + s.mtp.blocks.size(), 0);
  s.init_state_pools();
}

CudaModel::~CudaModel() = default;

const Model& CudaModel::model() const { return impl_->model; }
double CudaModel::upload_seconds() const { return impl_->upload_s; }
void CudaModel::set_cuda_graphs(bool on) { impl_->opt.cuda_graphs = on; }
int64_t CudaModel::weight_bytes() const { return impl_->weight_bytes; }
int64_t CudaModel::graph_nodes() const { return impl_->graph_nodes; }
int64_t CudaModel::device_bytes() const { return impl_->arena.bytes(); }
int64_t CudaModel::graph_device_bytes() const { return impl_->graph_bytes; }

int CudaModel::slots() const { return static_cast<int>(impl_->in_use.size()); }

int CudaModel::acquire_slot() {
  Impl& s = *impl_;
  for (int i = 0; i < static_cast<int>(s.in_use.size()); ++i) {
    if (s.in_use[i]) continue;
    s.in_use[i] = true;
    s.drop_kept(i);
    s.reset_slot(s.trunk, i);
    if (!s.mtp.blocks.empty()) s.reset_slot(s.mtp, i);
    s.reset_penalties(i);
    return i;
  }
  throw Error("CUDA model: all " + std::to_string(s.in_use.size()) + " sequence slots are in use");
}

void CudaModel::release_slot(int slot) {
  Impl& s = *impl_;
  if (slot < 0 || slot >= static_cast<int>(s.in_use.size()) || !s.in_use[slot]) return;
  s.in_use[slot] = false;
  s.drop_kept(slot);
  s.free_slot(s.trunk, slot);
  if (!s.mtp.blocks.empty()) s.free_slot(s.mtp, slot);
}

int64_t CudaModel::position(int slot) const { return impl_->trunk.pos.at(static_cast<std::size_t>(slot)); }

int64_t CudaModel::mtp_position(int slot) const {
  const Impl& s = *impl_;
  if (s.mtp.blocks.empty()) return 0;
  return s.mtp.pos.at(static_cast<std::size_t>(slot));
}

void CudaModel::begin_step(const std::vector<StepChunk>& chunks) {
  Impl& s = *impl_;
  if (s.pending.active) throw Error("CUDA model: begin_step while the previous step is not finished");
  if (chunks.empty()) throw Error("CUDA model: a step without chunks");
  std::vector<cuda_detail::StepChunk> steps;
  bool decode = true;
  int64_t keeps = 0, sampled = 0;
  for (const auto& ch : chunks) {
    if (ch.sampling) ch.sampling->validate();
    if (ch.sample && (ch.sample_rows < 1 || ch.sample_rows > ch.T))
      throw Error("CUDA model: sample_rows " + std::to_string(ch.sample_rows) + " outside [1, " +
                  std::to_string(ch.T) + "]");
    if (ch.keep_states) {
      if (++keeps > s.spec_entries)
        throw Error("CUDA model: " + std::to_string(keeps) + " keep_states chunks in one step; this model keeps " +
                    std::to_string(s.spec_entries) + " (spec_seqs, at most max_seqs)");
      if (ch.T > s.spec_rows)
        throw Error("CUDA model: a keep_states chunk of " + std::to_string(ch.T) + " rows; this model keeps " +
                    std::to_string(s.spec_rows) + " rows per chunk (spec_rows)");
    }
    sampled += ch.sample ? ch.sample_rows : 0;
    cuda_detail::StepChunk st{ch.slot, ch.ids, ch.T, ch.logits};
    if (ch.sample && st.logits == LogitsOut::None) st.logits = LogitsOut::Last;
    // Several sampled rows: logits for every row; the drafts after the first sampled row are
    // not marked seen (each is counted when the row before it draws it).
    if (ch.sample && ch.sample_rows > 1) {
      st.logits = LogitsOut::All;
      st.seen_rows = ch.T - ch.sample_rows + 1;
    }
    steps.push_back(st);
    decode = decode && ch.T == 1;
  }
  if (sampled > s.sample_capacity)
    throw Error("CUDA model: " + std::to_string(sampled) + " sampled rows in one step; the sampler holds " +
                std::to_string(s.sample_capacity) + " (max_seqs + spec_seqs * (spec_rows - 1))");
  s.keep_step = keeps > 0;
  // A verify step a graph can replay: every chunk keeps its states and draws all of its T rows.
  s.verify_T = keeps == static_cast<int64_t>(chunks.size()) ? chunks[0].T : 0;
  for (const auto& ch : chunks)
    if (!ch.keep_states || !ch.sample || ch.T != s.verify_T || ch.sample_rows != ch.T) s.verify_T = 0;
  // A decode-only step computes and samples every row, so that it can replay the graph
  // captured for its batch size (rows that do not sample get a greedy placeholder). A step
  // with keep_states chunks runs eagerly (it saves their Mamba rows as it goes).
  if (decode && !s.keep_step)
    for (auto& st : steps) st.logits = LogitsOut::Last;
  // Roll-backs since the last step reach the Mamba and penalty state before this step reads it.
  s.settle();
  int64_t L = 0;
  const int64_t R = s.prepare_step(s.trunk, steps, L);
  const int64_t B = static_cast<int64_t>(steps.size());
  // From here on the step runs: what the slots kept for roll_back before it is gone.
  for (const auto& st : steps) s.drop_kept(st.slot);
  s.pending.serial = ++s.step_serial;
  s.pending.n_samples = s.pack_samples(chunks, steps, s.graph_step(R, B, L, B));
  if (s.keep_step) s.begin_keep(chunks, steps);
  try {
    s.run_trunk(steps, R, L, s.pending.n_samples);
  } catch (...) {
    s.keep_rows = 0;
    throw;
  }
  s.keep_rows = 0;
  if (s.pending.n_samples > 0) s.enqueue_sample_copies();
  for (const auto& st : steps) s.trunk.pos[st.slot] += st.T;
  s.pending.chunks = chunks;
  s.pending.computed.clear();
  for (const auto& st : steps) s.pending.computed.push_back(st.logits);
  s.pending.L = L;
  s.pending.active = true;
}

std::vector<StepOutput> CudaModel::finish_step() {
  Impl& s = *impl_;
  if (!s.pending.active) throw Error("CUDA model: finish_step without a step begun");
  s.pending.active = false;
  check(cudaStreamSynchronize(s.stream), "step");
  s.prof_end();
  const int64_t V = s.model.config.vocab_size;
  const auto& chunks = s.pending.chunks;
  std::vector<StepOutput> out(chunks.size());
  int64_t logit_row = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const StepChunk& ch = chunks[i];
    const LogitsOut computed = s.pending.computed[i];
    const int64_t rows = computed == LogitsOut::All ? ch.T : computed == LogitsOut::Last ? 1 : 0;
    // The rows asked for: all of them, or the last of those computed.
    const int64_t want =
        ch.logits == LogitsOut::All ? rows : ch.logits == LogitsOut::Last ? std::min<int64_t>(rows, 1) : 0;
    if (want > 0) {
      out[i].logits.resize(static_cast<std::size_t>(want * V));
      check(cudaMemcpy(out[i].logits.data(), s.logits + (logit_row + rows - want) * V, out[i].logits.size() * 4,
                       cudaMemcpyDeviceToHost),
            "logits");
    }
    logit_row += rows;
    const int n = ch.sampling ? std::min(ch.sampling->logprobs, kernels::kMaxTopLogprobs) : 0;
    for (const int32_t row : s.pending.sample_at[i]) {
      SampleResult r;
      r.token = s.h_tokens[row];
      r.logprob = s.h_logprobs[row];
      for (int j = 0; j < n; ++j)
        r.top.push_back(
            {s.h_top_ids[row * kernels::kMaxTopLogprobs + j], s.h_top_lp[row * kernels::kMaxTopLogprobs + j]});
      out[i].samples.push_back(std::move(r));
    }
    out[i].sample.token = -1;
    if (!out[i].samples.empty()) out[i].sample = out[i].samples.back();
    // A keep_states chunk's draws, for its roll_back's penalty repair (a slot released while
    // the step ran keeps nothing).
    if (ch.keep_states && ch.slot >= 0 && ch.slot < slots()) {
      auto& k = s.kept[static_cast<std::size_t>(ch.slot)];
      if (k.valid && k.serial == s.pending.serial) {
        k.draws.clear();
        for (const auto& r : out[i].samples) k.draws.push_back(r.token);
      }
    }
  }
  return out;
}

std::vector<std::vector<float>> CudaModel::forward(const std::vector<CudaChunk>& chunks) {
  if (chunks.empty()) return {};
  std::vector<StepChunk> steps;
  for (const auto& ch : chunks)
    steps.push_back({.slot = ch.slot, .ids = ch.ids, .T = ch.T,
                     .logits = ch.all_logits ? LogitsOut::All : LogitsOut::Last});
  auto out = step(steps);
  std::vector<std::vector<float>> logits;
  for (auto& o : out) logits.push_back(std::move(o.logits));
  return logits;
}

std::vector<int32_t> CudaModel::forward_greedy(const std::vector<CudaChunk>& chunks) {
  if (chunks.empty()) return {};
  std::vector<StepChunk> steps;
  for (const auto& ch : chunks) steps.push_back({.slot = ch.slot, .ids = ch.ids, .T = ch.T, .sample = true});
  std::vector<int32_t> ids;
  for (const auto& o : step(steps)) ids.push_back(o.sample.token);
  return ids;
}

std::vector<float> CudaModel::last_hidden() const {
  const Impl& s = *impl_;
  std::vector<float> h(static_cast<std::size_t>(s.last_rows * s.model.config.hidden_size));
  if (h.empty()) return h;
  check(cudaMemcpyAsync(h.data(), s.uf, h.size() * 4, cudaMemcpyDeviceToHost, s.stream), "hidden rows");
  check(cudaStreamSynchronize(s.stream), "hidden rows");
  return h;
}

void CudaModel::record_routing(bool on) {
  Impl& s = *impl_;
  const int64_t k = std::max<int64_t>(1, s.model.config.num_experts_per_tok);
  if (on && !s.route_log && !s.route_rows.empty())
    s.route_log = static_cast<int32_t*>(
        s.arena.alloc(s.route_rows.size() * static_cast<std::size_t>(s.opt.max_step_tokens * k) * 4));
  s.record_routing = on;
  std::fill(s.route_rows.begin(), s.route_rows.end(), 0);
}

std::vector<std::vector<int32_t>> CudaModel::routing() const {
  const Impl& s = *impl_;
  const int64_t k = s.model.config.num_experts_per_tok;
  std::vector<std::vector<int32_t>> out(s.route_rows.size());
  for (std::size_t b = 0; b < out.size(); ++b) {
    if (s.route_rows[b] == 0) continue;
    out[b].resize(static_cast<std::size_t>(s.route_rows[b] * k));
    check(cudaMemcpyAsync(out[b].data(), s.route_log + static_cast<int64_t>(b) * s.opt.max_step_tokens * k,
                          out[b].size() * 4, cudaMemcpyDeviceToHost, s.stream),
          "routing");
  }
  check(cudaStreamSynchronize(s.stream), "routing");
  return out;
}

}  // namespace nemotron::model

#endif
