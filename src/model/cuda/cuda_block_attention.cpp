// An attention block of a CudaModel step (cpu_forward.cpp's attention): q, k, v (one launch
// where the GEMV serves all three), the KV cache write through the slot mapping, paged
// attention over the stack's block tables, o. Reads u [R, H], writes y [R, H] (BF16).
#ifdef NEMOTRON_HAVE_CUDA

#include "kernels/attention_cuda.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;

void CudaModel::Impl::attention_block(const Stack& st, const DBlock& b, int64_t R) {
  const Config& c = model.config;
  const cudaStream_t sm = stream;
  {  // one launch for the three where the warp-row GEMV serves them (decode, BF16 / FP8)
    const LinearCudaArgs qkv[3] = {{b.a.q, u, R, q}, {b.a.k, u, R, kb}, {b.a.v, u, R, vb}};
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
  paged_attention_cuda(pa, sm);
  mark("attn.attention");
  linear("attn.o", b.a.o, o, R, y);
}

}  // namespace nemotron::model

#endif
