// Without the CUDA backend: the grouped experts' workspace size, which the memory planner's
// counting walk (model/cuda/cuda_buffers.cpp) needs even in a CPU-only build. The CUDA build
// takes the definition in cuda/moe_grouped.cu; this one must give the same number.
#include "kernels/moe_cuda.h"

#ifndef NEMOTRON_HAVE_CUDA
#include "util/error.h"

namespace nemotron::kernels {

int64_t expert_gemv_workspace_bytes(int64_t T, int64_t k, int64_t experts) {
  constexpr int64_t kMaxExperts = 4096, kMinBM = 64;  // as in cuda/moe_grouped.cu
  if (!(T >= 0 && k >= 1 && experts >= 1 && T < (int64_t{1} << 31) && k < 65536 && experts <= kMaxExperts))
    throw Error("expert_gemv_workspace_bytes: bad T, k or expert count");
  const int64_t N = T * k;
  const int64_t tiles = (N + kMinBM - 1) / kMinBM + experts;
  return ((2 * (experts + 1) + 2 * tiles + 1 + N) * 4 + 15) / 16 * 16;
}

}  // namespace nemotron::kernels
#endif
