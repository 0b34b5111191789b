// Paged KV cache writer (layout in attention_cuda.h): one block per new row, each thread
// moves 8 elements (a 16-byte BF16 load; a 16-byte BF16 or 8-byte FP8 store).
#include <cmath>
#include <limits>
#include <string>

#include "kernels/attention_cuda.h"
#include "kernels/cuda/common.cuh"
#include "kernels/numeric.h"

namespace nemotron::kernels {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ uint32_t pack_e4m3x4(const float (&f)[8], int i0) {
  uint32_t w = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) w |= static_cast<uint32_t>(float_to_e4m3(f[i0 + i])) << (8 * i);
  return w;
}

// src BF16 [T, W]; dst row of slot s starts at element s * W. W % 8 == 0.
template <bool kFp8>
__global__ void __launch_bounds__(kThreads) kv_write_kernel(const uint16_t* __restrict__ k_new,
                                                            const uint16_t* __restrict__ v_new,
                                                            const int32_t* __restrict__ slots, int64_t num_slots,
                                                            int W, void* __restrict__ k, void* __restrict__ v,
                                                            float k_scale, float v_scale) {
  cuda::pdl_wait();
  cuda::pdl_trigger();
  const int64_t t = blockIdx.x;
  const int32_t slot = slots[t];
  if (slot < 0 || slot >= num_slots) return;
  for (int c = threadIdx.x; c < W / 8; c += blockDim.x) {
#pragma unroll
    for (int which = 0; which < 2; ++which) {
      const uint16_t* src = (which == 0 ? k_new : v_new) + t * W + c * 8;
      const uint4 in = *reinterpret_cast<const uint4*>(src);
      const int64_t off = static_cast<int64_t>(slot) * W + c * 8;
      if constexpr (!kFp8) {
        *reinterpret_cast<uint4*>(static_cast<uint16_t*>(which == 0 ? k : v) + off) = in;
      } else {
        // value / scale, as the CPU reference computes it (fp32 division, then RNE saturating).
        const float s = which == 0 ? k_scale : v_scale;
        const uint32_t w[4] = {in.x, in.y, in.z, in.w};
        float f[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          f[2 * i] = cuda::bf16lo(w[i]) / s;
          f[2 * i + 1] = cuda::bf16hi(w[i]) / s;
        }
        uint2 o;
        o.x = pack_e4m3x4(f, 0);
        o.y = pack_e4m3x4(f, 4);
        *reinterpret_cast<uint2*>(static_cast<uint8_t*>(which == 0 ? k : v) + off) = o;
      }
    }
  }
}

}  // namespace

void kv_cache_write_cuda(const PagedKvCache& c, const uint16_t* k_new, const uint16_t* v_new,
                         const int32_t* slot_mapping, int64_t T, cudaStream_t stream) {
  using cuda::require;
  require(T >= 0, "kv_cache_write_cuda: T must be >= 0, got " + std::to_string(T));
  require(c.kv_heads > 0 && c.head_dim > 0 && c.head_dim % 8 == 0 && c.head_dim <= 256,
          "kv_cache_write_cuda: need kv_heads > 0 and head_dim a multiple of 8 in [8, 256] (kv_heads " +
              std::to_string(c.kv_heads) + ", head_dim " + std::to_string(c.head_dim) + ")");
  require(c.num_pages > 0 && c.page_size > 0, "kv_cache_write_cuda: num_pages and page_size must be > 0");
  require(c.num_pages * c.page_size <= std::numeric_limits<int32_t>::max() && c.kv_heads * c.head_dim <= (1 << 20),
          "kv_cache_write_cuda: cache too large for int32 slot ids / row width");
  if (c.dtype == KvDType::FP8_E4M3)
    require(std::isfinite(c.k_scale) && std::isfinite(c.v_scale) && c.k_scale > 0 && c.v_scale > 0,
            "kv_cache_write_cuda: FP8 k_scale and v_scale must be finite and > 0");
  if (T == 0) return;
  require(c.k && c.v && k_new && v_new && slot_mapping, "kv_cache_write_cuda: null pointer");
  require(cuda::aligned16(c.k) && cuda::aligned16(c.v) && cuda::aligned16(k_new) && cuda::aligned16(v_new),
          "kv_cache_write_cuda: k, v, k_new and v_new must be 16-byte aligned");
  require(T <= std::numeric_limits<int32_t>::max(), "kv_cache_write_cuda: T too large");
  const int W = static_cast<int>(c.kv_heads * c.head_dim);
  const int threads = W / 8 < kThreads ? ((W / 8 + 31) / 32) * 32 : kThreads;
  const int64_t num_slots = c.num_pages * c.page_size;
  auto* kernel = c.dtype == KvDType::BF16 ? kv_write_kernel<false> : kv_write_kernel<true>;
  cuda::launch_pdl(kernel, dim3(static_cast<unsigned>(T)), dim3(threads), 0, stream, k_new, v_new, slot_mapping,
                   num_slots, W, c.k, c.v, c.k_scale, c.v_scale);
  cuda::check_launch("kv_cache_write_cuda");
}

}  // namespace nemotron::kernels
