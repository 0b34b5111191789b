// The one walk over a CudaModel's device buffers (see cuda_buffers.h). Counting and placing
// run this same code; nothing here touches a device or converts data unless the allocator is
// placing (the fill callbacks run only then).
#include "model/cuda/cuda_buffers.h"

#include "kernels/sampling_cuda.h"

#include <algorithm>
#include <mutex>
#include <string>

#include "kernels/attention_splits.h"
#include "kernels/fp8_quantize.h"
#include "kernels/linear_cuda.h"
#include "kernels/mamba_cuda.h"
#include "kernels/numeric.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::model {

int64_t cuda_kv_pages(const CudaModelOptions& o) {
  return (o.kv_tokens + cuda_detail::kPage - 1) / cuda_detail::kPage + o.max_seqs;
}

namespace cuda_detail {

SnapshotLayout snapshot_layout(const Config& c, bool kv_fp8, kernels::StateDType ssm) {
  SnapshotLayout l;
  l.page_bytes = kPage * c.kv_dim() * (kv_fp8 ? 1 : 2);
  const int64_t mamba = 4 * (c.conv_kernel - 1) * c.conv_dim() +
                        kernels::state_dtype_bytes(ssm) * c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size;
  static const std::vector<LayerKind> none;
  for (const auto* list : {&c.layers, c.has_mtp() ? &c.mtp_layers : &none})
    for (auto kind : *list) {
      l.kv_blocks += kind == LayerKind::Attention;
      l.mamba_bytes += kind == LayerKind::Mamba ? mamba : 0;
    }
  l.unit = std::max<int64_t>(4096, (2 * l.kv_blocks * l.page_bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign);
  l.mamba_units = (l.mamba_bytes + l.unit - 1) / l.unit;
  return l;
}

int64_t spec_entries(const CudaModelOptions& o) { return std::max(0, std::min(o.spec_seqs, o.max_seqs)); }

using kernels::ElementType;
using kernels::WeightFormat;

const char* arena_name(ArenaKind k) {
  switch (k) {
    case ArenaKind::Weights: return "weights";
    case ArenaKind::Cache: return "cache";
    case ArenaKind::Step: return "step";
  }
  return "?";
}

ArenaKind arena_of(Use u) {
  switch (u) {
    case Use::Weights: return ArenaKind::Weights;
    case Use::State:
    case Use::Kv:
    case Use::Tables:
    case Use::Speculation:
    case Use::Snapshots: return ArenaKind::Cache;
    case Use::Activations:
    case Use::AttentionWorkspace: return ArenaKind::Step;
  }
  return ArenaKind::Step;
}

void* DeviceAllocator::take(Use use, int64_t bytes) {
  if (bytes < 0) throw Error("CUDA model: a buffer of " + std::to_string(bytes) + " bytes (negative size)");
  const int a = static_cast<int>(arena_of(use));
  const int64_t n = (std::max<int64_t>(bytes, 1) + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  void* p = base_[a] ? base_[a] + table_.arena[a] : nullptr;
  table_.arena[a] += n;
  table_.by_use[static_cast<int>(use)] += n;
  ++table_.takes;
  return p;
}

void* DeviceAllocator::pinned(int64_t bytes) {
  table_.pinned_host += (std::max<int64_t>(bytes, 1) + 4095) / 4096 * 4096;
  return nullptr;
}

namespace {

int64_t dense_element_bytes(ElementType t) { return t == ElementType::F32 ? 4 : 2; }

// A norm (or other fp32 vector) as BF16; nullptr for an empty vector (as f32_vector).
uint16_t* bf16_vector(DeviceAllocator& a, const std::vector<float>& v) {
  if (v.empty()) return nullptr;
  const auto n = static_cast<int64_t>(v.size());
  auto* d = a.array<uint16_t>(Use::Weights, n);
  a.produce(d, n * 2, [&v](uint8_t* host) {
    auto* p = reinterpret_cast<uint16_t*>(host);
    for (std::size_t i = 0; i < v.size(); ++i) p[i] = kernels::float_to_bf16(v[i]);
  });
  return d;
}

float* f32_vector(DeviceAllocator& a, const std::vector<float>& v) {
  if (v.empty()) return nullptr;
  const auto n = static_cast<int64_t>(v.size());
  float* d = a.array<float>(Use::Weights, n);
  a.copy(d, v.data(), n * 4);
  return d;
}

// `rows` rows of `row_bytes` from src, each zero-padded to `pad_row_bytes`, into `out_rows`
// rows (rows past `rows` are zero): one host buffer, one copy.
void* padded_rows(DeviceAllocator& a, const uint8_t* src, int64_t rows, int64_t row_bytes, int64_t out_rows,
                  int64_t pad_row_bytes) {
  void* d = a.take(Use::Weights, out_rows * pad_row_bytes);
  if (rows == out_rows && row_bytes == pad_row_bytes) {
    a.copy(d, src, rows * row_bytes);
    return d;
  }
  a.produce(
      d, out_rows * pad_row_bytes,
      [=](uint8_t* host) {
        std::fill(host, host + out_rows * pad_row_bytes, uint8_t{0});
        for (int64_t r = 0; r < rows; ++r)
          std::copy(src + r * row_bytes, src + (r + 1) * row_bytes, host + r * pad_row_bytes);
      },
      src, rows * row_bytes);
  return d;
}

// A linear weight in its checkpoint format as [out_pad, in_pad] on the device. The kernels
// take widths that are multiples of 32 (16-byte chunks of NVFP4); a linear whose dims are not
// (only tiny test checkpoints) is zero-padded: padded output rows are 0, padded input columns
// multiply zero activations, so the math is exact. Dense F16/F32 weights (tiny test
// checkpoints only) become BF16, the kernels' dense type.
LinearWeight linear(DeviceAllocator& a, const LinearWeight& src, int64_t out_pad, int64_t in_pad) {
  LinearWeight w = src;
  if (!src.data) return w;
  w.out = out_pad;
  w.in = in_pad;
  const auto* data = static_cast<const uint8_t*>(src.data);
  switch (src.format) {
    case WeightFormat::Dense:
      if (src.dense_type == ElementType::BF16) {
        w.data = padded_rows(a, data, src.out, src.in * 2, out_pad, in_pad * 2);
      } else {
        void* dst = a.take(Use::Weights, out_pad * in_pad * 2);
        a.produce(
            dst, out_pad * in_pad * 2,
            [src, out_pad, in_pad](uint8_t* host) {
              auto* h = reinterpret_cast<uint16_t*>(host);
              std::fill(h, h + out_pad * in_pad, uint16_t{0});
              std::vector<float> row(static_cast<std::size_t>(src.in));
              for (int64_t r = 0; r < src.out; ++r) {
                kernels::dequantize_row(src, r, row.data());
                for (int64_t i = 0; i < src.in; ++i) h[r * in_pad + i] = kernels::float_to_bf16(row[i]);
              }
            },
            data, src.out * src.in * dense_element_bytes(src.dense_type));
        w.data = dst;
        w.dense_type = ElementType::BF16;
      }
      break;
    case WeightFormat::FP8:
      w.data = padded_rows(a, data, src.out, src.in, out_pad, in_pad);
      break;
    case WeightFormat::NVFP4:
      w.data = padded_rows(a, data, src.out, src.in / 2, out_pad, in_pad / 2);
      w.block_scale = static_cast<const uint8_t*>(
          padded_rows(a, src.block_scale, src.out, src.in / 16, out_pad, in_pad / 16));
      break;
  }
  return w;
}
LinearWeight linear(DeviceAllocator& a, const LinearWeight& src) { return linear(a, src, src.out, src.in); }

// A layer's routed experts of one projection: each expert's weight as [out_pad, in_pad], then
// device arrays of their data pointers, block-scale pointers and scales.
ExpertTable experts(DeviceAllocator& a, const std::vector<Linear>& list, const std::string& what, int64_t out_pad,
                    int64_t in_pad) {
  ExpertTable t;
  if (list.empty()) return t;
  const auto& first = list[0].w;
  t.format = first.format;
  t.experts = static_cast<int64_t>(list.size());
  t.out = out_pad;
  t.in = in_pad;
  std::vector<const void*> data;
  std::vector<const uint8_t*> scales;
  std::vector<float> scale;
  for (const auto& e : list) {
    if (e.w.format != first.format)
      throw Error(what + ": the CUDA backend needs every routed expert of a layer in one format; " + e.name + " is " +
                  kernels::weight_format_name(e.w.format) + ", " + list[0].name + " is " +
                  kernels::weight_format_name(first.format));
    const LinearWeight w = linear(a, e.w, out_pad, in_pad);
    data.push_back(w.data);
    scales.push_back(w.block_scale);
    scale.push_back(w.scale);
  }
  const int64_t E = t.experts;
  auto* d_data = a.array<const void*>(Use::Weights, E);
  auto* d_scales = a.array<const uint8_t*>(Use::Weights, E);
  auto* d_scale = a.array<float>(Use::Weights, E);
  a.copy(d_data, data.data(), E * static_cast<int64_t>(sizeof(const void*)));
  a.copy(d_scales, scales.data(), E * static_cast<int64_t>(sizeof(const uint8_t*)));
  a.copy(d_scale, scale.data(), E * 4);
  t.data = d_data;
  t.block_scale = d_scales;
  t.scale = d_scale;
  return t;
}

struct Walk {
  const Config& c;
  const CudaModelOptions& o;
  DeviceAllocator& a;
  DeviceBuffers& d;

  // A block's weights (weights arena) and its per-slot state or KV pages (cache arena).
  DBlock block(const BlockWeights& b, int index) {
    const int64_t S = o.max_seqs, H = c.hidden_size;
    DBlock blk;
    blk.kind = b.kind;
    blk.index = index;
    blk.norm = bf16_vector(a, b.norm);
    switch (b.kind) {
      case LayerKind::Mamba: {
        const auto& m = b.mamba;
        blk.m.in_proj = linear(a, m.in_proj.w);
        blk.m.out_proj = linear(a, m.out_proj.w);
        blk.m.conv_w = bf16_vector(a, m.conv_weight);
        if (!m.conv_bias.empty()) blk.m.conv_b = bf16_vector(a, m.conv_bias);
        blk.m.norm = bf16_vector(a, m.norm);
        blk.m.dt_bias = f32_vector(a, m.dt_bias);
        blk.m.A = f32_vector(a, m.A);
        blk.m.D = f32_vector(a, m.D);
        const int64_t conv = S * (c.conv_kernel - 1) * c.conv_dim();
        const int64_t ssm_bytes = S * c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size *
                                  kernels::state_dtype_bytes(o.ssm_state.dtype);
        blk.m.conv_state = a.array<float>(Use::State, conv);
        blk.m.ssm_state = a.array<uint8_t>(Use::State, ssm_bytes);
        a.zero(blk.m.conv_state, conv * 4);
        a.zero(blk.m.ssm_state, ssm_bytes);
        break;
      }
      case LayerKind::Attention: {
        blk.a.q = linear(a, b.attn.q.w);
        blk.a.k = linear(a, b.attn.k.w);
        blk.a.v = linear(a, b.attn.v.w);
        blk.a.o = linear(a, b.attn.o.w);
        PagedKvCache& kv = blk.a.cache;
        kv.dtype = o.kv_fp8 ? kernels::KvDType::FP8_E4M3 : kernels::KvDType::BF16;
        kv.num_pages = d.num_pages;
        kv.page_size = kPage;
        kv.kv_heads = c.num_key_value_heads;
        kv.head_dim = c.head_dim;
        kv.k_scale = o.kv_fp8 ? b.attn.k_scale : 1.0f;  // the checkpoint's FP8 KV scales (1 when absent)
        kv.v_scale = o.kv_fp8 ? b.attn.v_scale : 1.0f;
        const int64_t bytes = d.num_pages * kPage * c.kv_dim() * (o.kv_fp8 ? 1 : 2);
        kv.k = a.take(Use::Kv, bytes);
        kv.v = a.take(Use::Kv, bytes);
        break;
      }
      case LayerKind::MoE: {
        const auto& e = b.moe;
        if (e.gate.w.format != WeightFormat::Dense)
          throw Error(e.gate.name + ": the CUDA backend needs a dense router gate, got " +
                      kernels::weight_format_name(e.gate.w.format));
        blk.e.gate = linear(a, e.gate.w);  // BF16 [E, H]
        blk.e.bias = f32_vector(a, e.gate_bias);
        const int64_t Din = c.expert_input_dim();
        blk.e.up = experts(a, e.up, b.prefix + "mixer.experts", d.I_pad, Din);
        blk.e.down = experts(a, e.down, b.prefix + "mixer.experts", Din, d.I_pad);
        if (c.n_shared_experts > 0) {
          blk.e.shared_up = linear(a, e.shared_up.w, d.Is_pad, H);
          blk.e.shared_down = linear(a, e.shared_down.w, H, d.Is_pad);
        }
        if (c.moe_latent_size > 0) {
          blk.e.fc1 = linear(a, e.fc1_latent.w);
          blk.e.fc2 = linear(a, e.fc2_latent.w);
        }
        break;
      }
      case LayerKind::MLP:
        blk.mlp_up = linear(a, b.mlp.up.w, d.Imlp_pad, H);
        blk.mlp_down = linear(a, b.mlp.down.w, H, d.Imlp_pad);
        break;
    }
    return blk;
  }

  // The sampler's penalty state of every slot: output-token counts [S, V] int32 and the
  // seen-token bitmask [S, ceil(V/32)] (zeroed; reset when a slot is acquired).
  void penalties() {
    const int64_t S = o.max_seqs, V = c.vocab_size, words = S * ((V + 31) / 32);
    d.pen_counts = a.array<int32_t>(Use::State, S * V);
    a.zero(d.pen_counts, S * V * 4);
    d.pen_seen = a.array<uint32_t>(Use::State, words);
    a.zero(d.pen_seen, words * 4);
  }

  void stack(Stack& st, const std::vector<BlockWeights>& blocks, int first_index) {
    int mamba = 0;
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      st.blocks.push_back(block(blocks[i], first_index + static_cast<int>(i)));
      if (blocks[i].kind == LayerKind::Mamba) st.blocks.back().mamba_index = mamba++;
      a.weights_done();
    }
    const int64_t n = o.max_seqs * d.num_pages;
    st.block_tables = a.array<int32_t>(Use::Tables, n);
    a.zero(st.block_tables, n * 4);
    st.block_tables_host = static_cast<int32_t*>(a.pinned(n * 4));
  }

  // Speculative decoding's kept data (cuda_buffers.h: DeviceBuffers, spec_*), for
  // spec_entries(o) keep_states chunks of o.spec_rows rows; nothing without entries.
  void speculation() {
    const int64_t E = spec_entries(o);
    d.spec_entries = E;
    if (E == 0) return;
    if (o.spec_rows < 1) throw Error("CUDA model: spec_rows must be at least 1");
    int64_t layers = 0;
    for (auto kind : c.layers) layers += kind == LayerKind::Mamba;
    const int64_t conv = (c.conv_kernel - 1) * c.conv_dim();
    d.spec_rows = o.spec_rows;
    d.spec_layers = layers;
    d.spec_conv_pad = (conv + 63) / 64 * 64;
    // The SSM state's bytes in floats (a 16-bit state: half as many; Hm * P * N is even).
    const int64_t ssm_floats =
        c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size * kernels::state_dtype_bytes(o.ssm_state.dtype) / 4;
    d.spec_layer_floats = layers > 0 ? d.spec_conv_pad + ssm_floats : 0;
    d.spec_row_width = layers > 0 ? c.conv_dim() + c.mamba_num_heads : 0;
    const int64_t words = (c.vocab_size + 31) / 32, rows = E * o.spec_rows;
    d.spec_state = a.array<float>(Use::Speculation, E * layers * d.spec_layer_floats);
    d.spec_seen = a.array<uint32_t>(Use::Speculation, E * words);
    d.spec_saved = a.array<uint16_t>(Use::Speculation, rows * layers * d.spec_row_width);
    d.spec_stage = a.array<uint16_t>(Use::Speculation, rows * layers * d.spec_row_width);
    d.spec_table = a.array<kernels::CopyBlock>(Use::Speculation, rows * layers);
  }

  // The prefix-cache snapshot pool: o.prefix_cache_bytes in whole units (none below one unit).
  void snapshots() {
    const SnapshotLayout l = snapshot_layout(c, o.kv_fp8, o.ssm_state.dtype);
    d.snap_unit = l.unit;
    d.snap_units = std::max<int64_t>(0, o.prefix_cache_bytes) / l.unit;
    if (d.snap_units > 0) d.snap_pool = a.array<uint8_t>(Use::Snapshots, d.snap_units * l.unit);
  }

  // Paged attention's split-K partials: the most any step of 1..R rows needs (both stacks
  // share the attention shape and the page count).
  int64_t attention_workspace(int sms, bool any_attention) const {
    if (!any_attention || c.num_attention_heads <= 0 || c.num_key_value_heads <= 0) return 0;
    kernels::PagedAttentionArgs pa;
    pa.q_heads = c.num_attention_heads;
    pa.max_pages = d.num_pages;
    pa.cache.num_pages = d.num_pages;
    pa.cache.page_size = kPage;
    pa.cache.kv_heads = c.num_key_value_heads;
    pa.cache.head_dim = c.head_dim;
    int64_t bytes = 0;
    for (pa.T = 1; pa.T <= o.max_step_tokens; ++pa.T)
      bytes = std::max(bytes, kernels::attention_splits::workspace_bytes(pa, sms));
    return bytes;
  }

  // The step buffers, for steps of up to R = max_step_tokens rows.
  void step(int sms) {
    const int64_t S = o.max_seqs, R = o.max_step_tokens, H = c.hidden_size, one = 1;
    const int64_t k = std::max<int64_t>(1, c.num_experts_per_tok), Din = std::max(one, c.expert_input_dim());
    auto bf = [&](int64_t n) { return a.array<uint16_t>(Use::Activations, n); };
    auto f32 = [&](int64_t n) { return a.array<float>(Use::Activations, n); };
    auto i32 = [&](int64_t n) { return a.array<int32_t>(Use::Activations, n); };
    // Step inputs (layout: DeviceBuffers); pointers are set per step by prepare_step.
    d.d_step = i32(6 * R + 2 * S + 1);
    d.h_step = static_cast<int32_t*>(a.pinned((6 * R + 2 * S + 1) * 4));
    d.d_ids = d.d_query_seq = d.d_query_pos = d.d_slot_mapping = d.d_cu = d.d_slots = d.d_logit_rows = d.d_step;
    d.d_mark_seq = d.d_step;
    d.d_route_ids = i32(R * k);
    // Copies between steps (cuda_model_state.cpp): a CopyBlock table and int32 scratch for the
    // roll-back's replay lists and penalty ids (observe_prompt uploads in pieces of it).
    d.copy_table_entries = 4096;
    d.copy_table = a.array<kernels::CopyBlock>(Use::Activations, d.copy_table_entries);
    d.aux_ints = std::max<int64_t>(8192, 2 * d.spec_entries + 1 + 6 * d.spec_entries * d.spec_rows);
    d.aux = i32(d.aux_ints);
    // Sampling (kernels/sampling_cuda.h): one parameter row per sampled row (a row per chunk,
    // plus the extra rows of sample_rows > 1 chunks), the ids, logprobs and top logprobs it
    // returns, with pinned host copies; the kernels' workspace.
    const int64_t Sc = S + d.spec_entries * std::max<int64_t>(0, d.spec_rows - 1);
    d.sample_capacity = Sc;
    const int64_t top = Sc * kernels::kMaxTopLogprobs, V = c.vocab_size;
    d.d_sample_rows = a.array<kernels::SampleRow>(Use::Activations, Sc);
    d.h_sample_rows = static_cast<kernels::SampleRow*>(a.pinned(Sc * static_cast<int64_t>(sizeof(kernels::SampleRow))));
    d.d_tokens = i32(Sc);
    d.d_draft_ids = c.has_mtp() ? i32(kMaxDraftTokens * o.max_seqs) : nullptr;
    d.h_tokens = static_cast<int32_t*>(a.pinned(Sc * 4));
    d.d_logprobs = f32(Sc);
    d.h_logprobs = static_cast<float*>(a.pinned(Sc * 4));
    d.d_top_ids = i32(top);
    d.h_top_ids = static_cast<int32_t*>(a.pinned(top * 4));
    d.d_top_lp = f32(top);
    d.h_top_lp = static_cast<float*>(a.pinned(top * 4));
    // Constrained decoding: a mask per sampled row (Sc of them) and each row's mask index.
    const int64_t mask_words = Sc * ((V + 31) / 32);
    d.d_masks = a.array<uint32_t>(Use::Activations, mask_words);
    d.h_masks = static_cast<uint32_t*>(a.pinned(mask_words * 4));
    d.d_mask_rows = i32(Sc);
    d.h_mask_rows = static_cast<int32_t*>(a.pinned(Sc * 4));
    // The sampler needs no workspace (kernels::sample_workspace_bytes is 0; it must run on the
    // device, where it also prepares the kernels: CudaModel's constructor calls it).
    d.sample_ws_bytes = 0;
    d.sample_ws = nullptr;
    bool any_attention = false;
    for (const Stack* st : {&d.trunk, &d.mtp})
      for (const DBlock& b : st->blocks) any_attention = any_attention || b.kind == LayerKind::Attention;
    d.attn_ws_bytes = attention_workspace(sms, any_attention);
    d.attn_ws = d.attn_ws_bytes > 0 ? a.take(Use::AttentionWorkspace, d.attn_ws_bytes) : nullptr;
    // The routed experts' bucketing scratch, when steps of up to R rows can take the batch
    // (decode) or grouped (prefill) path of expert_gemv_cuda; sized for R, it covers fewer rows.
    if (c.n_routed_experts > 0 && kernels::expert_gemv_uses_workspace(R, k, c.n_routed_experts)) {
      d.moe_ws_bytes = kernels::expert_gemv_workspace_bytes(R, k, c.n_routed_experts);
      d.moe_ws = a.take(Use::Activations, d.moe_ws_bytes);
    }
    // Split-K scratch of the linears (steps of 9+ rows whose tiles fill less than the device).
    d.split_ws_bytes = kernels::linear_split_workspace_bytes(sms);
    d.split_ws = a.take(Use::Activations, d.split_ws_bytes);
    d.split_ws_side = a.take(Use::Activations, d.split_ws_bytes);
    a.zero(d.split_ws, kernels::linear_split_counter_bytes(sms));
    a.zero(d.split_ws_side, kernels::linear_split_counter_bytes(sms));
    if (c.mamba_num_heads > 0) {
      d.scan_ws_bytes = kernels::ssm_scan_workspace_bytes(R, c.mamba_num_heads, c.mamba_head_dim, c.ssm_state_size);
      d.scan_ws = d.scan_ws_bytes > 0 ? a.take(Use::Activations, d.scan_ws_bytes) : nullptr;
    }
    d.x = f32(R * H);
    d.uf = f32(R * H);
    d.u = bf(R * H);
    d.y = bf(R * H);
    d.big = bf(R * std::max(one, c.in_proj_dim()));
    d.conv_out = f32(R * std::max(one, c.conv_dim()));
    d.ssm_y = f32(R * std::max(one, c.d_inner()));
    d.g = bf(R * std::max(one, c.d_inner()));
    d.q = bf(R * std::max(one, c.q_dim()));
    d.kb = bf(R * std::max(one, c.kv_dim()));
    d.vb = bf(R * std::max(one, c.kv_dim()));
    d.o = bf(R * std::max(one, c.q_dim()));
    d.router_logits = f32(R * std::max(one, c.n_routed_experts));
    d.route_w = f32(R * k);
    d.r = bf(R * Din);
    d.h = bf(R * k * std::max({d.I_pad, d.Imlp_pad, one}));
    d.yk = bf(R * k * Din);
    d.acc = bf(R * Din);
    d.sh = bf(R * std::max(one, d.Is_pad));
    d.sd = bf(R * H);
    d.ug = bf(R * H);
    d.logit_capacity = o.sampled_logits_only ? std::min(R, d.sample_capacity) : R;
    d.logits = f32(d.logit_capacity * c.vocab_size);
    if (!o.tp_vocab.empty()) {
      d.logits_part = f32(d.logit_capacity * d.vocab_stride);
      d.logits_blocks = f32(static_cast<int64_t>(o.tp_vocab.size()) * d.logit_capacity * d.vocab_stride);
    }
    d.hid_in = c.has_mtp() ? f32(R * H) : nullptr;
    d.h_hid_in = c.has_mtp() ? static_cast<float*>(a.pinned(R * H * 4)) : nullptr;
    d.cat = c.has_mtp() ? bf(R * 2 * H) : nullptr;
  }
};

// CudaModelOptions::fp8_draft_head: the lm_head as per-tensor FP8 (kernels/fp8_quantize.h)
// in the speculation room, when the model speculates (an MTP head, spec entries) and the
// lm_head is BF16 with a width the GEMV takes (in % 32 == 0). The scale needs the whole
// matrix's largest magnitude: computed (like the conversion) on the host while placing, over
// util/parallel's pool; the counting walk only takes the bytes.
LinearWeight draft_head(DeviceAllocator& a, const LinearWeight& src, const Config& c, const CudaModelOptions& o) {
  LinearWeight w;
  if (!o.fp8_draft_head || !o.tp_vocab.empty() || spec_entries(o) == 0 || !c.has_mtp() || !src.data ||
      src.format != WeightFormat::Dense ||
      src.dense_type != ElementType::BF16 || src.in % 32 != 0)
    return w;
  w = src;
  w.format = WeightFormat::FP8;
  const int64_t n = src.out * src.in;
  void* dst = a.take(Use::Speculation, n);
  w.data = dst;
  if (!a.placing()) return w;
  const auto* bf = static_cast<const uint16_t*>(src.data);
  const auto count = static_cast<std::size_t>(n);
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  float amax = 0.0f;
  std::mutex amax_mu;
  parallel_for(count, [&](std::size_t b, std::size_t e) {
    const float m = kernels::bf16_abs_max(bf + b, static_cast<int64_t>(e - b));
    std::lock_guard<std::mutex> lock(amax_mu);
    amax = std::max(amax, m);
  }, kChunk);
  w.scale = kernels::fp8_tensor_scale(amax);
  const float scale = w.scale;
  a.produce(dst, n, [&](uint8_t* host) {
    parallel_for(count, [&](std::size_t b, std::size_t e) {
      kernels::quantize_fp8(bf + b, static_cast<int64_t>(e - b), scale, host + b);
    }, kChunk);
  });
  return w;
}

// A rank's shard (model/parallel/shard.h) keeps the model's config sizes for the intermediate
// dims and the vocab; its weights hold its slices: the padded widths follow the weights (an
// expert this rank does not hold has out = 0), the logit blocks the widest vocab range.
void sharded_widths(const ModelWeights& w, DeviceBuffers& d) {
  int64_t I = 0, Is = 0, Im = 0;
  std::vector<const BlockWeights*> blocks;
  for (const auto& b : w.blocks) blocks.push_back(&b);
  for (const auto& b : w.mtp.blocks) blocks.push_back(&b);
  for (const BlockWeights* b : blocks) {
    if (b->kind == LayerKind::MoE) {
      for (const auto& e : b->moe.up) I = std::max(I, e.w.out);
      Is = std::max(Is, b->moe.shared_up.w.out);
    } else if (b->kind == LayerKind::MLP) {
      Im = std::max(Im, b->mlp.up.w.out);
    }
  }
  d.I_pad = round_up32(I);
  d.Is_pad = round_up32(Is);
  d.Imlp_pad = round_up32(Im);
}

}  // namespace

void walk_device_buffers(const Model& m, const CudaModelOptions& o, int sms, DeviceAllocator& a, DeviceBuffers& d) {
  const Config& c = m.config;
  const ModelWeights& w = m.weights;
  if (o.max_seqs < 1 || o.max_step_tokens < 1 || o.kv_tokens < 0)
    throw Error("CUDA model: max_seqs and max_step_tokens must be positive, kv_tokens not negative");
  d.I_pad = round_up32(c.moe_intermediate_size);
  d.Is_pad = round_up32(c.moe_shared_expert_intermediate_size);
  d.Imlp_pad = round_up32(c.intermediate_size);
  if (!o.tp_vocab.empty()) sharded_widths(w, d);
  d.num_pages = cuda_kv_pages(o);
  if (!o.tp_vocab.empty()) {
    for (const Range& r : o.tp_vocab) d.vocab_stride = std::max(d.vocab_stride, r.size());
    const Range mine = o.tp_vocab.at(static_cast<std::size_t>(o.tp_rank));
    if (w.lm_head.w.out != mine.size() || w.embeddings.out != mine.size())
      throw Error("CUDA model: rank " + std::to_string(o.tp_rank) + "'s lm_head / embedding hold " +
                  std::to_string(w.lm_head.w.out) + " / " + std::to_string(w.embeddings.out) + " vocab rows, its range " +
                  std::to_string(mine.size()));
  }
  Walk walk{c, o, a, d};

  d.embeddings = linear(a, w.embeddings);
  // A vocab shard's lm_head is padded with zero rows to the widest rank's range, so that every
  // rank's logit block has the same shape for the all-gather.
  d.lm_head = o.tp_vocab.empty() ? linear(a, w.lm_head.w) : linear(a, w.lm_head.w, d.vocab_stride, w.lm_head.w.in);
  d.lm_head_draft = draft_head(a, w.lm_head.w, c, o);
  d.norm_f = bf16_vector(a, w.norm_f);
  a.weights_done();
  walk.stack(d.trunk, w.blocks, 0);
  if (c.has_mtp()) {
    const MtpWeights& t = w.mtp;
    d.mtp_enorm = bf16_vector(a, t.enorm);
    d.mtp_hnorm = bf16_vector(a, t.hnorm);
    d.mtp_final_norm = bf16_vector(a, t.final_norm);
    d.mtp_eh_proj = linear(a, t.eh_proj.w);
    walk.stack(d.mtp, t.blocks, c.num_layers());
  }
  walk.penalties();
  walk.speculation();
  walk.snapshots();
  walk.step(sms);
}

}  // namespace cuda_detail
}  // namespace nemotron::model
