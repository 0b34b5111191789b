// expert_gemv_workspace_bytes (moe_cuda.h): the grouped expert path's device scratch, counted
// on the host (the memory planner runs it in CPU-only builds too). The layout is
// moe_grouped.cu's (int32):
//   offsets [E + 1] | tile_off [E + 1] | tile_expert [tiles] | tile_start [tiles] | total [1] | pairs [N]
// with tiles = ceil(N / kExpertGroupedMinTile) + E, N = T * k.
#include <string>

#include "kernels/moe_cuda.h"
#include "util/error.h"

namespace nemotron::kernels {

int64_t expert_gemv_workspace_bytes(int64_t T, int64_t k, int64_t experts) {
  if (!(T >= 0 && k >= 1 && experts >= 1 && T < (int64_t{1} << 31) && k < 65536 && experts <= kExpertGroupedMaxExperts))
    throw Error("expert_gemv_workspace_bytes: bad T, k or expert count (T " + std::to_string(T) + ", k " +
                std::to_string(k) + ", experts " + std::to_string(experts) + ")");
  const int64_t N = T * k;
  const int64_t tiles = (N + kExpertGroupedMinTile - 1) / kExpertGroupedMinTile + experts;
  return ((2 * (experts + 1) + 2 * tiles + 1 + N) * 4 + 15) / 16 * 16;
}

}  // namespace nemotron::kernels
