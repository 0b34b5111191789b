#pragma once
// Argument checks shared by the paged attention launchers (attention.cu, attention_prefill.cu):
// host-only. Each throws nemotron::Error prefixed with `name` (the launcher's name).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/attention_cuda.h"
#include "kernels/cuda/common.cuh"

namespace nemotron::kernels::cuda {

// Head counts, cache and block-table shape, scale and FP8 scales.
inline void check_paged_shape(const PagedAttentionArgs& a, const std::string& name) {
  const PagedKvCache& c = a.cache;
  require(c.kv_heads > 0 && a.q_heads > 0 && a.q_heads % c.kv_heads == 0,
          name + "q_heads (" + std::to_string(a.q_heads) + ") must be a positive multiple of kv_heads (" +
              std::to_string(c.kv_heads) + ")");
  require(c.num_pages > 0 && c.page_size > 0 && a.max_pages > 0, name + "num_pages, page_size and max_pages must be > 0");
  require(a.max_pages * c.page_size <= std::numeric_limits<int32_t>::max() &&
              c.num_pages <= std::numeric_limits<int32_t>::max(),
          name + "max_pages * page_size and num_pages must fit int32");
  require(std::isfinite(a.scale) && a.scale >= 0.0f, name + "scale must be finite and >= 0 (0 = 1/sqrt(head_dim))");
  if (c.dtype == KvDType::FP8_E4M3)
    require(std::isfinite(c.k_scale) && std::isfinite(c.v_scale) && c.k_scale > 0 && c.v_scale > 0,
            name + "FP8 k_scale and v_scale must be finite and > 0");
}

// Pointers present and 16-byte aligned (checked only when there is work).
inline void check_paged_pointers(const PagedAttentionArgs& a, const std::string& name) {
  const PagedKvCache& c = a.cache;
  require(a.q && a.out && a.query_seq && a.query_pos && a.block_tables && c.k && c.v, name + "null pointer");
  require(aligned16(a.q) && aligned16(a.out) && aligned16(c.k) && aligned16(c.v),
          name + "q, out and the cache's k and v must be 16-byte aligned");
}

}  // namespace nemotron::kernels::cuda
