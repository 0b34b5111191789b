// CudaModel weight upload and buffer allocation (see cuda_model.h, cuda_model_internal.h).
#ifdef NEMOTRON_HAVE_CUDA

#include <algorithm>
#include <cstdio>

#include "kernels/moe_cuda.h"
#include "kernels/numeric.h"
#include "model/cuda/cuda_memory.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::Arena;
using cuda_detail::check;
using cuda_detail::kPage;

namespace cuda_detail {

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

}  // namespace cuda_detail

namespace {

using cuda_detail::upload_bf16;
using cuda_detail::upload_linear;

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

}  // namespace

CudaModel::Impl::DBlock CudaModel::Impl::upload_block(const BlockWeights& b, int index) {
  const Config& c = model.config;
  const int S = opt.max_seqs;
  const int64_t kv_elem = opt.kv_fp8 ? 1 : 2;
  DBlock d;
  d.kind = b.kind;
  d.index = index;
  d.norm = upload_bf16(arena, b.norm);
  switch (b.kind) {
    case LayerKind::Mamba: {
      const auto& m = b.mamba;
      d.m.in_proj = upload_linear(arena, m.in_proj.w);
      d.m.out_proj = upload_linear(arena, m.out_proj.w);
      d.m.conv_w = upload_bf16(arena, m.conv_weight);
      if (!m.conv_bias.empty()) d.m.conv_b = upload_bf16(arena, m.conv_bias);
      d.m.norm = upload_bf16(arena, m.norm);
      d.m.dt_bias = arena.upload(m.dt_bias.data(), m.dt_bias.size());
      d.m.A = arena.upload(m.A.data(), m.A.size());
      d.m.D = arena.upload(m.D.data(), m.D.size());
      d.m.conv_state = arena.zeros<float>(static_cast<std::size_t>(S * (c.conv_kernel - 1) * c.conv_dim()));
      d.m.ssm_state =
          arena.zeros<float>(static_cast<std::size_t>(S * c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size));
      break;
    }
    case LayerKind::Attention: {
      d.a.q = upload_linear(arena, b.attn.q.w);
      d.a.k = upload_linear(arena, b.attn.k.w);
      d.a.v = upload_linear(arena, b.attn.v.w);
      d.a.o = upload_linear(arena, b.attn.o.w);
      PagedKvCache& kv = d.a.cache;
      kv.dtype = opt.kv_fp8 ? KvDType::FP8_E4M3 : KvDType::BF16;
      kv.num_pages = num_pages;
      kv.page_size = kPage;
      kv.kv_heads = c.num_key_value_heads;
      kv.head_dim = c.head_dim;
      const std::size_t bytes = static_cast<std::size_t>(num_pages * kPage * c.kv_dim() * kv_elem);
      kv.k = arena.alloc(bytes);
      kv.v = arena.alloc(bytes);
      break;
    }
    case LayerKind::MoE: {
      const auto& e = b.moe;
      if (e.gate.w.format != WeightFormat::Dense)
        throw Error(e.gate.name + ": the CUDA backend needs a dense router gate, got " +
                    weight_format_name(e.gate.w.format));
      d.e.gate = upload_linear(arena, e.gate.w);  // BF16 [E, H]
      d.e.bias = arena.upload(e.gate_bias.data(), e.gate_bias.size());
      const int64_t Din = c.expert_input_dim();
      d.e.up = upload_experts(arena, e.up, b.prefix + "mixer.experts", I_pad, Din);
      d.e.down = upload_experts(arena, e.down, b.prefix + "mixer.experts", Din, I_pad);
      if (c.n_shared_experts > 0) {
        d.e.shared_up = upload_linear_padded(arena, e.shared_up.w, Is_pad, c.hidden_size);
        d.e.shared_down = upload_linear_padded(arena, e.shared_down.w, c.hidden_size, Is_pad);
      }
      if (c.moe_latent_size > 0) {
        d.e.fc1 = upload_linear(arena, e.fc1_latent.w);
        d.e.fc2 = upload_linear(arena, e.fc2_latent.w);
      }
      break;
    }
    case LayerKind::MLP:
      d.mlp_up = upload_linear_padded(arena, b.mlp.up.w, Imlp_pad, c.hidden_size);
      d.mlp_down = upload_linear_padded(arena, b.mlp.down.w, c.hidden_size, Imlp_pad);
      break;
  }
  return d;
}

void CudaModel::Impl::alloc_stack(Stack& st, const std::vector<BlockWeights>& blocks, int first_index, int slots) {
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    st.blocks.push_back(upload_block(blocks[i], first_index + static_cast<int>(i)));
    if (opt.verbose) {
      std::fprintf(stderr, "\ruploading weights: block %zu/%zu, %.2f GB", i + 1, blocks.size(),
                   static_cast<double>(arena.bytes()) / 1e9);
      std::fflush(stderr);
    }
  }
  st.pos.assign(slots, 0);
  st.pages.assign(slots, {});
  for (int64_t p = num_pages - 1; p >= 0; --p) st.free_pages.push_back(static_cast<int32_t>(p));
  st.block_tables_host = arena.pinned<int32_t>(static_cast<std::size_t>(slots * num_pages));
  st.block_tables = arena.zeros<int32_t>(static_cast<std::size_t>(slots * num_pages));
}

void CudaModel::Impl::alloc_activations() {
  const Config& c = model.config;
  const int S = opt.max_seqs;
  const int64_t R = opt.max_step_tokens, H = c.hidden_size, k = std::max<int64_t>(1, c.num_experts_per_tok);
  auto bf = [&](int64_t n) { return static_cast<uint16_t*>(arena.alloc(static_cast<std::size_t>(n) * 2)); };
  auto f32 = [&](int64_t n) { return static_cast<float*>(arena.alloc(static_cast<std::size_t>(n) * 4)); };
  auto i32 = [&](int64_t n) { return static_cast<int32_t*>(arena.alloc(static_cast<std::size_t>(n) * 4)); };
  // Step inputs (layout: cuda_model_internal.h); pointers are set per step by prepare_step.
  d_step = i32(5 * R + 2 * S + 1);
  h_step = arena.pinned<int32_t>(static_cast<std::size_t>(5 * R + 2 * S + 1));
  d_ids = d_query_seq = d_query_pos = d_slot_mapping = d_cu = d_slots = d_logit_rows = d_step;
  check(cudaEventCreateWithFlags(&inputs_done, cudaEventDisableTiming), "cudaEventCreate");
  d_argmax = i32(R);
  h_argmax = arena.pinned<int32_t>(static_cast<std::size_t>(R));
  graphs.assign(static_cast<std::size_t>(S) + 1, nullptr);
  d_route_ids = i32(R * k);
  // Paged attention's split-K partials: the most any step of 1..R rows needs (both stacks
  // share the attention shape and the page count); the planner sizes it the same way.
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
  attn_ws_bytes = cuda_memory(model, opt, sms).attention_workspace;
  if (attn_ws_bytes > 0) attn_ws = arena.alloc(static_cast<std::size_t>(attn_ws_bytes));
  if (c.n_routed_experts > 0 && R * k >= kernels::kExpertGroupedMinPairs) {
    moe_ws_bytes = kernels::expert_gemv_workspace_bytes(R, k, c.n_routed_experts);
    moe_ws = arena.alloc(static_cast<std::size_t>(moe_ws_bytes));
  }
  x = f32(R * H);
  uf = f32(R * H);
  u = bf(R * H);
  y = bf(R * H);
  big = bf(R * std::max<int64_t>(c.in_proj_dim(), 1));
  conv_out = f32(R * std::max<int64_t>(c.conv_dim(), 1));
  ssm_y = f32(R * std::max<int64_t>(c.d_inner(), 1));
  g = bf(R * std::max<int64_t>(c.d_inner(), 1));
  q = bf(R * std::max<int64_t>(c.q_dim(), 1));
  kb = bf(R * std::max<int64_t>(c.kv_dim(), 1));
  vb = bf(R * std::max<int64_t>(c.kv_dim(), 1));
  o = bf(R * std::max<int64_t>(c.q_dim(), 1));
  router_logits = f32(R * std::max<int64_t>(c.n_routed_experts, 1));
  route_w = f32(R * k);
  r = bf(R * std::max<int64_t>(c.expert_input_dim(), 1));
  h = bf(R * k * std::max({I_pad, Imlp_pad, int64_t{1}}));
  yk = bf(R * k * std::max<int64_t>(c.expert_input_dim(), 1));
  acc = bf(R * std::max<int64_t>(c.expert_input_dim(), 1));
  sh = bf(R * std::max<int64_t>(Is_pad, 1));
  sd = bf(R * H);
  ug = bf(R * H);
  logits = f32(R * c.vocab_size);
  hid_in = c.has_mtp() ? f32(R * H) : nullptr;
  cat = c.has_mtp() ? bf(R * 2 * H) : nullptr;
}

}  // namespace nemotron::model

#endif
