// The sharded forward's device helpers (kernels/collective_cuda.h).
#include <algorithm>
#include <string>

#include "kernels/collective_cuda.h"
#include "kernels/cuda/common.cuh"

namespace nemotron::kernels {
namespace {

struct Inputs {
  const void* p[kMaxCommRanks];
};

template <bool BF16>
__global__ void __launch_bounds__(256) sum_kernel(Inputs in, int n_in, void* __restrict__ out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    float s = 0.0f;
    for (int q = 0; q < n_in; ++q) {
      const float v = BF16 ? cuda::bf16f(static_cast<const uint16_t*>(in.p[q])[i]) : static_cast<const float*>(in.p[q])[i];
      s = q == 0 ? v : s + v;
    }
    if constexpr (BF16) static_cast<uint16_t*>(out)[i] = cuda::f2bf(s);
    else static_cast<float*>(out)[i] = s;
  }
}

struct Ranges {
  int64_t v0[kMaxCommRanks], width[kMaxCommRanks];
};

// grid (column chunks, L, ranks).
__global__ void __launch_bounds__(256) place_kernel(const float* __restrict__ blocks, Ranges r, int64_t stride,
                                                    int64_t L, int64_t V, float* __restrict__ out) {
  const int q = static_cast<int>(blockIdx.z);
  const int64_t l = blockIdx.y, w = r.width[q];
  const float* src = blocks + (static_cast<int64_t>(q) * L + l) * stride;
  float* dst = out + l * V + r.v0[q];
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < w;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[j] = src[j];
}

}  // namespace

void sum_buffers_cuda(const void* const* in, int n_in, void* out, int64_t n, bool bf16, cudaStream_t stream) {
  cuda::require(n_in >= 1 && n_in <= kMaxCommRanks && n >= 0,
                "sum_buffers_cuda: 1.." + std::to_string(kMaxCommRanks) + " inputs");
  if (n == 0) return;
  cuda::require(out != nullptr, "sum_buffers_cuda: null output");
  Inputs p{};
  for (int q = 0; q < n_in; ++q) {
    cuda::require(in[q] != nullptr, "sum_buffers_cuda: null input");
    p.p[q] = in[q];
  }
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 4096);
  if (bf16) sum_kernel<true><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(p, n_in, out, n);
  else sum_kernel<false><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(p, n_in, out, n);
  cuda::check_launch("sum_buffers_cuda");
}

void place_vocab_blocks_cuda(const float* blocks, int ranks, const int64_t* v0, const int64_t* width, int64_t stride,
                             int64_t L, int64_t V, float* out, cudaStream_t stream) {
  cuda::require(ranks >= 1 && ranks <= kMaxCommRanks && L >= 0 && L < 65536 && blocks && out,
                "place_vocab_blocks_cuda: bad arguments");
  if (L == 0) return;
  Ranges r{};
  int64_t widest = 0;
  for (int q = 0; q < ranks; ++q) {
    cuda::require(v0[q] >= 0 && width[q] >= 0 && width[q] <= stride && v0[q] + width[q] <= V,
                  "place_vocab_blocks_cuda: rank " + std::to_string(q) + "'s columns outside the vocabulary");
    r.v0[q] = v0[q];
    r.width[q] = width[q];
    widest = std::max(widest, width[q]);
  }
  if (widest == 0) return;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((widest + 255) / 256, 256)), static_cast<unsigned>(L),
                  static_cast<unsigned>(ranks));
  place_kernel<<<grid, 256, 0, stream>>>(blocks, r, stride, L, V, out);
  cuda::check_launch("place_vocab_blocks_cuda");
}

}  // namespace nemotron::kernels
