// copy_blocks_cuda (kernels/copy_cuda.h): one thread block per (src, dst, bytes) entry.
#include <string>

#include "kernels/copy_cuda.h"
#include "kernels/cuda/common.cuh"

namespace nemotron::kernels {
namespace {

template <class T>
__device__ __forceinline__ void copy_as(const void* src, void* dst, int64_t bytes) {
  const T* s = static_cast<const T*>(src);
  T* d = static_cast<T*>(dst);
  const int64_t n = bytes / static_cast<int64_t>(sizeof(T));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) d[i] = s[i];
}

// grid (n): block b copies entry b.
__global__ void __launch_bounds__(256) copy_blocks_kernel(const CopyBlock* __restrict__ blocks) {
  const CopyBlock b = blocks[blockIdx.x];
  if (b.bytes <= 0) return;
  const auto bits = reinterpret_cast<uintptr_t>(b.src) | reinterpret_cast<uintptr_t>(b.dst) |
                    static_cast<uintptr_t>(b.bytes);
  if ((bits & 15u) == 0) copy_as<int4>(b.src, b.dst, b.bytes);
  else if ((bits & 3u) == 0) copy_as<int>(b.src, b.dst, b.bytes);
  else copy_as<unsigned char>(b.src, b.dst, b.bytes);
}

}  // namespace

void copy_blocks_cuda(const CopyBlock* blocks, int64_t n, cudaStream_t stream) {
  cuda::require(n >= 0 && n < (int64_t{1} << 31), "copy_blocks_cuda: bad block count " + std::to_string(n));
  if (n == 0) return;
  cuda::require(blocks != nullptr, "copy_blocks_cuda: null block table");
  copy_blocks_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(blocks);
  cuda::check_launch("copy_blocks_cuda");
}

}  // namespace nemotron::kernels
