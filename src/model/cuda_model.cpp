// CudaModel: see cuda_model.h. Host-side orchestration only; the device code is in
// src/kernels/cuda (one launcher per op).
#include "model/cuda_model.h"

#include "util/error.h"

#ifndef NEMOTRON_HAVE_CUDA

namespace nemotron::model {
bool cuda_backend_available() { return false; }
struct CudaModel::Impl {};
CudaModel::CudaModel(const Model&, const CudaModelOptions&) {
  throw Error("this build has no CUDA backend (configure with -DNEMOTRON_CUDA=ON)");
}
CudaModel::~CudaModel() = default;
const Model& CudaModel::model() const { throw Error("no CUDA backend"); }
int CudaModel::acquire_slot() { throw Error("no CUDA backend"); }
void CudaModel::release_slot(int) {}
int64_t CudaModel::position(int) const { return 0; }
std::vector<std::vector<float>> CudaModel::forward(const std::vector<CudaChunk>&) { throw Error("no CUDA backend"); }
double CudaModel::upload_seconds() const { return 0; }
int64_t CudaModel::weight_bytes() const { return 0; }
}  // namespace nemotron::model

#else

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include "kernels/attention_cuda.h"
#include "kernels/elementwise_cuda.h"
#include "kernels/linear_cuda.h"
#include "kernels/mamba_cuda.h"
#include "kernels/moe_cuda.h"
#include "kernels/norm_cuda.h"
#include "kernels/numeric.h"

namespace nemotron::model {

using namespace nemotron::kernels;

bool cuda_backend_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

namespace {

void check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw Error(what + ": " + cudaGetErrorString(e));
}

// Owns device allocations; frees them all at destruction.
class Arena {
 public:
  ~Arena() {
    for (void* p : blocks_) cudaFree(p);
  }
  void* alloc(std::size_t n) {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<std::size_t>(n, 16)), "cudaMalloc of " + std::to_string(n) + " bytes");
    blocks_.push_back(p);
    bytes_ += static_cast<int64_t>(n);
    return p;
  }
  template <class T>
  T* upload(const T* host, std::size_t count) {
    T* d = static_cast<T*>(alloc(count * sizeof(T)));
    check(cudaMemcpy(d, host, count * sizeof(T), cudaMemcpyHostToDevice), "upload");
    return d;
  }
  template <class T>
  T* zeros(std::size_t count) {
    T* d = static_cast<T*>(alloc(count * sizeof(T)));
    check(cudaMemset(d, 0, count * sizeof(T)), "cudaMemset");
    return d;
  }
  int64_t bytes() const { return bytes_; }

 private:
  std::vector<void*> blocks_;
  int64_t bytes_ = 0;
};

uint16_t* upload_bf16(Arena& a, const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
  return a.upload(h.data(), h.size());
}

// A linear weight in its checkpoint format on the device. Dense F16/F32 weights (only tiny
// test checkpoints have them) are converted to BF16, the kernels' dense type.
LinearWeight upload_linear(Arena& a, const LinearWeight& src) {
  LinearWeight w = src;
  if (!src.data) return w;
  switch (src.format) {
    case WeightFormat::Dense: {
      if (src.dense_type == ElementType::BF16) {
        w.data = a.upload(static_cast<const uint16_t*>(src.data), static_cast<std::size_t>(src.out * src.in));
      } else {
        std::vector<float> row(static_cast<std::size_t>(src.in));
        std::vector<uint16_t> h(static_cast<std::size_t>(src.out * src.in));
        for (int64_t r = 0; r < src.out; ++r) {
          dequantize_row(src, r, row.data());
          for (int64_t i = 0; i < src.in; ++i) h[r * src.in + i] = float_to_bf16(row[i]);
        }
        w.data = a.upload(h.data(), h.size());
        w.dense_type = ElementType::BF16;
      }
      break;
    }
    case WeightFormat::FP8:
      w.data = a.upload(static_cast<const uint8_t*>(src.data), static_cast<std::size_t>(src.out * src.in));
      break;
    case WeightFormat::NVFP4:
      w.data = a.upload(static_cast<const uint8_t*>(src.data), static_cast<std::size_t>(src.out * src.in / 2));
      w.block_scale = a.upload(src.block_scale, static_cast<std::size_t>(src.out * src.in / 16));
      break;
  }
  return w;
}

int64_t round_up32(int64_t v) { return (v + 31) / 32 * 32; }

// The kernels take widths that are multiples of 32 (16-byte chunks of NVFP4). A linear whose
// dims are not (only tiny test checkpoints) is zero-padded to [out_pad, in_pad]: padded
// output rows are 0, padded input columns multiply zero activations, so the math is exact.
LinearWeight upload_linear_padded(Arena& a, const LinearWeight& src, int64_t out_pad, int64_t in_pad) {
  if (!src.data || (out_pad == src.out && in_pad == src.in)) return upload_linear(a, src);
  LinearWeight w = src;
  w.out = out_pad;
  w.in = in_pad;
  auto copy_rows = [&](const uint8_t* data, int64_t row_bytes, int64_t pad_row_bytes) {
    std::vector<uint8_t> h(static_cast<std::size_t>(out_pad * pad_row_bytes), 0);
    for (int64_t r = 0; r < src.out; ++r)
      std::copy(data + r * row_bytes, data + (r + 1) * row_bytes, h.begin() + r * pad_row_bytes);
    return a.upload(h.data(), h.size());
  };
  switch (src.format) {
    case WeightFormat::Dense: {
      std::vector<float> row(static_cast<std::size_t>(src.in));
      std::vector<uint16_t> h(static_cast<std::size_t>(out_pad * in_pad), 0);
      for (int64_t r = 0; r < src.out; ++r) {
        dequantize_row(src, r, row.data());
        for (int64_t i = 0; i < src.in; ++i) h[r * in_pad + i] = float_to_bf16(row[i]);
      }
      w.data = a.upload(h.data(), h.size());
      w.dense_type = ElementType::BF16;
      break;
    }
    case WeightFormat::FP8:
      w.data = copy_rows(static_cast<const uint8_t*>(src.data), src.in, in_pad);
      break;
    case WeightFormat::NVFP4:
      w.data = copy_rows(static_cast<const uint8_t*>(src.data), src.in / 2, in_pad / 2);
      w.block_scale = copy_rows(src.block_scale, src.in / 16, in_pad / 16);
      break;
  }
  return w;
}

ExpertTable upload_experts(Arena& a, const std::vector<Linear>& experts, const std::string& what, int64_t out_pad,
                           int64_t in_pad) {
  ExpertTable t;
  if (experts.empty()) return t;
  const auto& first = experts[0].w;
  t.format = first.format;
  t.experts = static_cast<int64_t>(experts.size());
  t.out = out_pad;
  t.in = in_pad;
  std::vector<const void*> data;
  std::vector<const uint8_t*> scales;
  std::vector<float> scale;
  for (const auto& e : experts) {
    if (e.w.format != first.format)
      throw Error(what + ": the CUDA backend needs every routed expert of a layer in one format; " + e.name + " is " +
                  weight_format_name(e.w.format) + ", " + experts[0].name + " is " + weight_format_name(first.format));
    const LinearWeight w = upload_linear_padded(a, e.w, out_pad, in_pad);
    data.push_back(w.data);
    scales.push_back(w.block_scale);
    scale.push_back(w.scale);
  }
  t.data = a.upload(data.data(), data.size());
  t.block_scale = a.upload(scales.data(), scales.size());
  t.scale = a.upload(scale.data(), scale.size());
  return t;
}

struct DMamba {
  LinearWeight in_proj, out_proj;
  uint16_t *conv_w = nullptr, *conv_b = nullptr, *norm = nullptr;
  float *dt_bias = nullptr, *A = nullptr, *D = nullptr;
  float *conv_state = nullptr, *ssm_state = nullptr;  // [slots, K-1, C], [slots, Hm, P, N]
};
struct DAttn {
  LinearWeight q, k, v, o;
  PagedKvCache cache;
};
struct DMoE {
  LinearWeight gate, shared_up, shared_down, fc1, fc2;
  float* bias = nullptr;
  ExpertTable up, down;
};
struct DBlock {
  LayerKind kind = LayerKind::Mamba;
  uint16_t* norm = nullptr;
  DMamba m;
  DAttn a;
  DMoE e;
  LinearWeight mlp_up, mlp_down;
};

constexpr int64_t kPage = 16;

}  // namespace

struct CudaModel::Impl {
  const Model& model;
  CudaModelOptions opt;
  // Intermediate widths rounded up to 32 (routed experts, shared expert, dense MLP).
  int64_t I_pad = 0, Is_pad = 0, Imlp_pad = 0;
  Arena arena;
  cudaStream_t stream = nullptr;
  double upload_s = 0;
  int64_t weight_bytes = 0;

  LinearWeight embeddings, lm_head;
  uint16_t* norm_f = nullptr;
  std::vector<DBlock> blocks;

  // Sequences: slot -> position, pages.
  std::vector<bool> in_use;
  std::vector<int64_t> pos;
  std::vector<std::vector<int32_t>> pages;
  std::vector<int32_t> free_pages;
  int64_t num_pages = 0;
  std::vector<int32_t> block_tables_host;  // [max_seqs, num_pages]
  int32_t* block_tables = nullptr;

  // Step inputs (device) and activations.
  int32_t *d_ids, *d_query_seq, *d_query_pos, *d_slot_mapping, *d_cu, *d_slots, *d_logit_rows, *d_route_ids;
  float *x, *conv_out, *ssm_y, *router_logits, *route_w, *logits;
  uint16_t *u, *y, *big, *g, *q, *kb, *vb, *o, *r, *h, *yk, *acc, *sh, *sd, *ug;

  Impl(const Model& m, const CudaModelOptions& o) : model(m), opt(o) {}
  ~Impl() {
    if (stream) cudaStreamDestroy(stream);
  }
};

CudaModel::CudaModel(const Model& model, const CudaModelOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {
  Impl& s = *impl_;
  const Config& c = model.config;
  if (options.max_seqs < 1 || options.max_step_tokens < 1 || options.kv_tokens < 1)
    throw Error("CUDA model: max_seqs, max_step_tokens and kv_tokens must be positive");
  check(cudaSetDevice(options.device), "cudaSetDevice(" + std::to_string(options.device) + ")");
  check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const auto t0 = std::chrono::steady_clock::now();
  const ModelWeights& w = model.weights;
  const int S = options.max_seqs;
  s.I_pad = round_up32(c.moe_intermediate_size);
  s.Is_pad = round_up32(c.moe_shared_expert_intermediate_size);
  s.Imlp_pad = round_up32(c.intermediate_size);

  s.embeddings = upload_linear(s.arena, w.embeddings);
  s.lm_head = upload_linear(s.arena, w.lm_head.w);
  s.norm_f = upload_bf16(s.arena, w.norm_f);
  s.num_pages = (options.kv_tokens + kPage - 1) / kPage + S;
  const int64_t kv_elem = options.kv_fp8 ? 1 : 2;
  std::size_t done = 0;
  for (const BlockWeights& b : w.blocks) {
    DBlock d;
    d.kind = b.kind;
    d.norm = upload_bf16(s.arena, b.norm);
    switch (b.kind) {
      case LayerKind::Mamba: {
        const auto& m = b.mamba;
        d.m.in_proj = upload_linear(s.arena, m.in_proj.w);
        d.m.out_proj = upload_linear(s.arena, m.out_proj.w);
        d.m.conv_w = upload_bf16(s.arena, m.conv_weight);
        if (!m.conv_bias.empty()) d.m.conv_b = upload_bf16(s.arena, m.conv_bias);
        d.m.norm = upload_bf16(s.arena, m.norm);
        d.m.dt_bias = s.arena.upload(m.dt_bias.data(), m.dt_bias.size());
        d.m.A = s.arena.upload(m.A.data(), m.A.size());
        d.m.D = s.arena.upload(m.D.data(), m.D.size());
        d.m.conv_state = s.arena.zeros<float>(static_cast<std::size_t>(S * (c.conv_kernel - 1) * c.conv_dim()));
        d.m.ssm_state = s.arena.zeros<float>(
            static_cast<std::size_t>(S * c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size));
        break;
      }
      case LayerKind::Attention: {
        d.a.q = upload_linear(s.arena, b.attn.q.w);
        d.a.k = upload_linear(s.arena, b.attn.k.w);
        d.a.v = upload_linear(s.arena, b.attn.v.w);
        d.a.o = upload_linear(s.arena, b.attn.o.w);
        PagedKvCache& kv = d.a.cache;
        kv.dtype = options.kv_fp8 ? KvDType::FP8_E4M3 : KvDType::BF16;
        kv.num_pages = s.num_pages;
        kv.page_size = kPage;
        kv.kv_heads = c.num_key_value_heads;
        kv.head_dim = c.head_dim;
        const std::size_t bytes = static_cast<std::size_t>(s.num_pages * kPage * c.kv_dim() * kv_elem);
        kv.k = s.arena.alloc(bytes);
        kv.v = s.arena.alloc(bytes);
        break;
      }
      case LayerKind::MoE: {
        const auto& e = b.moe;
        d.e.gate = upload_linear(s.arena, e.gate.w);
        d.e.bias = s.arena.upload(e.gate_bias.data(), e.gate_bias.size());
        const int64_t Din = c.expert_input_dim();
        d.e.up = upload_experts(s.arena, e.up, b.prefix + "mixer.experts", s.I_pad, Din);
        d.e.down = upload_experts(s.arena, e.down, b.prefix + "mixer.experts", Din, s.I_pad);
        if (c.n_shared_experts > 0) {
          d.e.shared_up = upload_linear_padded(s.arena, e.shared_up.w, s.Is_pad, c.hidden_size);
          d.e.shared_down = upload_linear_padded(s.arena, e.shared_down.w, c.hidden_size, s.Is_pad);
        }
        if (c.moe_latent_size > 0) {
          d.e.fc1 = upload_linear(s.arena, e.fc1_latent.w);
          d.e.fc2 = upload_linear(s.arena, e.fc2_latent.w);
        }
        break;
      }
      case LayerKind::MLP:
        d.mlp_up = upload_linear_padded(s.arena, b.mlp.up.w, s.Imlp_pad, c.hidden_size);
        d.mlp_down = upload_linear_padded(s.arena, b.mlp.down.w, c.hidden_size, s.Imlp_pad);
        break;
    }
    s.blocks.push_back(d);
    ++done;
    if (options.verbose) {
      std::fprintf(stderr, "\ruploading weights: layer %zu/%zu, %.2f GB", done, w.blocks.size(),
                   static_cast<double>(s.arena.bytes()) / 1e9);
      std::fflush(stderr);
    }
  }
  check(cudaDeviceSynchronize(), "weight upload");
  s.upload_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.weight_bytes = s.arena.bytes();
  if (options.verbose)
    std::fprintf(stderr, "\ruploaded %.2f GB (weights, KV cache and state) in %.2f s (%.2f GB/s)\n",
                 static_cast<double>(s.weight_bytes) / 1e9, s.upload_s,
                 static_cast<double>(s.weight_bytes) / 1e9 / std::max(s.upload_s, 1e-9));

  // Sequence bookkeeping.
  s.in_use.assign(S, false);
  s.pos.assign(S, 0);
  s.pages.assign(S, {});
  for (int64_t p = s.num_pages - 1; p >= 0; --p) s.free_pages.push_back(static_cast<int32_t>(p));
  s.block_tables_host.assign(static_cast<std::size_t>(S * s.num_pages), 0);
  s.block_tables = s.arena.zeros<int32_t>(s.block_tables_host.size());

  // Activations for up to R rows per step.
  const int64_t R = options.max_step_tokens, H = c.hidden_size, k = std::max<int64_t>(1, c.num_experts_per_tok);
  auto bf = [&](int64_t n) { return static_cast<uint16_t*>(s.arena.alloc(static_cast<std::size_t>(n) * 2)); };
  auto f32 = [&](int64_t n) { return static_cast<float*>(s.arena.alloc(static_cast<std::size_t>(n) * 4)); };
  auto i32 = [&](int64_t n) { return static_cast<int32_t*>(s.arena.alloc(static_cast<std::size_t>(n) * 4)); };
  s.d_ids = i32(R);
  s.d_query_seq = i32(R);
  s.d_query_pos = i32(R);
  s.d_slot_mapping = i32(R);
  s.d_cu = i32(S + 1);
  s.d_slots = i32(S);
  s.d_logit_rows = i32(R);
  s.d_route_ids = i32(R * k);
  s.x = f32(R * H);
  s.u = bf(R * H);
  s.y = bf(R * H);
  s.big = bf(R * std::max<int64_t>(c.in_proj_dim(), 1));
  s.conv_out = f32(R * std::max<int64_t>(c.conv_dim(), 1));
  s.ssm_y = f32(R * std::max<int64_t>(c.d_inner(), 1));
  s.g = bf(R * std::max<int64_t>(c.d_inner(), 1));
  s.q = bf(R * std::max<int64_t>(c.q_dim(), 1));
  s.kb = bf(R * std::max<int64_t>(c.kv_dim(), 1));
  s.vb = bf(R * std::max<int64_t>(c.kv_dim(), 1));
  s.o = bf(R * std::max<int64_t>(c.q_dim(), 1));
  s.router_logits = f32(R * std::max<int64_t>(c.n_routed_experts, 1));
  s.route_w = f32(R * k);
  s.r = bf(R * std::max<int64_t>(c.expert_input_dim(), 1));
  s.h = bf(R * k * std::max({s.I_pad, s.Imlp_pad, int64_t{1}}));
  s.yk = bf(R * k * std::max<int64_t>(c.expert_input_dim(), 1));
  s.acc = bf(R * std::max<int64_t>(c.expert_input_dim(), 1));
  s.sh = bf(R * std::max<int64_t>(s.Is_pad, 1));
  s.sd = bf(R * H);
  s.ug = bf(R * H);
  s.logits = f32(R * c.vocab_size);
}

CudaModel::~CudaModel() = default;

const Model& CudaModel::model() const { return impl_->model; }
double CudaModel::upload_seconds() const { return impl_->upload_s; }
int64_t CudaModel::weight_bytes() const { return impl_->weight_bytes; }

int CudaModel::acquire_slot() {
  Impl& s = *impl_;
  const Config& c = s.model.config;
  for (int i = 0; i < static_cast<int>(s.in_use.size()); ++i) {
    if (s.in_use[i]) continue;
    s.in_use[i] = true;
    s.pos[i] = 0;
    for (auto& b : s.blocks) {
      if (b.kind != LayerKind::Mamba) continue;
      const int64_t conv = (c.conv_kernel - 1) * c.conv_dim();
      const int64_t ssm = c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size;
      check(cudaMemsetAsync(b.m.conv_state + i * conv, 0, static_cast<std::size_t>(conv) * 4, s.stream), "reset slot");
      check(cudaMemsetAsync(b.m.ssm_state + i * ssm, 0, static_cast<std::size_t>(ssm) * 4, s.stream), "reset slot");
    }
    return i;
  }
  throw Error("CUDA model: all " + std::to_string(s.in_use.size()) + " sequence slots are in use");
}

void CudaModel::release_slot(int slot) {
  Impl& s = *impl_;
  if (slot < 0 || slot >= static_cast<int>(s.in_use.size()) || !s.in_use[slot]) return;
  s.in_use[slot] = false;
  for (int32_t p : s.pages[slot]) s.free_pages.push_back(p);
  s.pages[slot].clear();
  s.pos[slot] = 0;
}

int64_t CudaModel::position(int slot) const { return impl_->pos.at(static_cast<std::size_t>(slot)); }

std::vector<std::vector<float>> CudaModel::forward(const std::vector<CudaChunk>& chunks) {
  Impl& s = *impl_;
  const Config& c = s.model.config;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  const float eps = static_cast<float>(c.norm_eps);
  cudaStream_t st = s.stream;

  // Host-side step inputs.
  int64_t R = 0;
  std::set<int> seen;
  for (const auto& ch : chunks) {
    if (ch.slot < 0 || ch.slot >= static_cast<int>(s.in_use.size()) || !s.in_use[ch.slot])
      throw Error("CUDA model: slot " + std::to_string(ch.slot) + " is not in use");
    if (!seen.insert(ch.slot).second) throw Error("CUDA model: slot " + std::to_string(ch.slot) + " twice in one step");
    if (ch.T <= 0) throw Error("CUDA model: a chunk with no tokens");
    for (int64_t t = 0; t < ch.T; ++t)
      if (ch.ids[t] < 0 || ch.ids[t] >= V)
        throw Error("token id " + std::to_string(ch.ids[t]) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
    R += ch.T;
  }
  if (chunks.empty()) return {};
  if (R > s.opt.max_step_tokens)
    throw Error("CUDA model: " + std::to_string(R) + " rows exceed max_step_tokens " + std::to_string(s.opt.max_step_tokens));
  std::vector<int32_t> ids, qseq, qpos, slot_map, cu{0}, slots, logit_rows;
  for (const auto& ch : chunks) {
    // Pages for positions pos .. pos+T-1.
    auto& pg = s.pages[ch.slot];
    const int64_t end = s.pos[ch.slot] + ch.T;
    const std::size_t first_new = pg.size();
    while (static_cast<int64_t>(pg.size()) * kPage < end) {
      if (s.free_pages.empty()) throw Error("CUDA model: the KV cache is full");
      pg.push_back(s.free_pages.back());
      s.free_pages.pop_back();
      s.block_tables_host[static_cast<std::size_t>(ch.slot * s.num_pages) + pg.size() - 1] = pg.back();
    }
    // Pages are only appended: upload just this slot's new block-table entries.
    if (pg.size() > first_new) {
      const std::size_t at = static_cast<std::size_t>(ch.slot * s.num_pages) + first_new;
      check(cudaMemcpyAsync(s.block_tables + at, s.block_tables_host.data() + at, (pg.size() - first_new) * 4,
                            cudaMemcpyHostToDevice, st),
            "block table");
    }
    for (int64_t t = 0; t < ch.T; ++t) {
      const int64_t p = s.pos[ch.slot] + t;
      ids.push_back(ch.ids[t]);
      qseq.push_back(ch.slot);
      qpos.push_back(static_cast<int32_t>(p));
      slot_map.push_back(static_cast<int32_t>(pg[p / kPage] * kPage + p % kPage));
      if (ch.all_logits || t == ch.T - 1) logit_rows.push_back(static_cast<int32_t>(ids.size() - 1));
    }
    cu.push_back(static_cast<int32_t>(ids.size()));
    slots.push_back(ch.slot);
  }
  const int64_t B = static_cast<int64_t>(chunks.size()), L = static_cast<int64_t>(logit_rows.size());
  auto up = [&](int32_t* d, const std::vector<int32_t>& h) {
    check(cudaMemcpyAsync(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice, st), "step inputs");
  };
  up(s.d_ids, ids);
  up(s.d_query_seq, qseq);
  up(s.d_query_pos, qpos);
  up(s.d_slot_mapping, slot_map);
  up(s.d_cu, cu);
  up(s.d_slots, slots);
  up(s.d_logit_rows, logit_rows);

  auto linear = [&](const LinearWeight& w, const uint16_t* xin, int64_t rows, void* out, OutType t = OutType::BF16) {
    LinearCudaArgs a;
    a.w = w;
    a.x = xin;
    a.T = rows;
    a.y = out;
    a.y_type = t;
    linear_cuda(a, st);
  };

  embed_cuda(s.d_ids, static_cast<const uint16_t*>(s.embeddings.data), V, H, R, s.x, st);
  const uint16_t* y_prev = nullptr;
  for (const DBlock& b : s.blocks) {
    add_rmsnorm_cuda(s.x, y_prev, b.norm, R, H, eps, s.u, st);
    switch (b.kind) {
      case LayerKind::Mamba: {
        const int64_t W = c.in_proj_dim(), di = c.d_inner(), C = c.conv_dim();
        linear(b.m.in_proj, s.u, R, s.big);  // [R, z | xBC | dt]
        ConvPrefillArgs ca;
        ca.xbc = s.big + di;
        ca.xbc_stride = W;
        ca.state = b.m.conv_state;
        ca.slot = s.d_slots;
        ca.cu_rows = s.d_cu;
        ca.w = b.m.conv_w;
        ca.bias = b.m.conv_b;
        ca.B = B;
        ca.rows = R;
        ca.C = C;
        ca.K = c.conv_kernel;
        ca.out = s.conv_out;
        conv1d_prefill_silu_cuda(ca, st);
        SsmScanArgs sa;
        sa.xbc = s.conv_out;
        sa.xbc_stride = C;
        sa.dt_raw = s.big + di + C;
        sa.dt_stride = W;
        sa.dt_bias = b.m.dt_bias;
        sa.A = b.m.A;
        sa.D = b.m.D;
        sa.state = b.m.ssm_state;
        sa.slot = s.d_slots;
        sa.cu_rows = s.d_cu;
        sa.B = B;
        sa.rows = R;
        sa.heads = c.mamba_num_heads;
        sa.head_dim = c.mamba_head_dim;
        sa.state_dim = c.ssm_state_size;
        sa.groups = c.n_groups;
        sa.dt_min = static_cast<float>(c.time_step_limit_min);
        sa.dt_max = static_cast<float>(c.time_step_limit_max);
        sa.y = s.ssm_y;
        ssm_scan_cuda(sa, st);
        gated_rmsnorm_cuda(s.ssm_y, s.big, W, b.m.norm, R, di, di / c.n_groups, eps, s.g, st);
        linear(b.m.out_proj, s.g, R, s.y);
        break;
      }
      case LayerKind::Attention: {
        linear(b.a.q, s.u, R, s.q);
        linear(b.a.k, s.u, R, s.kb);
        linear(b.a.v, s.u, R, s.vb);
        kv_cache_write_cuda(b.a.cache, s.kb, s.vb, s.d_slot_mapping, R, st);
        PagedAttentionArgs pa;
        pa.q = s.q;
        pa.T = R;
        pa.q_heads = c.num_attention_heads;
        pa.query_seq = s.d_query_seq;
        pa.query_pos = s.d_query_pos;
        pa.block_tables = s.block_tables;
        pa.max_pages = s.num_pages;
        pa.cache = b.a.cache;
        pa.out = s.o;
        paged_attention_cuda(pa, st);
        linear(b.a.o, s.o, R, s.y);
        break;
      }
      case LayerKind::MoE: {
        const int64_t k = c.num_experts_per_tok, Din = c.expert_input_dim();
        linear(b.e.gate, s.u, R, s.router_logits, OutType::F32);
        RouterParams rp{c.n_routed_experts, k, c.n_group, c.topk_group, c.norm_topk_prob,
                        static_cast<float>(c.routed_scaling_factor)};
        route_topk_cuda(s.router_logits, b.e.bias, rp, R, s.d_route_ids, s.route_w, st);
        const uint16_t* rin = s.u;
        if (c.moe_latent_size > 0) {
          linear(b.e.fc1, s.u, R, s.r);
          rin = s.r;
        }
        ExpertGemvArgs ea;
        ea.w = b.e.up;
        ea.ids = s.d_route_ids;
        ea.T = R;
        ea.k = k;
        ea.x = rin;
        ea.relu2 = true;
        ea.y = s.h;
        expert_gemv_cuda(ea, st);
        ea.w = b.e.down;
        ea.x = s.h;
        ea.x_per_slot = true;
        ea.relu2 = false;
        ea.y = s.yk;
        expert_gemv_cuda(ea, st);
        if (c.moe_latent_size > 0) {
          moe_combine_cuda(s.yk, s.route_w, R, k, Din, s.acc, st);
          linear(b.e.fc2, s.acc, R, s.y);
        } else {
          moe_combine_cuda(s.yk, s.route_w, R, k, Din, s.y, st);
        }
        if (c.n_shared_experts > 0) {
          linear(b.e.shared_up, s.u, R, s.sh);
          relu2_cuda(s.sh, R * s.Is_pad, st);
          linear(b.e.shared_down, s.sh, R, s.sd);
          add_bf16_cuda(s.y, s.sd, R * H, s.y, st);
        }
        break;
      }
      case LayerKind::MLP:
        linear(b.mlp_up, s.u, R, s.h);
        relu2_cuda(s.h, R * s.Imlp_pad, st);
        linear(b.mlp_down, s.h, R, s.y);
        break;
    }
    y_prev = s.y;
  }
  add_rmsnorm_cuda(s.x, y_prev, s.norm_f, R, H, eps, s.u, st);
  gather_rows_bf16_cuda(s.u, s.d_logit_rows, L, H, s.ug, st);
  linear(s.lm_head, s.ug, L, s.logits, OutType::F32);
  std::vector<float> host(static_cast<std::size_t>(L * V));
  check(cudaMemcpyAsync(host.data(), s.logits, host.size() * 4, cudaMemcpyDeviceToHost, st), "logits");
  check(cudaStreamSynchronize(st), "forward");

  std::vector<std::vector<float>> out(chunks.size());
  std::size_t next = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const int64_t n = chunks[i].all_logits ? chunks[i].T : 1;
    out[i].assign(host.begin() + static_cast<int64_t>(next) * V, host.begin() + static_cast<int64_t>(next + n) * V);
    next += static_cast<std::size_t>(n);
    s.pos[chunks[i].slot] += chunks[i].T;
  }
  return out;
}

}  // namespace nemotron::model

#endif
