#pragma once
// Split-K planning of paged attention (paged_attention_cuda), host-only and header-only (the
// CUDA library and the planner both use it) so that the memory planner can size the
// partials' workspace without a device: the launch shape depends only on
// the host-side arguments and the device's multiprocessor count.
#include <algorithm>
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
inline SplitPlan plan(const PagedAttentionArgs& a, int64_t base_blocks, int P, int sms) {
  int64_t ctx = a.max_pages * a.cache.page_size;
  if (a.max_context > 0) ctx = std::min(ctx, a.max_context);
  const int64_t tiles = ceil_div(ctx, P);
  int64_t splits = 1;
  if (a.num_splits != 1) {
    const int64_t target = 4LL * sms;  // about one wave of resident blocks
    if (base_blocks < target) splits = ceil_div(target, base_blocks);
    splits = std::min({splits, ceil_div(tiles, kMinTilesPerSplit), static_cast<int64_t>(kMaxSplits)});
    if (a.num_splits > 1) splits = std::min(splits, a.num_splits);
    splits = std::max<int64_t>(splits, 1);
  }
  const int64_t tiles_per_split = ceil_div(tiles, splits);
  return {ceil_div(tiles, tiles_per_split), tiles_per_split * P};
}

inline int64_t workspace_for(const PagedAttentionArgs& a, int64_t splits) {
  if (splits <= 1) return 0;
  const int64_t parts = a.T * a.q_heads * splits;
  return parts * static_cast<int64_t>(sizeof(float) * a.cache.head_dim + 2 * sizeof(float));  // acc + (m, l)
}

inline int64_t workspace_bytes(const PagedAttentionArgs& a, int sms) {
  const PagedKvCache& c = a.cache;
  if (a.T <= 0 || c.kv_heads <= 0 || a.q_heads <= 0 || a.q_heads % c.kv_heads != 0 || c.head_dim <= 0 ||
      c.page_size <= 0 || a.max_pages <= 0)
    return 0;
  const int64_t group = a.q_heads / c.kv_heads;
  const bool wide = c.head_dim > 128;
  const int64_t chunks = ceil_div(group, std::min<int64_t>(group, wide ? 8 : 16));
  return workspace_for(a, plan(a, a.T * c.kv_heads * chunks, wide ? 16 : 32, sms).splits);
}

}  // namespace nemotron::kernels::attention_splits
