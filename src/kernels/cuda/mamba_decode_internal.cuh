#pragma once
// Shared by the two layouts of the fused Mamba-2 decode step (mamba_decode.cu: the register
// layout and the dispatch; mamba_decode_pipe.cu: the pipelined layout). See mamba_decode.cu.
#include <cstdint>

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

// Launches the pipelined layout for validated arguments; false (nothing launched) where its
// two state buffers do not fit in the device's shared memory.
bool launch_pipelined(const MambaDecodeArgs& a, const Geometry& geo, cudaStream_t stream);

}  // namespace nemotron::kernels::mamba_decode_detail
