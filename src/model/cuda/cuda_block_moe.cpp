// An MoE block of a CudaModel step (cpu_forward.cpp's moe): router gate and top-k, the
// routed experts (up + relu², down) from device-side ids, the combine, and the shared expert
// and latent projections on the side stream. Also the dense MLP block. Reads u [R, H], writes
// y [R, H] (BF16); what it leaves to the next norm is returned as Folded.
#ifdef NEMOTRON_HAVE_CUDA

#include "kernels/elementwise_cuda.h"
#include "kernels/moe_cuda.h"
#include "kernels/norm_cuda.h"
#include "model/cuda/cuda_model_internal.h"
#include "util/env.h"

namespace nemotron::model {

using namespace nemotron::kernels;
using cuda_detail::check;

CudaModel::Impl::Folded CudaModel::Impl::moe_block(const DBlock& b, int64_t R, bool last) {
  const Config& c = model.config;
  const int64_t H = c.hidden_size;
  const cudaStream_t sm = stream;
  const bool f32_router = opt.router_fp32;
  const int64_t k = c.num_experts_per_tok, Din = c.expert_input_dim();
  // The shared expert reads only u: it runs on the side stream, concurrently with the
  // router and the routed experts, and joins before the next block's norm (which adds
  // its output sd). Profiled steps keep everything on the main stream, so that each op
  // is timed alone.
  // LatentMoE's input projection (r = u fc1^T) does not depend on the routing either: it
  // runs first on the side stream, overlapping the gate and top-k (latent_ev).
  const bool shared = c.n_shared_experts > 0, latent = c.moe_latent_size > 0;
  // NEMOTRON_MOE_SIDE_STREAM=0 runs them on the main stream, before the router (A/B runs).
  static const bool side_stream_on = !env_equals("NEMOTRON_MOE_SIDE_STREAM", "0");
  const bool side = (shared || latent) && !prof_active && side_stream_on;
  const cudaStream_t ls = side ? side_stream : sm;  // the stream of the routing-independent work
  if (side) {
    check(cudaEventRecord(fork_ev, sm), "MoE fork");
    check(cudaStreamWaitEvent(side_stream, fork_ev, 0), "MoE fork");
  }
  if (latent) {
    linear("moe.latent_in", b.e.fc1, u, R, r, OutType::BF16, false, ls);
    if (side) check(cudaEventRecord(latent_ev, side_stream), "MoE latent");
  }
  if (shared) {
    linear("moe.shared_up", b.e.shared_up, u, R, sh, OutType::BF16, true, ls);  // relu² in the epilogue
    linear("moe.shared_down", b.e.shared_down, sh, R, sd, OutType::BF16, false, ls);
  }
  if (side) check(cudaEventRecord(join_ev, side_stream), "MoE join");
  const auto* gate_w = static_cast<const uint16_t*>(b.e.gate.data);
  if (f32_router) {
    router_logits_f32_cuda(uf, gate_w, R, c.n_routed_experts, H, router_logits, sm);
    mark("moe.gate", static_cast<double>(b.e.gate.stored_bytes()));
  } else if (R <= kLinearGemvMaxRows && b.e.gate.format == WeightFormat::Dense && H % 8 == 0) {
    gate_logits_bf16_cuda(u, gate_w, R, c.n_routed_experts, H, router_logits, sm);
    mark("moe.gate", static_cast<double>(b.e.gate.stored_bytes()));
  } else {
    linear("moe.gate", b.e.gate, u, R, router_logits, OutType::F32);  // split K from 9 rows
  }
  RouterParams rp{c.n_routed_experts, k, c.n_group, c.topk_group, c.norm_topk_prob,
                  static_cast<float>(c.routed_scaling_factor)};
  route_topk_cuda(router_logits, b.e.bias, rp, R, d_route_ids, route_w, sm);
  mark("moe.topk");
  if (record_routing) {
    check(cudaMemcpyAsync(route_log + static_cast<int64_t>(b.index) * opt.max_step_tokens * k, d_route_ids,
                          static_cast<std::size_t>(R * k) * 4, cudaMemcpyDeviceToDevice, sm),
          "routing record");
    route_rows[static_cast<std::size_t>(b.index)] = R;
  }
  const uint16_t* rin = latent ? r : u;
  if (latent && side) check(cudaStreamWaitEvent(sm, latent_ev, 0), "MoE latent");
  ExpertGemvArgs ea;
  ea.w = b.e.up;
  ea.ids = d_route_ids;
  ea.T = R;
  ea.k = k;
  ea.x = rin;
  ea.relu2 = true;
  ea.y = h;
  // From kExpertGroupedMinPairs pairs on, expert_gemv_cuda runs the grouped GEMM in this
  // workspace (each selected expert read once per row tile instead of once per pair).
  ea.workspace = moe_ws;
  ea.workspace_bytes = moe_ws_bytes;
  const ExpertGemvPath up_path = expert_gemv_cuda(ea, sm);
  mark("moe.experts_up");
  ea.w = b.e.down;
  ea.x = h;
  ea.x_per_slot = true;
  ea.relu2 = false;
  ea.y = yk;
  // NEMOTRON_EXPERT_DOWN=waits: the down projection waits for the up projection before
  // reading the ids (and buckets again on the batch path): A/B runs.
  static const bool down_early = !env_equals("NEMOTRON_EXPERT_DOWN", "waits");
  ea.ids_settled = down_early;  // the up projection's kernels ran on these ids just before
  ea.reuse_buckets = down_early && up_path == ExpertGemvPath::Batch;  // and left their buckets in moe_ws
  expert_gemv_cuda(ea, sm);
  mark("moe.experts_down");
  // Sharded: the combine takes only this rank's experts (the others' rows were not written)
  // and y is complete (routed + shared partial) for the block's all-reduce: nothing is folded.
  const bool part = sharded();
  auto combine = [&](uint16_t* out) {
    if (part) moe_combine_owned_cuda(yk, route_w, d_route_ids, opt.expert_lo, opt.expert_hi, R, k, Din, out, sm);
    else moe_combine_cuda(yk, route_w, R, k, Din, out, sm);
    mark("moe.combine");
  };
  Folded folded;
  if (c.moe_latent_size > 0) {
    combine(acc);
    linear("moe.latent_out", b.e.fc2, acc, R, y);
  } else if (!last && Din == H && !part) {
    folded.combine_k = k;  // done by the next block's norm
  } else {
    combine(y);
  }
  if (side) check(cudaStreamWaitEvent(sm, join_ev, 0), "MoE join");
  if (shared && part) {
    add_bf16_cuda(y, sd, R * H, y, sm);
    mark("moe.shared_add");
  } else if (shared) {
    folded.y2 = sd;  // y + sd: added by the next norm
  }
  return folded;
}

void CudaModel::Impl::mlp_block(const DBlock& b, int64_t R) {
  linear("mlp.up", b.mlp_up, u, R, h, OutType::BF16, true);  // relu² in the epilogue
  linear("mlp.down", b.mlp_down, h, R, y);
}

}  // namespace nemotron::model

#endif
