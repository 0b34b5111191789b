#pragma once
// Warp-per-row GEMV core shared by the decode linear (linear_gemv.cu) and the routed experts
// (moe.cu). Each lane streams 16-byte chunks of the stored row (coalesced: lane l reads chunk
// l, l+32, ...), kUnroll chunks issued before any is used so that enough bytes are in flight;
// each decoded chunk is multiplied with all NT rows of x (read through L1, 16 bytes at a
// time), so the weight is read once for the whole batch.
#include "kernels/cuda/dequant.cuh"

namespace nemotron::kernels::cuda {

constexpr int kWarps = 8;   // rows per block
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ uint4 ldg_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// One warp computes y[t, row] for t < T (T <= NT); `relu2` squares the positive part.
template <WeightFormat F, int NT>
__device__ __forceinline__ void gemv_row(const uint8_t* __restrict__ wdata, const uint8_t* __restrict__ wscale,
                                         float scale, const uint16_t* __restrict__ x, int T, int in, int out,
                                         void* __restrict__ y, bool y_f32, int row, bool relu2 = false) {
  using D = Fmt<F>;
  constexpr int E = D::kElems;
  const int lane = threadIdx.x & 31;
  const int nvec = static_cast<int>(row_bytes(F, in) / 16);
  const uint4* wrow = reinterpret_cast<const uint4*>(wdata + static_cast<int64_t>(row) * row_bytes(F, in));
  const uint16_t* srow = F == WeightFormat::NVFP4 ? reinterpret_cast<const uint16_t*>(wscale + static_cast<int64_t>(row) * (in / 16)) : nullptr;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;

  for (int v0 = lane; v0 < nvec; v0 += 32 * kUnroll) {
    uint4 wv[kUnroll];
    uint16_t sv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + 32 * u;
      wv[u] = v < nvec ? ldg_stream(wrow + v) : make_uint4(0, 0, 0, 0);
      sv[u] = 0;
      if constexpr (F == WeightFormat::NVFP4) sv[u] = v < nvec ? __ldg(srow + v) : uint16_t{0};
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + 32 * u;
      if (v >= nvec) break;
      // NVFP4: the 2^14-scaled e2m1 values are summed per 16-element block and the block
      // scale is applied to the partial sum (one multiply per block, not per element).
      constexpr int G = F == WeightFormat::NVFP4 ? 2 : 1;
      float wf[E], gs[G];
      if constexpr (F == WeightFormat::NVFP4) {
        Fmt<WeightFormat::NVFP4>::decode_raw(wv[u], wf);
        gs[0] = e4m3_to_float(static_cast<uint8_t>(sv[u] & 0xFF)) * 16384.0f;
        gs[G - 1] = e4m3_to_float(static_cast<uint8_t>(sv[u] >> 8)) * 16384.0f;
      } else {
        D::decode(wv[u], sv[u], wf);
        gs[0] = 1.0f;
      }
      const int k0 = v * E;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t >= T) break;
        const uint4* xp = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(t) * in + k0);
#pragma unroll
        for (int gi = 0; gi < G; ++gi) {
          float s = 0.0f;
#pragma unroll
          for (int jj = 0; jj < E / 8 / G; ++jj) {
            const int j = gi * (E / 8 / G) + jj;
            const uint4 xv = __ldg(xp + j);
            s = fmaf(wf[8 * j + 0], bf16lo(xv.x), s);
            s = fmaf(wf[8 * j + 1], bf16hi(xv.x), s);
            s = fmaf(wf[8 * j + 2], bf16lo(xv.y), s);
            s = fmaf(wf[8 * j + 3], bf16hi(xv.y), s);
            s = fmaf(wf[8 * j + 4], bf16lo(xv.z), s);
            s = fmaf(wf[8 * j + 5], bf16hi(xv.z), s);
            s = fmaf(wf[8 * j + 6], bf16lo(xv.w), s);
            s = fmaf(wf[8 * j + 7], bf16hi(xv.w), s);
          }
          acc[t] = G == 1 ? acc[t] + s : fmaf(s, gs[gi], acc[t]);
        }
      }
    }
  }
  const float post = post_scale(F, scale);
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = warp_sum(acc[t]) * post;
    if (relu2) s = s > 0.0f ? s * s : 0.0f;
    if (lane == t && t < T) {
      const int64_t o = static_cast<int64_t>(t) * out + row;
      if (y_f32) static_cast<float*>(y)[o] = s;
      else static_cast<uint16_t*>(y)[o] = f2bf(s);
    }
  }
}

}  // namespace nemotron::kernels::cuda
