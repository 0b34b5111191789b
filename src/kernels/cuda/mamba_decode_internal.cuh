#pragma once
// The fused Mamba-2 decode step's constants, geometry, conv round and launch (mamba_decode.cu).
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_stream.h"
#include "kernels/mamba_cuda.h"

namespace nemotron::kernels::mamba_decode_detail {

constexpr int kThreads = 256, kMaxK = 8, kMaxCluster = 8, kMaxRows = 1024, kMaxHpb = 64;

__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

// A group's hpg = heads / groups heads are split over a cluster of cs blocks (the largest of
// 8, 4, 2, 1 dividing hpg), hpb = hpg / cs consecutive heads per block.
struct Geometry {
  int cs = 1, hpb = 1;  // blocks per group (cluster size), heads per block
};

inline Geometry geometry(int64_t heads, int64_t groups) {
  const int64_t hpg = heads / groups;
  Geometry g;
  for (int cs = kMaxCluster; cs >= 1; cs /= 2)
    if (hpg % cs == 0) {
      g.cs = cs;
      g.hpb = static_cast<int>(hpg / cs);
      break;
    }
  return g;
}

// The conv of one round (mamba_decode.cu): channels q0 + u * kThreads (u = 0, 1) of the block's
// nch = rows + 2N (its x rows, then the group's B and C channels; ch[u] their conv channel),
// from their windows, weights, bias and new input xin[u]; SiLU; into xs / Bf / Cf. The x
// channels' windows are shifted in the conv state here; the group's B / C windows are shifted
// once every block of the cluster has read them (shift_bc_windows).
__device__ __forceinline__ void conv_round(int q0, int nch, int rows, int N, int W, int64_t C, float* cst,
                                           const float (&win)[2][kMaxK], const float (&cw)[2][kMaxK],
                                           const float (&cb)[2], const float (&xin)[2], const int64_t (&ch)[2],
                                           float* xs, float* Bf, float* Cf) {
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int q = q0 + u * kThreads;
    if (q >= nch) continue;
    const int64_t c = ch[u];
    float acc = cb[u];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) {  // static indices: the arrays stay in registers
      if (k < W) acc += cw[u][k] * win[u][k];
      else if (k == W) acc += cw[u][k] * xin[u];
    }
    const float o = acc / (1.0f + expf(-acc));
    if (q < rows) {
      xs[q] = o;
      float* st = cst + c;
#pragma unroll
      for (int k = 0; k + 1 < kMaxK; ++k)
        if (k + 1 < W) st[k * C] = win[u][k + 1];
      if (W > 0) st[(W - 1) * C] = xin[u];
    } else if (q < rows + N) {
      Bf[q - rows] = o;
    } else {
      Cf[q - rows - N] = o;
    }
  }
}

// kernel(a, hpb) on grid blocks of kThreads, in clusters of geo.cs blocks along x, with PDL
// when it is on (cuda::pdl_enabled); smem bytes of dynamic shared memory.
inline void launch_clustered(void (*kernel)(MambaDecodeArgs, int), dim3 grid, const Geometry& geo, size_t smem,
                             cudaStream_t stream, const MambaDecodeArgs& a) {
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(geo.cs);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = cuda::pdl_enabled() ? 2 : 1;
  cudaLaunchKernelEx(&cfg, kernel, a, geo.hpb);
}

}  // namespace nemotron::kernels::mamba_decode_detail
