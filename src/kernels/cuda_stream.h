#pragma once
// Plain-C++ view of a CUDA stream, so that the launcher headers (*_cuda.h) compile in
// translation units that do not include the CUDA runtime. Same type as cuda_runtime.h's.
struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace nemotron::kernels {

// Output element type of a kernel: BF16 activations, or fp32 (logits, router scores).
enum class OutType { BF16, F32 };

}  // namespace nemotron::kernels
