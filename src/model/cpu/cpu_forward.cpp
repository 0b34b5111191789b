#include "model/cpu/cpu_forward.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "kernels/attention.h"
#include "kernels/linear.h"
#include "kernels/mamba.h"
#include "kernels/moe_router.h"
#include "kernels/norm.h"
#include "kernels/numeric.h"
#include "kernels/state_round.h"
#include "model/parallel/communicator.h"
#include "model/parallel/shard.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::model {

using kernels::linear_cpu;

namespace {

// The innermost live LinearInputScope's observer on this thread (see cpu_forward.h).
thread_local const LinearInputObserver* t_linear_input_observer = nullptr;
// The innermost live RoutingScope's hook on this thread.
thread_local const RoutingHook* t_routing_hook = nullptr;

std::vector<float> apply(const Linear& L, const std::vector<float>& x, int64_t T) {
  if (t_linear_input_observer) (*t_linear_input_observer)(L, x.data(), T);
  std::vector<float> y(static_cast<std::size_t>(T * L.w.out));
  linear_cpu(L.w, x.data(), T, y.data());
  return y;
}

void relu2(std::vector<float>& v) {
  for (auto& a : v) a = a > 0.0f ? a * a : 0.0f;
}

// Rows [row0, row0+T) of a step that belong to one sequence (its cache at position pos0).
struct Rows {
  BlockCache* cache;
  int64_t row0, T, pos0;
  std::vector<BlockCache>* keep = nullptr;  // [T]: a Mamba block's state after each row
};

// The gated norm of a rank whose norm group spans ranks (sharded, n_groups < TP size): the
// rank holds part of one group (D channels of y, z); the group's sum of squares is summed
// over the TP group ([R, G] partial sums, this rank's in column group0), then every rank
// scales its part by the whole group's rsqrt(mean + eps), as gated_rmsnorm_cpu does.
void gated_rmsnorm_split(const RankShard& s, Communicator& tp, const float* y, const float* z, const float* w,
                         int64_t R, int64_t D, float eps, float* out) {
  const int64_t G = s.mamba_groups;
  std::vector<float> ss(static_cast<std::size_t>(R * G), 0.0f);
  for (int64_t t = 0; t < R; ++t) {
    double acc = 0;
    for (int64_t i = 0; i < D; ++i) {
      const float zi = z[t * D + i];
      const float v = y[t * D + i] * (zi / (1.0f + std::exp(-zi)));
      out[t * D + i] = v;
      acc += static_cast<double>(v) * v;
    }
    ss[t * G + s.mamba_group0] = static_cast<float>(acc);
  }
  tp.all_reduce_sum(ss.data(), R * G);
  for (int64_t t = 0; t < R; ++t) {
    const float inv = 1.0f / std::sqrt(ss[t * G + s.mamba_group0] / static_cast<float>(s.mamba_norm_group) + eps);
    for (int64_t i = 0; i < D; ++i) out[t * D + i] = (out[t * D + i] * inv) * w[i];
  }
}

// The SSM state of one layer [Hm, P, N] rounded to its storage type (kernels/state_round.h)
// as written at position `pos`; `head0`: the model's index of the first head held here.
void round_ssm_state(const Config& c, const kernels::SsmStateFormat& f, int layer, int64_t head0, int64_t pos,
                     const float* in, float* out) {
  const int64_t PN = c.mamba_head_dim * c.ssm_state_size, n = c.mamba_num_heads * PN;
  const uint64_t base = static_cast<uint64_t>(head0 * PN);
  const uint32_t seed = f.stochastic ? kernels::ssm_round_seed(static_cast<uint32_t>(layer), pos) : 0u;
  parallel_for(static_cast<std::size_t>(n), [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i)
      out[i] = kernels::round_state(in[i], f.dtype, f.stochastic, kernels::ssm_round_bits_seeded(seed, base + i));
  });
}

// Mamba-2 mixer over the step's rows u [R, H] -> [R, H]; conv and scan per sequence.
// Sharded, `c` holds the rank's heads and groups and the result is the rank's partial sum.
// A 16-bit SSM state (`ssm`) is rounded where a sequence's state is written back: at the end
// of its rows; a kept per-row state is the rounded copy of the fp32 state after that row.
std::vector<float> mamba_mixer(const Config& c, const MambaWeights& w, const std::vector<Rows>& segs,
                               const std::vector<float>& u, int64_t R, const RankContext& rank, int layer,
                               const kernels::SsmStateFormat& ssm) {
  const int64_t di = c.d_inner(), cd = c.conv_dim(), Hm = c.mamba_num_heads, GN = c.n_groups * c.ssm_state_size;
  const int64_t W = c.in_proj_dim();
  const std::vector<float> zxbcdt = apply(w.in_proj, u, R);  // [R, z | xBC | dt]
  std::vector<float> z(R * di), xbc(R * cd), dt(R * Hm);
  for (int64_t t = 0; t < R; ++t) {
    const float* r = zxbcdt.data() + t * W;
    std::copy(r, r + di, z.data() + t * di);
    std::copy(r + di, r + di + cd, xbc.data() + t * cd);
    std::copy(r + di + cd, r + W, dt.data() + t * Hm);
  }
  std::vector<float> conv_out(R * cd);
  // A segment that keeps its per-row states runs conv and scan one row at a time (the same
  // arithmetic: both are sequential in the rows) and copies the state after each row.
  for (const auto& s : segs) {
    const int64_t step = s.keep ? 1 : s.T;
    for (int64_t t = 0; t < s.T; t += step) {
      kernels::causal_conv1d_silu_cpu(xbc.data() + (s.row0 + t) * cd, s.cache->conv.data(), w.conv_weight.data(),
                                      w.conv_bias.empty() ? nullptr : w.conv_bias.data(), step, cd, c.conv_kernel,
                                      conv_out.data() + (s.row0 + t) * cd);
      if (s.keep) (*s.keep)[t].conv = s.cache->conv;
    }
  }
  std::vector<float> x(R * di), B(R * GN), C(R * GN);
  for (int64_t t = 0; t < R; ++t) {
    const float* r = conv_out.data() + t * cd;
    std::copy(r, r + di, x.data() + t * di);
    std::copy(r + di, r + di + GN, B.data() + t * GN);
    std::copy(r + di + GN, r + cd, C.data() + t * GN);
  }
  kernels::SsmDims dims{Hm, c.mamba_head_dim, c.ssm_state_size, c.n_groups};
  const int64_t head0 = rank.shard ? rank.shard->mamba_head0 : 0;
  std::vector<float> y(R * di);
  for (const auto& s : segs) {
    const int64_t step = s.keep ? 1 : s.T;
    for (int64_t t = 0; t < s.T; t += step) {
      const int64_t r = s.row0 + t;
      kernels::ssm_scan_cpu(x.data() + r * di, dt.data() + r * Hm, B.data() + r * GN, C.data() + r * GN,
                            w.dt_bias.data(), w.A.data(), w.D.data(), dims,
                            static_cast<float>(c.time_step_limit_min), static_cast<float>(c.time_step_limit_max), step,
                            s.cache->ssm.data(), y.data() + r * di);
      if (s.keep) {
        auto& kept = (*s.keep)[t].ssm;
        kept = s.cache->ssm;
        if (ssm.dtype != kernels::StateDType::F32)
          round_ssm_state(c, ssm, layer, head0, s.pos0 + t + 1, kept.data(), kept.data());
      }
    }
    // The state written back: the last kept row's copy is it already (rounded at pos0 + T).
    if (ssm.dtype != kernels::StateDType::F32) {
      if (s.keep && s.T > 0) s.cache->ssm = s.keep->back().ssm;
      else round_ssm_state(c, ssm, layer, head0, s.pos0 + s.T, s.cache->ssm.data(), s.cache->ssm.data());
    }
  }
  if (rank.shard && rank.shard->mamba_norm_split)
    gated_rmsnorm_split(*rank.shard, *rank.tp, y.data(), z.data(), w.norm.data(), R, di,
                        static_cast<float>(c.norm_eps), y.data());
  else
    kernels::gated_rmsnorm_cpu(y.data(), z.data(), w.norm.data(), R, di, di / c.n_groups,
                               static_cast<float>(c.norm_eps), y.data());
  return apply(w.out_proj, y, R);
}

std::vector<float> attention_mixer(const Config& c, const AttentionWeights& w, const std::vector<Rows>& segs,
                                   const std::vector<float>& u, int64_t R, bool kv_fp8) {
  const std::vector<float> q = apply(w.q, u, R);
  std::vector<float> k = apply(w.k, u, R), v = apply(w.v, u, R);
  if (kv_fp8) {
    // FP8 KV cache: the rows are stored (and so read back, this step's own rows included) as
    // e4m3(x / scale) * scale (kernels/numeric.h), kept here as those exact fp32 values.
    for (float& x : k) x = kernels::kv_fp8_round(x, w.k_scale);
    for (float& x : v) x = kernels::kv_fp8_round(x, w.v_scale);
  }
  const int64_t kw = c.kv_dim(), qw = c.q_dim();
  std::vector<float> o(R * qw);
  kernels::AttentionDims dims{c.num_attention_heads, c.num_key_value_heads, c.head_dim};
  for (const auto& s : segs) {
    // The cache holds rows for positions [0, pos0); append this sequence's new rows.
    BlockCache& cache = *s.cache;
    if (static_cast<int64_t>(cache.k.size()) != s.pos0 * kw)
      throw Error("attention cache holds " + std::to_string(cache.k.size() / kw) + " positions, expected " +
                  std::to_string(s.pos0));
    cache.k.insert(cache.k.end(), k.begin() + s.row0 * kw, k.begin() + (s.row0 + s.T) * kw);
    cache.v.insert(cache.v.end(), v.begin() + s.row0 * kw, v.begin() + (s.row0 + s.T) * kw);
    kernels::attention_cpu(q.data() + s.row0 * qw, cache.k.data(), cache.v.data(), dims, s.T, s.pos0,
                           o.data() + s.row0 * qw);
  }
  return apply(w.o, o, R);
}

// RoutingHook: reports the block's own routing, then replaces it when forced (see cpu_forward.h).
void apply_routing_hook(int block, const kernels::RouterParams& rp, const float* logits, const float* bias,
                        int64_t T, int32_t* ids, float* gates) {
  const RoutingHook& hook = *t_routing_hook;
  const int64_t E = rp.experts, k = rp.top_k;
  std::vector<float> s(static_cast<std::size_t>(T * E));
  for (int64_t i = 0; i < T * E; ++i) s[i] = 1.0f / (1.0f + std::exp(-logits[i]));
  if (hook.observe) {
    std::vector<float> sel(s);
    for (int64_t i = 0; i < T * E; ++i) sel[i] += bias ? bias[i % E] : 0.0f;
    hook.observe(block, T, sel.data(), ids);
  }
  const int32_t* forced = hook.force ? hook.force(block, T) : nullptr;
  if (!forced) return;
  for (int64_t t = 0; t < T; ++t) {
    float sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = forced[t * k + j];
      if (e < 0 || e >= E) throw Error("routing override: expert id " + std::to_string(e) + " outside [0, " + std::to_string(E) + ")");
      ids[t * k + j] = e;
      gates[t * k + j] = s[t * E + e];
      sum += gates[t * k + j];
    }
    for (int64_t j = 0; j < k; ++j) {
      if (rp.norm_topk_prob) gates[t * k + j] /= (sum + 1e-20f);
      gates[t * k + j] *= rp.routed_scaling_factor;
    }
  }
}

std::vector<float> moe_mixer(const Config& c, const MoEWeights& w, const std::vector<float>& u, int64_t T,
                             int block) {
  const int64_t H = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t Din = c.expert_input_dim();
  const std::vector<float> logits = apply(w.gate, u, T);  // fp32 router logits [T, E]
  kernels::RouterParams rp{E, k, c.n_group, c.topk_group, c.norm_topk_prob,
                           static_cast<float>(c.routed_scaling_factor)};
  std::vector<int32_t> ids(T * k);
  std::vector<float> gates(T * k);
  for (int64_t t = 0; t < T; ++t)
    kernels::route_topk_cpu(logits.data() + t * E, w.gate_bias.data(), rp, ids.data() + t * k, gates.data() + t * k);
  if (t_routing_hook) apply_routing_hook(block, rp, logits.data(), w.gate_bias.data(), T, ids.data(), gates.data());

  const std::vector<float> r = c.moe_latent_size > 0 ? apply(w.fc1_latent, u, T) : u;  // [T, Din]
  // Group the (token, slot) pairs by expert and run each expert once over its tokens.
  std::vector<std::vector<int64_t>> by_expert(E);
  for (int64_t i = 0; i < T * k; ++i) by_expert[ids[i]].push_back(i);
  std::vector<float> expert_out(T * k * Din, 0.0f);  // per (token, slot)
  for (int64_t e = 0; e < E; ++e) {
    const auto& slots = by_expert[e];
    if (slots.empty() || w.up[e].w.out == 0) continue;  // sharded: not this rank's (share of the) expert
    const int64_t n = static_cast<int64_t>(slots.size());
    std::vector<float> xin(n * Din);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t t = slots[j] / k;
      std::copy(r.begin() + t * Din, r.begin() + (t + 1) * Din, xin.begin() + j * Din);
    }
    std::vector<float> h = apply(w.up[e], xin, n);
    relu2(h);
    const std::vector<float> y = apply(w.down[e], h, n);
    for (int64_t j = 0; j < n; ++j)
      std::copy(y.begin() + j * Din, y.begin() + (j + 1) * Din, expert_out.begin() + slots[j] * Din);
  }
  // Weighted sum in slot order (fp32), then the latent up-projection.
  std::vector<float> acc(T * Din, 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t s = 0; s < k; ++s) {
      const float g = gates[t * k + s];
      const float* y = expert_out.data() + (t * k + s) * Din;
      float* a = acc.data() + t * Din;
      for (int64_t i = 0; i < Din; ++i) a[i] += g * y[i];
    }
  std::vector<float> out = c.moe_latent_size > 0 ? apply(w.fc2_latent, acc, T) : std::move(acc);
  if (c.n_shared_experts > 0 && w.shared_up.w.out > 0) {
    std::vector<float> h = apply(w.shared_up, u, T);
    relu2(h);
    const std::vector<float> s = apply(w.shared_down, h, T);
    for (int64_t i = 0; i < T * H; ++i) out[i] += s[i];
  }
  return out;
}

std::vector<float> mlp_mixer(const MLPWeights& w, const std::vector<float>& u, int64_t T) {
  std::vector<float> h = apply(w.up, u, T);
  relu2(h);
  return apply(w.down, h, T);
}

BlockCache empty_cache(const Config& c, LayerKind kind) {
  BlockCache b;
  if (kind == LayerKind::Mamba) {
    b.conv.assign((c.conv_kernel - 1) * c.conv_dim(), 0.0f);
    b.ssm.assign(c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size, 0.0f);
  }
  return b;
}

}  // namespace

LinearInputScope::LinearInputScope(LinearInputObserver fn) : fn_(std::move(fn)), prev_(t_linear_input_observer) {
  t_linear_input_observer = &fn_;
}

LinearInputScope::~LinearInputScope() { t_linear_input_observer = prev_; }

RoutingScope::RoutingScope(RoutingHook hook) : hook_(std::move(hook)), prev_(t_routing_hook) { t_routing_hook = &hook_; }

RoutingScope::~RoutingScope() { t_routing_hook = prev_; }

const RoutingHook* current_routing_hook() { return t_routing_hook; }

CpuModel::CpuModel(const Model& model) : model_(model), config_(&model.config), weights_(&model.weights) {}

namespace {
const RankShard& shard_of(const RankContext& rank) {
  if (!rank.shard || !rank.tp || !rank.world) throw Error("CpuModel: a rank needs its shard and communicators");
  return *rank.shard;
}
}  // namespace

CpuModel::CpuModel(const Model& model, const RankContext& rank)
    : model_(model), config_(&shard_of(rank).config), weights_(&rank.shard->weights), rank_(rank) {}

void roll_back_state(SequenceState& state, const RowStates& rows, const std::vector<BlockCache>& before, int64_t pos,
                     int64_t kv_dim) {
  if (pos > state.pos) throw Error("roll back: position " + std::to_string(pos) + " is ahead of the state's " +
                                   std::to_string(state.pos));
  for (std::size_t b = 0; b < state.blocks.size(); ++b) {
    BlockCache& c = state.blocks[b];
    if (!c.conv.empty() || !c.ssm.empty()) {  // Mamba: the state after row pos - pos0 - 1
      const auto& kept = rows.at(b);
      const int64_t n = static_cast<int64_t>(kept.size()) - (state.pos - pos);  // rows kept
      if (n < 0) throw Error("roll back: position " + std::to_string(pos) + " is before the kept chunk");
      const BlockCache& src = n == 0 ? before.at(b) : kept[static_cast<std::size_t>(n - 1)];
      c.conv = src.conv;
      c.ssm = src.ssm;
    } else {  // attention: K/V rows for positions [0, pos)
      c.k.resize(static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(c.k.size()), pos * kv_dim)));
      c.v.resize(static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(c.v.size()), pos * kv_dim)));
    }
  }
  state.pos = pos;
}

int32_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}

SequenceState CpuModel::new_state() const {
  SequenceState s;
  for (auto kind : config().layers) s.blocks.push_back(empty_cache(config(), kind));
  return s;
}

SequenceState CpuModel::new_mtp_state() const {
  SequenceState s;
  for (auto kind : config().mtp_layers) s.blocks.push_back(empty_cache(config(), kind));
  return s;
}

void CpuModel::run_block(const BlockWeights& b, int index, const std::vector<Segment>& segs,
                         std::vector<float>& x, int64_t R) const {
  const Config& c = config();
  const int64_t H = c.hidden_size;
  std::vector<float> u(R * H);
  kernels::rmsnorm_cpu(x.data(), b.norm.data(), R, H, static_cast<float>(c.norm_eps), u.data());
  std::vector<Rows> rows;
  for (const auto& s : segs) rows.push_back({s.cache, s.row0, s.T, s.pos0, s.keep});
  std::vector<float> y;
  switch (b.kind) {
    case LayerKind::Mamba: y = mamba_mixer(c, b.mamba, rows, u, R, rank_, index, ssm_); break;
    case LayerKind::Attention: y = attention_mixer(c, b.attn, rows, u, R, kv_fp8_); break;
    case LayerKind::MoE: y = moe_mixer(c, b.moe, u, R, index); break;
    case LayerKind::MLP: y = mlp_mixer(b.mlp, u, R); break;
  }
  // Sharded: each rank holds a partial sum of the mixer's output (row-parallel projections,
  // its experts); MoE blocks are split over every rank, the others over the TP group.
  if (rank_.shard) (b.kind == LayerKind::MoE ? rank_.world : rank_.tp)->all_reduce_sum(y.data(), R * H);
  for (int64_t i = 0; i < R * H; ++i) x[i] += y[i];
}

void CpuModel::embed(const int32_t* ids, int64_t T, float* x) const {
  const int64_t H = model_.config.hidden_size, V = model_.config.vocab_size;
  // Sharded: this rank holds vocab rows [v0, v1); the others' rows are zero here and come
  // from the all-reduce (exactly: one rank holds each row).
  const int64_t v0 = rank_.shard ? rank_.shard->vocab.begin : 0, v1 = rank_.shard ? rank_.shard->vocab.end : V;
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V)
      throw Error("token id " + std::to_string(ids[t]) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
    if (ids[t] >= v0 && ids[t] < v1) kernels::dequantize_row(weights_->embeddings, ids[t] - v0, x + t * H);
    else std::fill(x + t * H, x + (t + 1) * H, 0.0f);
  }
  if (rank_.shard) rank_.tp->all_reduce_sum(x, T * H);
}

std::vector<float> CpuModel::gather_logits(const std::vector<float>& part, int64_t rows) const {
  const auto& ranges = rank_.shard->tp_vocab;
  const int64_t V = model_.config.vocab_size;
  std::vector<int64_t> counts;
  for (const Range& r : ranges) counts.push_back(rows * r.size());
  std::vector<float> blocks(static_cast<std::size_t>(rows * V)), logits(static_cast<std::size_t>(rows * V));
  rank_.tp->all_gather(part.data(), counts, blocks.data());
  // blocks: rank 0's [rows, V0], rank 1's [rows, V1], ... -> logits [rows, V].
  const float* src = blocks.data();
  for (const Range& r : ranges)
    for (int64_t i = 0; i < rows; ++i, src += r.size()) std::copy(src, src + r.size(), logits.data() + i * V + r.begin);
  return logits;
}

std::vector<ForwardResult> CpuModel::heads(const std::vector<float>& x, const std::vector<Segment>& segs,
                                           const std::vector<bool>& all_logits,
                                           const std::vector<float>& final_norm) const {
  const Config& c = config();
  const int64_t H = c.hidden_size, V = c.vocab_size;
  const int64_t R = static_cast<int64_t>(x.size()) / H;
  std::vector<float> normed(R * H);
  kernels::rmsnorm_cpu(x.data(), final_norm.data(), R, H, static_cast<float>(c.norm_eps), normed.data());
  // One lm_head pass over the rows that need logits.
  std::vector<int64_t> rows;
  for (std::size_t i = 0; i < segs.size(); ++i)
    for (int64_t t = all_logits[i] ? 0 : segs[i].T - 1; t < segs[i].T; ++t) rows.push_back(segs[i].row0 + t);
  const int64_t nrows = static_cast<int64_t>(rows.size());
  const kernels::LinearWeight& head = weights_->lm_head.w;  // [V, H], or the rank's vocab rows
  std::vector<float> sel(nrows * H), logits(nrows * head.out);
  for (int64_t r = 0; r < nrows; ++r)
    std::copy(normed.begin() + rows[r] * H, normed.begin() + (rows[r] + 1) * H, sel.begin() + r * H);
  linear_cpu(head, sel.data(), nrows, logits.data());
  if (rank_.shard && rank_.tp->size() > 1) logits = gather_logits(logits, nrows);
  std::vector<ForwardResult> out(segs.size());
  std::size_t next = 0;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const int64_t n = all_logits[i] ? segs[i].T : 1;
    out[i].logits.assign(logits.begin() + next * V, logits.begin() + (next + n) * V);
    next += n;
    out[i].hidden.assign(normed.begin() + segs[i].row0 * H, normed.begin() + (segs[i].row0 + segs[i].T) * H);
  }
  return out;
}

ForwardResult CpuModel::forward(SequenceState& state, const int32_t* ids, int64_t T, bool all_logits,
                                const HiddenObserver& observer) const {
  return std::move(forward_batch({{&state, ids, T, all_logits}}, observer)[0]);
}

std::vector<ForwardResult> CpuModel::forward_batch(const std::vector<SequenceChunk>& chunks,
                                                   const HiddenObserver& observer) const {
  const auto& w = *weights_;
  const int64_t H = model_.config.hidden_size;
  if (chunks.empty()) throw Error("forward: empty batch");
  int64_t R = 0;
  for (const auto& ch : chunks) {
    if (ch.T <= 0) throw Error("forward: a sequence with no tokens");
    if (!ch.state || ch.state->blocks.size() != w.blocks.size())
      throw Error("forward: state does not belong to this model");
    R += ch.T;
  }
  std::vector<float> x(R * H);
  std::vector<bool> all_logits;
  int64_t row = 0;
  for (const auto& ch : chunks) {
    embed(ch.ids, ch.T, x.data() + row * H);
    row += ch.T;
    all_logits.push_back(ch.all_logits);
  }
  if (observer) observer(0, x);
  for (const auto& ch : chunks)
    if (ch.row_states) {
      ch.row_states->assign(w.blocks.size(), {});
      for (std::size_t l = 0; l < w.blocks.size(); ++l)
        if (w.blocks[l].kind == LayerKind::Mamba) (*ch.row_states)[l].resize(static_cast<std::size_t>(ch.T));
    }
  std::vector<Segment> segs(chunks.size());
  for (std::size_t l = 0; l < w.blocks.size(); ++l) {
    row = 0;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      const auto& ch = chunks[i];
      std::vector<BlockCache>* keep =
          ch.row_states && w.blocks[l].kind == LayerKind::Mamba ? &(*ch.row_states)[l] : nullptr;
      segs[i] = {&ch.state->blocks[l], row, ch.T, ch.state->pos, keep};
      row += ch.T;
    }
    run_block(w.blocks[l], static_cast<int>(l), segs, x, R);
    if (observer) observer(static_cast<int>(l) + 1, x);
  }
  auto out = heads(x, segs, all_logits, w.norm_f);
  if (observer) {
    std::vector<float> normed;
    for (const auto& r : out) normed.insert(normed.end(), r.hidden.begin(), r.hidden.end());
    observer(static_cast<int>(w.blocks.size()) + 1, normed);
  }
  for (const auto& ch : chunks) ch.state->pos += ch.T;
  return out;
}

ForwardResult CpuModel::mtp_forward(SequenceState& state, const int32_t* next_ids, const float* hidden,
                                    int64_t T, bool all_logits) const {
  const Config& c = config();
  if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  if (T <= 0) throw Error("mtp_forward: no tokens");
  if (state.blocks.size() != c.mtp_layers.size()) throw Error("mtp_forward: state is not an MTP state");
  const auto& m = weights_->mtp;
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.norm_eps);
  std::vector<float> e(T * H);
  embed(next_ids, T, e.data());
  // eh_proj input: [enorm(embedding) ; hnorm(hidden)] per row, width 2H.
  std::vector<float> cat(T * 2 * H);
  for (int64_t t = 0; t < T; ++t) {
    kernels::rmsnorm_cpu(e.data() + t * H, m.enorm.data(), 1, H, eps, cat.data() + t * 2 * H);
    kernels::rmsnorm_cpu(hidden + t * H, m.hnorm.data(), 1, H, eps, cat.data() + t * 2 * H + H);
  }
  std::vector<float> x;
  if (rank_.shard) {  // row-parallel: this rank's input columns [c0, c1) of 2H, then the sum
    const Range in = rank_.shard->eh_proj_in;
    std::vector<float> part(static_cast<std::size_t>(T * in.size()));
    for (int64_t t = 0; t < T; ++t)
      std::copy(cat.begin() + t * 2 * H + in.begin, cat.begin() + t * 2 * H + in.end, part.begin() + t * in.size());
    x = in.size() > 0 ? apply(m.eh_proj, part, T) : std::vector<float>(static_cast<std::size_t>(T * H), 0.0f);
    rank_.tp->all_reduce_sum(x.data(), T * H);
  } else {
    x = apply(m.eh_proj, cat, T);
  }
  for (std::size_t j = 0; j < m.blocks.size(); ++j)
    run_block(m.blocks[j], static_cast<int>(c.layers.size() + j), {{&state.blocks[j], 0, T, state.pos}}, x, T);
  auto out = heads(x, {{nullptr, 0, T, state.pos}}, {all_logits}, m.final_norm);
  state.pos += T;
  return std::move(out[0]);
}

}  // namespace nemotron::model
