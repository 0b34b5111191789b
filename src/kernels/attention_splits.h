#pragma once
// Split-K planning of paged attention (paged_attention_cuda), host-only so that the memory
// planner can size the partials' workspace without a device: the launch shape depends only on
// the host-side arguments and the device's multiprocessor count.
#include <cstdint>

#include "kernels/attention_cuda.h"

namespace nemotron::kernels::attention_splits {

inline constexpr int kMinTilesPerSplit = 2;
inline constexpr int kMaxSplits = 256;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits and positions per split (a multiple of the tile P) for `base_blocks` blocks per split
// on a device of `sms` multiprocessors.
struct SplitPlan {
  int64_t splits = 1, split_len = 0;
};
SplitPlan plan(const PagedAttentionArgs& a, int64_t base_blocks, int P, int sms);

// Bytes of split-K partials for `splits` splits (0 for a single pass).
int64_t workspace_for(const PagedAttentionArgs& a, int64_t splits);

// paged_attention_workspace_bytes for a device of `sms` multiprocessors.
int64_t workspace_bytes(const PagedAttentionArgs& a, int sms);

}  // namespace nemotron::kernels::attention_splits
