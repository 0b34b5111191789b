#include "model/cpu_forward.h"

#include <algorithm>
#include <string>

#include "kernels/attention.h"
#include "kernels/linear.h"
#include "kernels/mamba.h"
#include "kernels/moe_router.h"
#include "kernels/norm.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::model {

using kernels::linear_cpu;

namespace {

std::vector<float> apply(const Linear& L, const std::vector<float>& x, int64_t T) {
  std::vector<float> y(static_cast<std::size_t>(T * L.w.out));
  linear_cpu(L.w, x.data(), T, y.data());
  return y;
}

void relu2(std::vector<float>& v) {
  for (auto& a : v) a = a > 0.0f ? a * a : 0.0f;
}

// Mamba-2 mixer over T rows u [T, H] -> [T, H].
std::vector<float> mamba_mixer(const Config& c, const MambaWeights& w, BlockCache& cache,
                               const std::vector<float>& u, int64_t T) {
  const int64_t di = c.d_inner(), cd = c.conv_dim(), Hm = c.mamba_num_heads, GN = c.n_groups * c.ssm_state_size;
  const int64_t W = c.in_proj_dim();
  const std::vector<float> zxbcdt = apply(w.in_proj, u, T);  // [T, z | xBC | dt]
  std::vector<float> z(T * di), xbc(T * cd), dt(T * Hm);
  for (int64_t t = 0; t < T; ++t) {
    const float* r = zxbcdt.data() + t * W;
    std::copy(r, r + di, z.data() + t * di);
    std::copy(r + di, r + di + cd, xbc.data() + t * cd);
    std::copy(r + di + cd, r + W, dt.data() + t * Hm);
  }
  std::vector<float> conv_out(T * cd);
  kernels::causal_conv1d_silu_cpu(xbc.data(), cache.conv.data(), w.conv_weight.data(),
                                  w.conv_bias.empty() ? nullptr : w.conv_bias.data(), T, cd,
                                  c.conv_kernel, conv_out.data());
  std::vector<float> x(T * di), B(T * GN), C(T * GN);
  for (int64_t t = 0; t < T; ++t) {
    const float* r = conv_out.data() + t * cd;
    std::copy(r, r + di, x.data() + t * di);
    std::copy(r + di, r + di + GN, B.data() + t * GN);
    std::copy(r + di + GN, r + cd, C.data() + t * GN);
  }
  kernels::SsmDims dims{Hm, c.mamba_head_dim, c.ssm_state_size, c.n_groups};
  std::vector<float> y(T * di);
  kernels::ssm_scan_cpu(x.data(), dt.data(), B.data(), C.data(), w.dt_bias.data(), w.A.data(),
                        w.D.data(), dims, static_cast<float>(c.time_step_limit_min),
                        static_cast<float>(c.time_step_limit_max), T, cache.ssm.data(), y.data());
  kernels::gated_rmsnorm_cpu(y.data(), z.data(), w.norm.data(), T, di, di / c.n_groups,
                             static_cast<float>(c.norm_eps), y.data());
  return apply(w.out_proj, y, T);
}

std::vector<float> attention_mixer(const Config& c, const AttentionWeights& w, BlockCache& cache,
                                   int64_t pos0, const std::vector<float>& u, int64_t T) {
  const std::vector<float> q = apply(w.q, u, T), k = apply(w.k, u, T), v = apply(w.v, u, T);
  // The cache holds rows for positions [0, pos0); append this call's rows.
  const int64_t kw = c.kv_dim();
  if (static_cast<int64_t>(cache.k.size()) != pos0 * kw)
    throw Error("attention cache holds " + std::to_string(cache.k.size() / kw) + " positions, expected " +
                std::to_string(pos0));
  cache.k.insert(cache.k.end(), k.begin(), k.end());
  cache.v.insert(cache.v.end(), v.begin(), v.end());
  std::vector<float> o(T * c.q_dim());
  kernels::AttentionDims dims{c.num_attention_heads, c.num_key_value_heads, c.head_dim};
  kernels::attention_cpu(q.data(), cache.k.data(), cache.v.data(), dims, T, pos0, o.data());
  return apply(w.o, o, T);
}

std::vector<float> moe_mixer(const Config& c, const MoEWeights& w, const std::vector<float>& u, int64_t T) {
  const int64_t H = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t Din = c.expert_input_dim();
  const std::vector<float> logits = apply(w.gate, u, T);  // fp32 router logits [T, E]
  kernels::RouterParams rp{E, k, c.n_group, c.topk_group, c.norm_topk_prob,
                           static_cast<float>(c.routed_scaling_factor)};
  std::vector<int32_t> ids(T * k);
  std::vector<float> gates(T * k);
  for (int64_t t = 0; t < T; ++t)
    kernels::route_topk_cpu(logits.data() + t * E, w.gate_bias.data(), rp, ids.data() + t * k, gates.data() + t * k);

  const std::vector<float> r = c.moe_latent_size > 0 ? apply(w.fc1_latent, u, T) : u;  // [T, Din]
  // Group the (token, slot) pairs by expert and run each expert once over its tokens.
  std::vector<std::vector<int64_t>> by_expert(E);
  for (int64_t i = 0; i < T * k; ++i) by_expert[ids[i]].push_back(i);
  std::vector<float> expert_out(T * k * Din, 0.0f);  // per (token, slot)
  for (int64_t e = 0; e < E; ++e) {
    const auto& slots = by_expert[e];
    if (slots.empty()) continue;
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
  if (c.n_shared_experts > 0) {
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

int32_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}

SequenceState CpuModel::new_state() const {
  SequenceState s;
  for (auto kind : model_.config.layers) s.blocks.push_back(empty_cache(model_.config, kind));
  return s;
}

SequenceState CpuModel::new_mtp_state() const {
  SequenceState s;
  for (auto kind : model_.config.mtp_layers) s.blocks.push_back(empty_cache(model_.config, kind));
  return s;
}

void CpuModel::run_block(const BlockWeights& b, BlockCache& cache, int64_t pos0, std::vector<float>& x,
                         int64_t T) const {
  const Config& c = model_.config;
  const int64_t H = c.hidden_size;
  std::vector<float> u(T * H);
  kernels::rmsnorm_cpu(x.data(), b.norm.data(), T, H, static_cast<float>(c.norm_eps), u.data());
  std::vector<float> y;
  switch (b.kind) {
    case LayerKind::Mamba: y = mamba_mixer(c, b.mamba, cache, u, T); break;
    case LayerKind::Attention: y = attention_mixer(c, b.attn, cache, pos0, u, T); break;
    case LayerKind::MoE: y = moe_mixer(c, b.moe, u, T); break;
    case LayerKind::MLP: y = mlp_mixer(b.mlp, u, T); break;
  }
  for (int64_t i = 0; i < T * H; ++i) x[i] += y[i];
}

void CpuModel::embed(const int32_t* ids, int64_t T, std::vector<float>& x) const {
  const int64_t H = model_.config.hidden_size, V = model_.config.vocab_size;
  x.resize(T * H);
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V)
      throw Error("token id " + std::to_string(ids[t]) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
    kernels::dequantize_row(model_.weights.embeddings, ids[t], x.data() + t * H);
  }
}

ForwardResult CpuModel::head(std::vector<float>& x, int64_t T, const std::vector<float>& final_norm,
                             bool all_logits) const {
  const Config& c = model_.config;
  const int64_t H = c.hidden_size;
  ForwardResult r;
  r.hidden.resize(T * H);
  kernels::rmsnorm_cpu(x.data(), final_norm.data(), T, H, static_cast<float>(c.norm_eps), r.hidden.data());
  const int64_t first = all_logits ? 0 : T - 1, rows = T - first;
  r.logits.resize(rows * c.vocab_size);
  linear_cpu(model_.weights.lm_head.w, r.hidden.data() + first * H, rows, r.logits.data());
  return r;
}

ForwardResult CpuModel::forward(SequenceState& state, const int32_t* ids, int64_t T, bool all_logits,
                                const HiddenObserver& observer) const {
  if (T <= 0) throw Error("forward: no tokens");
  const auto& w = model_.weights;
  if (state.blocks.size() != w.blocks.size()) throw Error("forward: state does not belong to this model");
  std::vector<float> x;
  embed(ids, T, x);
  if (observer) observer(0, x);
  for (std::size_t l = 0; l < w.blocks.size(); ++l) {
    run_block(w.blocks[l], state.blocks[l], state.pos, x, T);
    if (observer) observer(static_cast<int>(l) + 1, x);
  }
  ForwardResult r = head(x, T, w.norm_f, all_logits);
  if (observer) observer(static_cast<int>(w.blocks.size()) + 1, r.hidden);
  state.pos += T;
  return r;
}

ForwardResult CpuModel::mtp_forward(SequenceState& state, const int32_t* next_ids, const float* hidden,
                                    int64_t T, bool all_logits) const {
  const Config& c = model_.config;
  if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  if (T <= 0) throw Error("mtp_forward: no tokens");
  const auto& m = model_.weights.mtp;
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.norm_eps);
  std::vector<float> e;
  embed(next_ids, T, e);
  // eh_proj input: [enorm(embedding) ; hnorm(hidden)] per row, width 2H.
  std::vector<float> cat(T * 2 * H);
  for (int64_t t = 0; t < T; ++t) {
    kernels::rmsnorm_cpu(e.data() + t * H, m.enorm.data(), 1, H, eps, cat.data() + t * 2 * H);
    kernels::rmsnorm_cpu(hidden + t * H, m.hnorm.data(), 1, H, eps, cat.data() + t * 2 * H + H);
  }
  std::vector<float> x = apply(m.eh_proj, cat, T);
  for (std::size_t j = 0; j < m.blocks.size(); ++j) run_block(m.blocks[j], state.blocks[j], state.pos, x, T);
  ForwardResult r = head(x, T, m.final_norm, all_logits);
  state.pos += T;
  return r;
}

}  // namespace nemotron::model
