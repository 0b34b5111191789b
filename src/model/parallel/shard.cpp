#include "model/parallel/shard.h"

#include <string>

#include "util/error.h"

namespace nemotron::model {
namespace {

class Sharder {
 public:
  Sharder(const Model& m, const ParallelConfig& p, RankShard& s, bool count_only)
      : c_(m.config), s_(s), store_(count_only ? nullptr : &s.store), why_(describe_flags(p)) {}

  // Column-parallel: rows [r0, r1) (a view).
  Linear rows(const Linear& L, Range r) { return count({L.name, row_view(L.w, r.begin, r.end), L.input_scale}, false); }
  // Column-parallel over several row ranges (copied when more than one).
  Linear rows(const Linear& L, const std::vector<Range>& r) {
    std::vector<Range> merged;  // adjacent ranges joined: one range is a view
    for (const Range& x : r)
      if (!merged.empty() && merged.back().end == x.begin) merged.back().end = x.end;
      else if (x.size() > 0) merged.push_back(x);
    if (merged.size() == 1) return rows(L, merged[0]);
    return count({L.name, gather_rows(L.w, merged, store_), L.input_scale}, true);
  }
  // Row-parallel: input columns [c0, c1) (copied unless whole).
  Linear cols(const Linear& L, Range r) {
    const bool whole = r.begin == 0 && r.end == L.w.in;
    return count({L.name, column_slice(L.w, r.begin, r.end, store_, L.name, why_), L.input_scale}, !whole);
  }
  Linear whole(const Linear& L) { return count(L, false); }
  // An expert this rank does not own: no rows, no columns.
  static Linear none(const Linear& L, bool up) {
    Linear o{L.name, L.w, L.input_scale};
    (up ? o.w.out : o.w.in) = 0;
    o.w.data = nullptr;
    o.w.block_scale = nullptr;
    return o;
  }
  std::vector<float> floats(std::vector<float> v) {
    s_.weight_bytes += static_cast<int64_t>(v.size()) * 4;
    return v;
  }

  void block(const BlockWeights& b, BlockWeights& o) {
    o.kind = b.kind;
    o.prefix = b.prefix;
    o.norm = floats(b.norm);
    switch (b.kind) {
      case LayerKind::Mamba: mamba(b.mamba, o.mamba); break;
      case LayerKind::Attention: attention(b.attn, o.attn); break;
      case LayerKind::MoE: moe(b.moe, o.moe); break;
      case LayerKind::MLP: {
        const Range r = split(c_.intermediate_size, L().tp_size, L().tp_rank, column_align(b.mlp.down.w));
        o.mlp.up = rows(b.mlp.up, r);
        o.mlp.down = cols(b.mlp.down, r);
        break;
      }
    }
  }

  void mamba(const MambaWeights& w, MambaWeights& o) {
    const int64_t Hm = c_.mamba_num_heads, P = c_.mamba_head_dim, N = c_.ssm_state_size, G = c_.n_groups;
    const int64_t di = c_.d_inner(), GN = G * N;
    const Range h = split(Hm, L().tp_size, L().tp_rank);
    Range g = split(G, L().tp_size, L().tp_rank);
    if (G % L().tp_size != 0) g = {h.begin / (Hm / G), h.begin / (Hm / G) + 1};  // ranks divide over groups
    const Range x{h.begin * P, h.end * P}, bc{g.begin * N, g.end * N};
    // in_proj rows: z [0, di) | x [di, 2di) | B [2di, 2di+GN) | C [2di+GN, 2di+2GN) | dt [.., +Hm).
    o.in_proj = rows(w.in_proj, {x, shift(x, di), shift(bc, 2 * di), shift(bc, 2 * di + GN), shift(h, 2 * di + 2 * GN)});
    // conv channels: x [0, di) | B [di, di+GN) | C [di+GN, di+2GN).
    const std::vector<Range> ch{x, shift(bc, di), shift(bc, di + GN)};
    o.conv_weight = floats(gather_floats(w.conv_weight, ch, c_.conv_kernel));
    if (!w.conv_bias.empty()) o.conv_bias = floats(gather_floats(w.conv_bias, ch));
    o.dt_bias = floats(gather_floats(w.dt_bias, {h}));
    o.A = floats(gather_floats(w.A, {h}));
    o.D = floats(gather_floats(w.D, {h}));
    o.norm = floats(gather_floats(w.norm, {x}));
    o.out_proj = cols(w.out_proj, x);
    s_.mamba_norm_split = G % L().tp_size != 0;
    s_.mamba_norm_group = di / G;
    s_.mamba_groups = G;
    s_.mamba_group0 = g.begin;
    s_.mamba_head0 = h.begin;
    s_.config.mamba_num_heads = h.size();
    s_.config.n_groups = g.size();
  }

  void attention(const AttentionWeights& w, AttentionWeights& o) {
    const int64_t Hq = c_.num_attention_heads, Hkv = c_.num_key_value_heads, Dh = c_.head_dim;
    const Range q = split(Hq, L().tp_size, L().tp_rank);
    Range kv = split(Hkv, L().tp_size, L().tp_rank);
    if (Hkv % L().tp_size != 0) kv = {q.begin / (Hq / Hkv), q.begin / (Hq / Hkv) + 1};  // replicated KV head
    const Range qr{q.begin * Dh, q.end * Dh}, kr{kv.begin * Dh, kv.end * Dh};
    o.q = rows(w.q, qr);
    o.k = rows(w.k, kr);
    o.v = rows(w.v, kr);
    o.o = cols(w.o, qr);
    o.k_scale = w.k_scale;  // per-layer scalars: every rank's KV heads share them
    o.v_scale = w.v_scale;
    o.has_kv_scales = w.has_kv_scales;
    s_.config.num_attention_heads = q.size();
    s_.config.num_key_value_heads = kv.size();
  }

  void moe(const MoEWeights& w, MoEWeights& o) {
    const int64_t E = c_.n_routed_experts, I = c_.moe_intermediate_size;
    o.gate = whole(w.gate);
    o.gate_bias = floats(w.gate_bias);
    const Range mine = split(E, L().ep_size, L().ep_rank);
    for (int64_t e = 0; e < E; ++e) {
      if (e < mine.begin || e >= mine.end) {
        o.up.push_back(none(w.up[e], true));
        o.down.push_back(none(w.down[e], false));
        continue;
      }
      const Range r = split(I, L().moe_tp_size, L().moe_tp_rank, column_align(w.down[e].w));
      o.up.push_back(rows(w.up[e], r));
      o.down.push_back(cols(w.down[e], r));
    }
    if (c_.n_shared_experts > 0) {
      const Range r = split(c_.moe_shared_expert_intermediate_size, L().world, L().rank, column_align(w.shared_down.w));
      o.shared_up = rows(w.shared_up, r);
      o.shared_down = cols(w.shared_down, r);
    }
    if (c_.moe_latent_size > 0) {
      o.fc1_latent = whole(w.fc1_latent);
      o.fc2_latent = whole(w.fc2_latent);
    }
  }

  const RankLayout& L() const { return s_.layout; }

 private:
  static std::string describe_flags(const ParallelConfig& p) {
    return "--tensor-parallel-size " + std::to_string(p.tensor_parallel) + " --expert-parallel-size " +
           std::to_string(p.expert_parallel);
  }
  static Range split(int64_t n, int parts, int part, int64_t align = 1) { return split_range(n, parts, part, align); }
  static Range shift(Range r, int64_t by) { return {r.begin + by, r.end + by}; }
  Linear count(Linear L, bool copied) {
    const int64_t b = L.w.stored_bytes();
    s_.weight_bytes += b;
    if (copied) s_.copied_bytes += b;
    return L;
  }

  const Config& c_;
  RankShard& s_;
  SliceStore* store_;
  std::string why_;
};

}  // namespace

RankShard shard_model(const Model& m, const ParallelConfig& p, int rank, bool count_only) {
  const Config& c = m.config;
  validate_parallel(c, p);
  RankShard s;
  s.layout = rank_layout(p, rank);
  s.config = c;
  Sharder sh(m, p, s, count_only);
  const RankLayout& L = s.layout;
  const ModelWeights& w = m.weights;
  ModelWeights& o = s.weights;

  for (int q = 0; q < L.tp_size; ++q) s.tp_vocab.push_back(split_range(c.vocab_size, L.tp_size, q));
  s.vocab = s.tp_vocab[static_cast<std::size_t>(L.tp_rank)];
  o.embeddings = row_view(w.embeddings, s.vocab.begin, s.vocab.end);
  s.weight_bytes += o.embeddings.stored_bytes();
  o.lm_head = sh.rows(w.lm_head, s.vocab);
  o.norm_f = sh.floats(w.norm_f);
  o.blocks.resize(w.blocks.size());
  for (std::size_t l = 0; l < w.blocks.size(); ++l) sh.block(w.blocks[l], o.blocks[l]);

  o.has_mtp = w.has_mtp;
  if (w.has_mtp) {
    const MtpWeights& mw = w.mtp;
    MtpWeights& mo = o.mtp;
    mo.enorm = sh.floats(mw.enorm);
    mo.hnorm = sh.floats(mw.hnorm);
    mo.final_norm = sh.floats(mw.final_norm);
    s.eh_proj_in = split_range(2 * c.hidden_size, L.tp_size, L.tp_rank, column_align(mw.eh_proj.w));
    mo.eh_proj = sh.cols(mw.eh_proj, s.eh_proj_in);
    mo.blocks.resize(mw.blocks.size());
    for (std::size_t j = 0; j < mw.blocks.size(); ++j) sh.block(mw.blocks[j], mo.blocks[j]);
  }
  return s;
}

}  // namespace nemotron::model
