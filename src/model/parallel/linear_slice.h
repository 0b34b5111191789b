#pragma once
// Slices of a linear weight W [out, in] in its checkpoint format, for one rank:
//   column-parallel (split `out`): a contiguous row range is a view into the same memory;
//   row-parallel (split `in`): every row's column range, copied into a store the rank owns.
// NVFP4 keeps two E2M1 codes per byte and one E4M3 scale per 16 columns, so a column split
// must fall on a 16-element block (else an Error naming the tensor); FP8 and NVFP4 global
// scales are per tensor and carry over unchanged.
// With `store` == nullptr nothing is copied (data pointers null): the sizes alone, counted
// for the memory plan.
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "model/parallel/parallel_config.h"

namespace nemotron::model {

// Owned bytes of copied slices; each slice is its own heap buffer (addresses stay valid
// when the store grows or moves).
using SliceStore = std::vector<std::vector<uint8_t>>;

// Columns a row-parallel split of `w` must be a multiple of (16 for NVFP4, else 1).
int64_t column_align(const kernels::LinearWeight& w);

// Rows [r0, r1): a view (nothing copied).
kernels::LinearWeight row_view(const kernels::LinearWeight& w, int64_t r0, int64_t r1);

// The row ranges, in order, as one weight (copied unless `store` is null).
kernels::LinearWeight gather_rows(const kernels::LinearWeight& w, const std::vector<Range>& rows, SliceStore* store);

// Columns [c0, c1) of every row (copied unless `store` is null or the range is every column).
// `name` and `why` (e.g. "--tensor-parallel-size 4") go into the block-boundary error.
kernels::LinearWeight column_slice(const kernels::LinearWeight& w, int64_t c0, int64_t c1, SliceStore* store,
                                   const std::string& name, const std::string& why);

// A rank's share of a float parameter vector: the given element ranges, in order.
std::vector<float> gather_floats(const std::vector<float>& v, const std::vector<Range>& ranges, int64_t row = 1);

}  // namespace nemotron::model
