#include "kernels/token_mask.h"

#include <cmath>

namespace nemotron::kernels {

void mask_logits_cpu(float* logits, int64_t V, const uint32_t* bits) {
  for (int64_t t = 0; t < V; ++t)
    if (!(bits[t / 32] >> (t % 32) & 1u)) logits[t] = -INFINITY;
}

}  // namespace nemotron::kernels
