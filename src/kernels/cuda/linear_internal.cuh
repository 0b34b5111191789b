#pragma once
// Launchers shared between linear.cu (dispatch) and the GEMV / GEMM / routed-expert files.
#include <cuda_runtime.h>

#include "kernels/linear_cuda.h"
#include "kernels/moe_cuda.h"

namespace nemotron::kernels::cuda {

void launch_linear_gemv(const LinearCudaArgs& a, cudaStream_t stream);
// linear_group_cuda's one-launch path (checked arguments); false when it does not apply.
bool launch_linear_gemv_group(const LinearCudaArgs* parts, int n, cudaStream_t stream);
void launch_linear_gemm(const LinearCudaArgs& a, cudaStream_t stream);

// The grouped path of expert_gemv_cuda (moe_grouped.cu; arguments checked by the caller,
// workspace checked here). bm: pairs per row tile, 64 or 128; 0 picks by pairs per expert.
void launch_expert_grouped(const ExpertGemvArgs& a, cudaStream_t stream, int bm = 0);

// The current device's multiprocessor count and per-block shared-memory opt-in limit (bytes),
// read once per device.
struct DeviceLimits {
  int sms = 0;
  int smem_optin = 0;
  int cc_major = 0;  // compute capability major (9: Hopper, 12: GB10)
};
DeviceLimits device_limits();

// Blocks of `kernel` (threads per block, dynamic shared memory bytes) resident per SM (>= 1);
// raises the kernel's dynamic shared-memory limit to `smem` when needed.
int resident_blocks(const void* kernel, int threads, int64_t smem);

}  // namespace nemotron::kernels::cuda
