// A Mamba-2 block of a CudaModel step (the GPU side of cpu_forward.cpp's mamba_mixer):
// in_proj, then either the fused decode kernel (conv update + SSM update + gated norm) for
// decode-only steps or conv, chunked scan and gated norm for prefill rows, then out_proj.
// Reads the normed rows u [R, H], writes y [R, H] (BF16).
#ifdef NEMOTRON_HAVE_CUDA

#include "kernels/copy_cuda.h"
#include "kernels/mamba_cuda.h"
#include "kernels/norm_cuda.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;

void CudaModel::Impl::mamba_block(const DBlock& b, int64_t R, int64_t B) {
  const Config& c = model.config;
  const float eps = static_cast<float>(c.norm_eps);
  const cudaStream_t sm = stream;
  const int64_t W = c.in_proj_dim(), di = c.d_inner(), C = c.conv_dim();
  linear("mamba.in_proj", b.m.in_proj, u, R, big);  // [R, z | xBC | dt]
  // A step with keep_states chunks: their rows' xBC | dt, saved for roll_back's replay
  // (spec_table [layer, keep_rows] of row copies into spec_saved, uploaded by begin_keep).
  if (keep_rows > 0 && b.mamba_index >= 0) {
    copy_blocks_cuda(spec_table + b.mamba_index * keep_rows, keep_rows, sm);
    mark("mamba.keep_rows");
  }
  // Decode-only steps (every chunk one token: R == B, row i is sequence i): conv update,
  // state update and gated norm in one kernel.
  if (R == B && mamba_decode_fused_supported(c.mamba_num_heads, c.mamba_head_dim, c.ssm_state_size, c.n_groups,
                                             c.conv_kernel)) {
    MambaDecodeArgs da;
    da.in_proj = big;
    da.in_stride = W;
    mamba_layer_args(b, da);
    da.conv_state = b.m.conv_state;
    da.conv_w = b.m.conv_w;
    da.conv_b = b.m.conv_b;
    da.K = c.conv_kernel;
    da.norm_w = b.m.norm;
    da.eps = eps;
    da.row_pos = d_query_pos;
    da.slot = d_slots;
    da.rows = R;
    da.out = g;
    mamba_decode_fused_cuda(da, sm);
    mark("mamba.fused_decode");
    linear("mamba.out_proj", b.m.out_proj, g, R, y);
    return;
  }
  ConvPrefillArgs ca = conv_prefill_args(b);
  ca.xbc = big + di;
  ca.xbc_stride = W;
  ca.slot = d_slots;
  ca.cu_rows = d_cu;
  ca.B = B;
  ca.rows = R;
  ca.out = conv_out;
  conv1d_prefill_silu_cuda(ca, sm);
  mark("mamba.conv");
  SsmScanArgs sa;
  mamba_layer_args(b, sa);
  sa.xbc = conv_out;
  sa.xbc_stride = C;
  sa.dt_raw = big + di + C;
  sa.dt_stride = W;
  sa.row_pos = d_query_pos;
  sa.slot = d_slots;
  sa.cu_rows = d_cu;
  sa.B = B;
  sa.rows = R;
  sa.y = ssm_y;
  // A keep_states step scans sequentially, as roll_back's replays of its rows do (settle).
  sa.algo = keep_step ? 1 : 0;
  sa.workspace = scan_ws;
  sa.workspace_bytes = scan_ws_bytes;
  ssm_scan_cuda(sa, sm);
  mark("mamba.scan");
  gated_rmsnorm_cuda(ssm_y, big, W, b.m.norm, R, di, di / c.n_groups, eps, g, sm);
  mark("mamba.gated_norm");
  linear("mamba.out_proj", b.m.out_proj, g, R, y);
}

}  // namespace nemotron::model

#endif
