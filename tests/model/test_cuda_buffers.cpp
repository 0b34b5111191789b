// CudaModel's buffer walk (model/cuda/cuda_buffers.h) without a device: counted, then placed
// by a host allocator into three host "arenas" poisoned with 0xAB, exactly as CudaModel places
// it into device arenas (the device allocator differs only in using cudaMemcpy / cudaMemset).
// Checks, on every fixture and several option sets: the placing walk consumes every arena
// exactly as counted; every buffer is 256-byte aligned inside the arena of its kind; every
// weight reads back as its checkpoint tensor (padded rows and columns zero, dense F16/F32 as
// BF16), norms as BF16, Mamba constants and router biases as fp32, the expert tables point
// at their experts; state slots and block tables are zeroed, KV pages and step buffers are
// left as they were; the routed experts' workspace is there exactly when a step of up to
// max_step_tokens rows can use it (batch or grouped path), sized for that many rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "fixture_util.h"
#include "kernels/fp8_quantize.h"
#include "kernels/numeric.h"
#include "model/cuda/cuda_buffers.h"
#include "model/cuda/cuda_memory.h"

namespace nemotron::model {
namespace {

using cuda_detail::ArenaKind;
using cuda_detail::ArenaTable;
using cuda_detail::DeviceAllocator;
using cuda_detail::DeviceBuffers;
using kernels::LinearWeight;
using kernels::WeightFormat;

constexpr uint8_t kPoison = 0xAB;

class HostArenas final : public DeviceAllocator {
 public:
  explicit HostArenas(const ArenaTable& counted) {
    for (int k = 0; k < cuda_detail::kArenaKinds; ++k) {
      size_[k] = std::max<int64_t>(counted.arena[k], 256);
      mem_[k].reset(static_cast<uint8_t*>(std::aligned_alloc(256, static_cast<std::size_t>(size_[k]))));
      std::memset(mem_[k].get(), kPoison, static_cast<std::size_t>(size_[k]));
      base_[k] = mem_[k].get();
    }
  }
  void copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, static_cast<std::size_t>(bytes));
  }
  void produce(void* dst, int64_t, const Fill& fill, const void*, int64_t) override {
    fill(static_cast<uint8_t*>(dst));
  }
  void zero(void* dst, int64_t bytes) override {
    if (bytes > 0) std::memset(dst, 0, static_cast<std::size_t>(bytes));
  }
  void* pinned(int64_t bytes) override {
    DeviceAllocator::pinned(bytes);
    host_.emplace_back(new uint8_t[static_cast<std::size_t>(std::max<int64_t>(bytes, 1))]());
    return host_.back().get();
  }
  // Whether [p, p + n) lies in arena k, starting on a 256-byte boundary of it.
  bool holds(ArenaKind k, const void* p, int64_t n) const {
    const auto* q = static_cast<const uint8_t*>(p);
    const uint8_t* b = mem_[static_cast<int>(k)].get();
    return q >= b && q + n <= b + table_.of(k) && (q - b) % 256 == 0;
  }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> mem_[cuda_detail::kArenaKinds];
  int64_t size_[cuda_detail::kArenaKinds] = {};
  std::vector<std::unique_ptr<uint8_t[]>> host_;
};

bool all_bytes(const void* p, int64_t n, uint8_t v) {
  const auto* q = static_cast<const uint8_t*>(p);
  for (int64_t i = 0; i < n; ++i)
    if (q[i] != v) return false;
  return true;
}

// The placed weight is the source as [out_pad, in_pad]: same values (BF16-rounded when the
// source is dense F16/F32), zero in the padding.
void expect_linear(const HostArenas& a, const LinearWeight& src, const LinearWeight& dst, int64_t out_pad,
                   int64_t in_pad, const std::string& what) {
  if (!src.data) {
    EXPECT_EQ(dst.data, nullptr) << what;
    return;
  }
  ASSERT_EQ(dst.out, out_pad) << what;
  ASSERT_EQ(dst.in, in_pad) << what;
  ASSERT_TRUE(a.holds(ArenaKind::Weights, dst.data, dst.stored_bytes())) << what;
  if (dst.format == WeightFormat::NVFP4) {
    EXPECT_TRUE(a.holds(ArenaKind::Weights, dst.block_scale, out_pad * in_pad / 16)) << what;
  }
  if (src.format == WeightFormat::Dense) {
    EXPECT_EQ(dst.dense_type, kernels::ElementType::BF16) << what;
  }
  EXPECT_EQ(dst.scale, src.scale) << what;
  const bool rounds = src.format == WeightFormat::Dense && src.dense_type != kernels::ElementType::BF16;
  std::vector<float> s(static_cast<std::size_t>(src.in)), d(static_cast<std::size_t>(in_pad));
  int64_t bad = 0;
  for (int64_t r = 0; r < out_pad; ++r) {
    kernels::dequantize_row(dst, r, d.data());
    if (r < src.out) kernels::dequantize_row(src, r, s.data());
    for (int64_t i = 0; i < in_pad; ++i) {
      float want = 0.0f;
      if (r < src.out && i < src.in) want = rounds ? kernels::bf16_to_float(kernels::float_to_bf16(s[i])) : s[i];
      bad += std::memcmp(&want, &d[i], 4) != 0 && !(want == 0.0f && d[i] == 0.0f);
    }
  }
  EXPECT_EQ(bad, 0) << what << ": values differ from the checkpoint";
}

void expect_bf16(const HostArenas& a, const std::vector<float>& v, const uint16_t* d, const std::string& what) {
  if (v.empty()) {
    EXPECT_EQ(d, nullptr) << what;
    return;
  }
  ASSERT_TRUE(a.holds(ArenaKind::Weights, d, static_cast<int64_t>(v.size()) * 2)) << what;
  for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(d[i], kernels::float_to_bf16(v[i])) << what << " [" << i << "]";
}

void expect_f32(const HostArenas& a, const std::vector<float>& v, const float* d, const std::string& what) {
  if (v.empty()) {
    EXPECT_EQ(d, nullptr) << what;
    return;
  }
  ASSERT_TRUE(a.holds(ArenaKind::Weights, d, static_cast<int64_t>(v.size()) * 4)) << what;
  EXPECT_EQ(std::memcmp(d, v.data(), v.size() * 4), 0) << what;
}

void expect_experts(const HostArenas& a, const std::vector<Linear>& src, const kernels::ExpertTable& t, int64_t out_pad,
                    int64_t in_pad, const std::string& what) {
  if (src.empty()) return;
  ASSERT_EQ(t.experts, static_cast<int64_t>(src.size())) << what;
  ASSERT_TRUE(a.holds(ArenaKind::Weights, t.data, t.experts * 8)) << what;
  ASSERT_TRUE(a.holds(ArenaKind::Weights, t.block_scale, t.experts * 8)) << what;
  ASSERT_TRUE(a.holds(ArenaKind::Weights, t.scale, t.experts * 4)) << what;
  for (std::size_t e = 0; e < src.size(); ++e) {
    LinearWeight w = src[e].w;
    w.data = t.data[e];
    w.block_scale = t.block_scale[e];
    w.scale = t.scale[e];
    w.out = out_pad;
    w.in = in_pad;
    if (w.format == WeightFormat::Dense) w.dense_type = kernels::ElementType::BF16;
    expect_linear(a, src[e].w, w, out_pad, in_pad, what + " expert " + std::to_string(e));
  }
}

class CudaBufferWalk : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaBufferWalk, PlacingConsumesTheCountedArenasAndUploadsTheCheckpoint) {
  const Model m = Model::load(testing::fixture_dir(GetParam()));
  const Config& c = m.config;
  struct Case {
    int seqs;
    int64_t rows, kv;
    bool fp8;
    int spec_seqs;
    int64_t spec_rows, prefix;
  };
  // Rows 1 and 3: single-row and short steps, where the routed experts take no workspace.
  for (const Case& k : {Case{1, 16, 100, false, 0, 17, 0}, Case{3, 300, 1000, true, 2, 5, 1 << 20},
                        Case{5, 200, 4096, false, 8, 4, 0}, Case{1, 1, 64, false, 0, 17, 0},
                        Case{2, 3, 64, false, 1, 3, 0}}) {
    CudaModelOptions o;
    o.max_seqs = k.seqs;
    o.max_step_tokens = k.rows;
    o.kv_tokens = k.kv;
    o.kv_fp8 = k.fp8;
    o.spec_seqs = k.spec_seqs;
    o.spec_rows = k.spec_rows;
    o.prefix_cache_bytes = k.prefix;
    const CudaMemory counted = cuda_memory(m, o, 132);
    HostArenas a(counted.table);
    DeviceBuffers d;
    cuda_detail::walk_device_buffers(m, o, 132, a, d);
    for (int i = 0; i < cuda_detail::kArenaKinds; ++i) EXPECT_EQ(a.table().arena[i], counted.table.arena[i]) << i;
    for (int i = 0; i < cuda_detail::kUses; ++i) EXPECT_EQ(a.table().by_use[i], counted.table.by_use[i]) << i;
    EXPECT_EQ(a.table().takes, counted.table.takes);
    EXPECT_EQ(a.table().pinned_host, counted.table.pinned_host);

    const ModelWeights& w = m.weights;
    expect_linear(a, w.embeddings, d.embeddings, w.embeddings.out, w.embeddings.in, "embeddings");
    expect_linear(a, w.lm_head.w, d.lm_head, w.lm_head.w.out, w.lm_head.w.in, "lm_head");
    expect_bf16(a, w.norm_f, d.norm_f, "norm_f");
    const int64_t S = k.seqs, pages = cuda_kv_pages(o), H = c.hidden_size;
    auto check_stack = [&](const std::vector<BlockWeights>& blocks, const cuda_detail::Stack& st) {
      ASSERT_EQ(st.blocks.size(), blocks.size());
      ASSERT_TRUE(a.holds(ArenaKind::Cache, st.block_tables, S * pages * 4));
      EXPECT_TRUE(all_bytes(st.block_tables, S * pages * 4, 0));
      ASSERT_NE(st.block_tables_host, nullptr);
      for (std::size_t i = 0; i < blocks.size(); ++i) {
        const BlockWeights& b = blocks[i];
        const cuda_detail::DBlock& x = st.blocks[i];
        const std::string at = b.prefix;
        EXPECT_EQ(x.kind, b.kind) << at;
        expect_bf16(a, b.norm, x.norm, at + "norm");
        switch (b.kind) {
          case LayerKind::Mamba: {
            expect_linear(a, b.mamba.in_proj.w, x.m.in_proj, b.mamba.in_proj.w.out, b.mamba.in_proj.w.in,
                          at + "in_proj");
            expect_linear(a, b.mamba.out_proj.w, x.m.out_proj, b.mamba.out_proj.w.out, b.mamba.out_proj.w.in,
                          at + "out_proj");
            expect_bf16(a, b.mamba.conv_weight, x.m.conv_w, at + "conv_weight");
            expect_bf16(a, b.mamba.conv_bias, x.m.conv_b, at + "conv_bias");
            expect_bf16(a, b.mamba.norm, x.m.norm, at + "mixer.norm");
            expect_f32(a, b.mamba.dt_bias, x.m.dt_bias, at + "dt_bias");
            expect_f32(a, b.mamba.A, x.m.A, at + "A");
            expect_f32(a, b.mamba.D, x.m.D, at + "D");
            const int64_t conv = S * (c.conv_kernel - 1) * c.conv_dim() * 4,
                          ssm = S * c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size * 4;
            ASSERT_TRUE(a.holds(ArenaKind::Cache, x.m.conv_state, conv)) << at;
            ASSERT_TRUE(a.holds(ArenaKind::Cache, x.m.ssm_state, ssm)) << at;
            EXPECT_TRUE(all_bytes(x.m.conv_state, conv, 0)) << at;
            EXPECT_TRUE(all_bytes(x.m.ssm_state, ssm, 0)) << at;
            break;
          }
          case LayerKind::Attention: {
            expect_linear(a, b.attn.q.w, x.a.q, b.attn.q.w.out, b.attn.q.w.in, at + "q");
            expect_linear(a, b.attn.k.w, x.a.k, b.attn.k.w.out, b.attn.k.w.in, at + "k");
            expect_linear(a, b.attn.v.w, x.a.v, b.attn.v.w.out, b.attn.v.w.in, at + "v");
            expect_linear(a, b.attn.o.w, x.a.o, b.attn.o.w.out, b.attn.o.w.in, at + "o");
            const int64_t kv = pages * 16 * c.kv_dim() * (k.fp8 ? 1 : 2);
            EXPECT_EQ(x.a.cache.num_pages, pages);
            ASSERT_TRUE(a.holds(ArenaKind::Cache, x.a.cache.k, kv)) << at;
            ASSERT_TRUE(a.holds(ArenaKind::Cache, x.a.cache.v, kv)) << at;
            EXPECT_TRUE(all_bytes(x.a.cache.k, kv, kPoison)) << at << ": KV pages are not written at start-up";
            break;
          }
          case LayerKind::MoE: {
            const auto& e = b.moe;
            const int64_t Din = c.expert_input_dim();
            expect_linear(a, e.gate.w, x.e.gate, e.gate.w.out, e.gate.w.in, at + "gate");
            expect_f32(a, e.gate_bias, x.e.bias, at + "gate_bias");
            expect_experts(a, e.up, x.e.up, d.I_pad, Din, at + "up");
            expect_experts(a, e.down, x.e.down, Din, d.I_pad, at + "down");
            if (c.n_shared_experts > 0) {
              expect_linear(a, e.shared_up.w, x.e.shared_up, d.Is_pad, H, at + "shared_up");
              expect_linear(a, e.shared_down.w, x.e.shared_down, H, d.Is_pad, at + "shared_down");
            }
            if (c.moe_latent_size > 0) {
              expect_linear(a, e.fc1_latent.w, x.e.fc1, e.fc1_latent.w.out, e.fc1_latent.w.in, at + "fc1");
              expect_linear(a, e.fc2_latent.w, x.e.fc2, e.fc2_latent.w.out, e.fc2_latent.w.in, at + "fc2");
            }
            break;
          }
          case LayerKind::MLP:
            expect_linear(a, b.mlp.up.w, x.mlp_up, d.Imlp_pad, H, at + "mlp.up");
            expect_linear(a, b.mlp.down.w, x.mlp_down, H, d.Imlp_pad, at + "mlp.down");
            break;
        }
      }
    };
    check_stack(w.blocks, d.trunk);
    if (c.has_mtp()) {
      expect_bf16(a, w.mtp.enorm, d.mtp_enorm, "mtp.enorm");
      expect_bf16(a, w.mtp.hnorm, d.mtp_hnorm, "mtp.hnorm");
      expect_bf16(a, w.mtp.final_norm, d.mtp_final_norm, "mtp.final_norm");
      expect_linear(a, w.mtp.eh_proj.w, d.mtp_eh_proj, w.mtp.eh_proj.w.out, w.mtp.eh_proj.w.in, "mtp.eh_proj");
      check_stack(w.mtp.blocks, d.mtp);
    } else {
      EXPECT_TRUE(d.mtp.blocks.empty());
      EXPECT_EQ(d.hid_in, nullptr);
    }

    // Mamba blocks are numbered in stack order.
    int mamba = 0;
    for (const auto& x : d.trunk.blocks) EXPECT_EQ(x.mamba_index, x.kind == LayerKind::Mamba ? mamba++ : -1);
    // Speculation: min(spec_seqs, seqs) entries of saved states, seen words and rows (cache).
    const int64_t E = std::min(k.spec_seqs, k.seqs), Lm = mamba, words = (c.vocab_size + 31) / 32;
    EXPECT_EQ(d.spec_entries, E);
    EXPECT_EQ(counted.speculation > 0, E > 0);
    if (E > 0) {
      const int64_t ssm = c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size;
      EXPECT_EQ(d.spec_layers, Lm);
      EXPECT_GE(d.spec_conv_pad, (c.conv_kernel - 1) * c.conv_dim());
      EXPECT_EQ(d.spec_conv_pad % 64, 0);
      EXPECT_EQ(d.spec_layer_floats, Lm > 0 ? d.spec_conv_pad + ssm : 0);
      EXPECT_TRUE(a.holds(ArenaKind::Cache, d.spec_state, E * Lm * d.spec_layer_floats * 4));
      EXPECT_TRUE(a.holds(ArenaKind::Cache, d.spec_seen, E * words * 4));
      const int64_t row_bytes = E * k.spec_rows * Lm * (c.conv_dim() + c.mamba_num_heads) * 2;
      EXPECT_TRUE(a.holds(ArenaKind::Cache, d.spec_saved, row_bytes));
      EXPECT_TRUE(a.holds(ArenaKind::Cache, d.spec_stage, row_bytes));
      const auto copy_block = static_cast<int64_t>(sizeof(kernels::CopyBlock));
      EXPECT_TRUE(a.holds(ArenaKind::Cache, d.spec_table, E * k.spec_rows * Lm * copy_block));
    }
    // The drafts' FP8 lm_head: with speculation and an MTP head, a per-tensor FP8 copy of the
    // BF16 lm_head in the speculation room (kernels/fp8_quantize.h), byte for byte.
    const LinearWeight& lm = w.lm_head.w;
    if (E > 0 && c.has_mtp() && lm.format == WeightFormat::Dense && lm.dense_type == kernels::ElementType::BF16 &&
        lm.in % 32 == 0) {
      const int64_t n = lm.out * lm.in;
      ASSERT_TRUE(a.holds(ArenaKind::Cache, d.lm_head_draft.data, n));
      EXPECT_EQ(d.lm_head_draft.format, WeightFormat::FP8);
      EXPECT_EQ(d.lm_head_draft.out, lm.out);
      EXPECT_EQ(d.lm_head_draft.in, lm.in);
      const auto* bf = static_cast<const uint16_t*>(lm.data);
      const float scale = kernels::fp8_tensor_scale(kernels::bf16_abs_max(bf, n));
      EXPECT_FLOAT_EQ(d.lm_head_draft.scale, scale);
      std::vector<uint8_t> want(static_cast<std::size_t>(n));
      kernels::quantize_fp8(bf, n, scale, want.data());
      EXPECT_EQ(std::memcmp(d.lm_head_draft.data, want.data(), want.size()), 0) << "the FP8 draft lm_head";
      // Without it (the option off) the room is smaller by exactly its bytes (256-byte units).
      CudaModelOptions off = o;
      off.fp8_draft_head = false;
      EXPECT_EQ(counted.speculation - cuda_memory(m, off, 132).speculation, (n + 255) / 256 * 256);
    } else {
      EXPECT_EQ(d.lm_head_draft.data, nullptr);
    }
    // The snapshot pool: whole units of the layout.
    const auto layout = cuda_detail::snapshot_layout(c, k.fp8);
    EXPECT_EQ(d.snap_unit, layout.unit);
    EXPECT_EQ(layout.unit % 256, 0);
    EXPECT_GE(layout.unit, 2 * layout.kv_blocks * layout.page_bytes);
    EXPECT_EQ(d.snap_units, k.prefix / layout.unit);
    EXPECT_EQ(counted.snapshots, d.snap_units * layout.unit);
    if (d.snap_units > 0) {
      EXPECT_TRUE(a.holds(ArenaKind::Cache, d.snap_pool, d.snap_units * layout.unit));
    }
    const auto table_bytes = d.copy_table_entries * static_cast<int64_t>(sizeof(kernels::CopyBlock));
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.copy_table, table_bytes));
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.aux, d.aux_ints * 4));
    EXPECT_EQ(d.sample_capacity, k.seqs + E * (k.spec_rows - 1));

    // Step buffers: in the step arena, left unwritten.
    const int64_t R = k.rows;
    ASSERT_TRUE(a.holds(ArenaKind::Step, d.d_step, (6 * R + 2 * S + 1) * 4));
    EXPECT_EQ(d.d_ids, d.d_step);
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.x, R * H * 4));
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.logits, R * c.vocab_size * 4));
    EXPECT_TRUE(all_bytes(d.logits, R * c.vocab_size * 4, kPoison));
    if (d.attn_ws) {
      EXPECT_TRUE(a.holds(ArenaKind::Step, d.attn_ws, d.attn_ws_bytes));
    }
    EXPECT_EQ(d.attn_ws_bytes > 0, counted.attention_workspace > 0);
    // The routed experts' workspace: taken exactly when a step of up to R rows can run the batch
    // path (from kExpertBatchMinRows rows) or the grouped path (never below
    // kExpertGroupedMinPairs pairs), sized for R rows.
    const int64_t experts = c.n_routed_experts, topk = std::max<int64_t>(1, c.num_experts_per_tok);
    ASSERT_TRUE(R >= kernels::kExpertBatchMinRows || R * topk < kernels::kExpertGroupedMinPairs);
    const bool want_ws = experts > 0 && R >= kernels::kExpertBatchMinRows;
    EXPECT_EQ(d.moe_ws != nullptr, want_ws) << "rows " << R;
    if (d.moe_ws) {
      EXPECT_TRUE(a.holds(ArenaKind::Step, d.moe_ws, d.moe_ws_bytes));
      EXPECT_EQ(d.moe_ws_bytes, kernels::expert_gemv_workspace_bytes(R, topk, experts));
    } else {
      EXPECT_EQ(d.moe_ws_bytes, 0);
    }
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.d_sample_rows,
                        d.sample_capacity * static_cast<int64_t>(sizeof(kernels::SampleRow))));
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.d_top_lp, d.sample_capacity * kernels::kMaxTopLogprobs * 4));
    // Constrained decoding: a mask per sampled row (sample_rows > 1 chunks included).
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.d_masks, d.sample_capacity * words * 4));
    EXPECT_TRUE(a.holds(ArenaKind::Step, d.d_mask_rows, d.sample_capacity * 4));
    ASSERT_NE(d.h_masks, nullptr);
    ASSERT_NE(d.h_mask_rows, nullptr);
    EXPECT_TRUE(a.holds(ArenaKind::Cache, d.pen_counts, o.max_seqs * c.vocab_size * 4));
    EXPECT_TRUE(all_bytes(d.pen_counts, o.max_seqs * c.vocab_size * 4, 0));  // penalty state zeroed
    ASSERT_NE(d.h_step, nullptr);
    ASSERT_NE(d.h_sample_rows, nullptr);
    ASSERT_NE(d.h_tokens, nullptr);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaBufferWalk,
                         ::testing::Values("nano-moe", "super-latent-mtp", "dense-mlp", "nano-nvfp4",
                                           "super-mixed-mtp"),
                         testing::FixtureParamName());

// The counting walk allocates nothing and writes nothing: every address it hands out is null.
TEST(CudaBufferWalkCount, CountingHandsOutNoMemory) {
  const Model m = Model::load(testing::fixture_dir("super-mixed-mtp"));
  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 64;
  o.kv_tokens = 256;
  DeviceAllocator counter;
  DeviceBuffers d;
  cuda_detail::walk_device_buffers(m, o, 132, counter, d);
  EXPECT_FALSE(counter.placing());
  EXPECT_EQ(d.x, nullptr);
  EXPECT_EQ(d.d_step, nullptr);
  EXPECT_EQ(d.h_step, nullptr);
  EXPECT_EQ(d.embeddings.data, nullptr);
  ASSERT_FALSE(d.trunk.blocks.empty());
  EXPECT_EQ(d.trunk.blocks[0].norm, nullptr);
  EXPECT_EQ(counter.table().device(), cuda_memory(m, o, 132).allocated());
}

// A 16-bit SSM state (CudaModelOptions::ssm_state): the state slots hold Hm * P * N 2-byte
// elements per Mamba block and slot (the conv windows stay fp32), and so do the kept states of
// speculation and a snapshot's Mamba bytes.
TEST(CudaBufferWalkCount, SixteenBitSsmStateHalvesTheSsmBytes) {
  const Model m = Model::load(testing::fixture_dir("nano-moe"));
  const Config& c = m.config;
  CudaModelOptions o;
  o.max_seqs = 3;
  o.max_step_tokens = 64;
  o.kv_tokens = 256;
  o.spec_seqs = 2;
  o.spec_rows = 4;
  const CudaMemory f32 = cuda_memory(m, o, 132);
  o.ssm_state.dtype = kernels::StateDType::BF16;
  const CudaMemory bf16 = cuda_memory(m, o, 132);
  const int64_t mamba = c.count(LayerKind::Mamba) + [&] {
    int64_t n = 0;
    for (auto k : c.mtp_layers) n += k == LayerKind::Mamba;
    return n;
  }();
  const int64_t ssm = c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size;
  // Each slot array is one 256-byte-rounded sub-allocation per block: the difference is exact
  // up to that rounding.
  const int64_t saved = mamba * o.max_seqs * ssm * 2;
  EXPECT_NEAR(static_cast<double>(f32.state - bf16.state), static_cast<double>(saved), 256.0 * mamba);
  EXPECT_LT(bf16.speculation, f32.speculation);
  const auto l32 = cuda_detail::snapshot_layout(c, false), l16 = cuda_detail::snapshot_layout(c, false,
                                                                                             kernels::StateDType::F16);
  EXPECT_EQ(l32.mamba_bytes - l16.mamba_bytes, mamba * ssm * 2);
}

}  // namespace
}  // namespace nemotron::model
