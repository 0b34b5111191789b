#pragma once
// Shared by the two layouts of the fused Mamba-2 decode step (mamba_decode.cu: the register
// layout and the dispatch; mamba_decode_pipe.cu: the pipelined layout). See mamba_decode.cu.
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

// Launches the pipelined layout for validated arguments; false (nothing launched) where its
// two state buffers do not fit in the device's shared memory.
bool launch_pipelined(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream);

}  // namespace nemotron::kernels::mamba_decode_detail
