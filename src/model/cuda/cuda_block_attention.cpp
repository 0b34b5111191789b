// An attention block of a CudaModel step (cpu_forward.cpp's attention): q, k, v (one launch
// where the GEMV serves all three), the KV cache write through the slot mapping, paged
// attention over the stack's block tables, o. Reads u [R, H], writes y [R, H] (BF16).
#ifdef NEMOTRON_HAVE_CUDA

#include "kernels/attention_cuda.h"
#include "model/cuda/cuda_model_internal.h"
#include "util/env.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;

void CudaModel::Impl::attention_block(const Stack& st, const DBlock& b, int64_t R) {
  const Config& c = model.config;
  const cudaStream_t sm = stream;
  {  // one launch for the three where the warp-row GEMV serves them (decode, BF16 / FP8)
    LinearCudaArgs qkv[3] = {{b.a.q, u, R, q}, {b.a.k, u, R, kb}, {b.a.v, u, R, vb}};
    for (LinearCudaArgs& p : qkv) use_split_ws(p, sm);  // one after another: one scratch serves all
    linear_group_cuda(qkv, 3, sm);
    mark("attn.qkv", static_cast<double>(b.a.q.stored_bytes() + b.a.k.stored_bytes() + b.a.v.stored_bytes()));
  }
  kv_cache_write_cuda(b.a.cache, kb, vb, d_slot_mapping, R, sm);
  mark("attn.kv_write");
  PagedAttentionArgs pa;
  pa.q = q;
  pa.T = R;
  pa.q_heads = c.num_attention_heads;
  pa.query_seq = d_query_seq;
  pa.query_pos = d_query_pos;
  pa.block_tables = st.block_tables;
  pa.max_pages = num_pages;
  pa.cache = b.a.cache;
  pa.out = o;
  pa.workspace = attn_ws;
  pa.workspace_bytes = attn_ws_bytes;
  // NEMOTRON_PREFILL_ATTENTION=cuda-core keeps every row on paged_attention_cuda (A/B runs).
  static const bool tensor_cores = !env_equals("NEMOTRON_PREFILL_ATTENTION", "cuda-core");
  if (attn_runs.empty() || !tensor_cores || !paged_attention_runs_supported(pa)) {
    paged_attention_cuda(pa, sm);
  } else {
    // Rows between the runs (decode rows, short chunks) on the CUDA-core kernel, in place.
    const int64_t qw = c.num_attention_heads * b.a.cache.head_dim;
    auto rest = [&](int64_t r0, int64_t r1) {
      if (r1 <= r0) return;
      PagedAttentionArgs g = pa;
      g.q = pa.q + r0 * qw;
      g.out = pa.out + r0 * qw;
      g.query_seq = pa.query_seq + r0;
      g.query_pos = pa.query_pos + r0;
      g.T = r1 - r0;
      paged_attention_cuda(g, sm);
    };
    int64_t r = 0;
    for (const AttentionRun& run : attn_runs) {
      rest(r, run.row0);
      r = run.row0 + run.count;
    }
    rest(r, R);
    paged_attention_runs_cuda(pa, attn_runs.data(), static_cast<int64_t>(attn_runs.size()), sm);
  }
  mark("attn.attention");
  linear("attn.o", b.a.o, o, R, y);
}

}  // namespace nemotron::model

#endif
