#pragma once
// Launchers shared between linear.cu (dispatch) and the GEMV / GEMM / routed-expert files.
#include <cuda_runtime.h>

#include "kernels/linear_cuda.h"

namespace nemotron::kernels::cuda {

void launch_linear_gemv(const LinearCudaArgs& a, cudaStream_t stream);
void launch_linear_gemm(const LinearCudaArgs& a, cudaStream_t stream);

}  // namespace nemotron::kernels::cuda
