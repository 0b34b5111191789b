// A Mamba-2 block of a CudaModel step (the GPU side of cpu_forward.cpp's mamba_mixer):
// in_proj, then the fused decode kernel (conv update + SSM update + gated norm) for the step's
// leading single-row chunks and conv, chunked scan and gated norm for the other rows, then
// out_proj. Reads the normed rows u [R, H], writes y [R, H] (BF16).
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
  // Rows [0, D): single-row chunks (decode rows; row i is sequence i) take the fused decode
  // kernel, also beside prompt rows: the varlen conv and scan cost several times more per
  // single-row sequence. A keep_states step leaves every row to the conv and scan, the kernels
  // roll_back's replays use.
  const bool fused_ok = mamba_decode_fused_supported(c.mamba_num_heads, c.mamba_head_dim, c.ssm_state_size,
                                                     c.n_groups, c.conv_kernel);
  const int64_t D = !fused_ok ? 0 : R == B ? R : keep_step ? 0 : lead_single;
  if (D > 0) {
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
    da.rows = D;
    da.out = g;
    mamba_decode_fused_cuda(da, sm);
    mark("mamba.fused_decode");
  }
  if (D < R) {
    // Sequences D..B-1 own rows [cu[D], R): the kernels index rows absolutely, so their
    // offsets are d_cu + D (cu[D] = D, not 0) over the step's whole row range.
    ConvPrefillArgs ca = conv_prefill_args(b);
    ca.xbc = big + di;
    ca.xbc_stride = W;
    ca.slot = d_slots + D;
    ca.cu_rows = d_cu + D;
    ca.B = B - D;
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
    sa.slot = d_slots + D;
    sa.cu_rows = d_cu + D;
    sa.B = B - D;
    sa.rows = R;
    sa.y = ssm_y;
    // A keep_states step scans sequentially, as roll_back's replays of its rows do (settle).
    sa.algo = keep_step ? 1 : 0;
    sa.workspace = scan_ws;
    sa.workspace_bytes = scan_ws_bytes;
    ssm_scan_cuda(sa, sm);
    mark("mamba.scan");
    gated_rmsnorm_cuda(ssm_y + D * di, big + D * W, W, b.m.norm, R - D, di, di / c.n_groups, eps, g + D * di, sm);
    mark("mamba.gated_norm");
  }
  linear("mamba.out_proj", b.m.out_proj, g, R, y);
}

}  // namespace nemotron::model

#endif
