#include "model/parallel/linear_slice.h"

#include <cstring>

#include "util/error.h"

namespace nemotron::model {
namespace {

using kernels::ElementType;
using kernels::LinearWeight;
using kernels::WeightFormat;

// Bytes per element of the weight data (NVFP4: per two elements, handled by the callers).
int64_t element_bytes(const LinearWeight& w) {
  if (w.format == WeightFormat::FP8) return 1;
  return w.dense_type == ElementType::F32 ? 4 : 2;
}

// Bytes of `cols` columns of one row of data, and of its NVFP4 block scales.
int64_t data_bytes(const LinearWeight& w, int64_t cols) {
  return w.format == WeightFormat::NVFP4 ? cols / 2 : cols * element_bytes(w);
}
int64_t scale_bytes(const LinearWeight& w, int64_t cols) { return w.format == WeightFormat::NVFP4 ? cols / 16 : 0; }

// A weight of `rows` x `cols` in w's format, backed by a new buffer in `store` (data first,
// then the block scales), or by nothing when counting.
LinearWeight make_like(const LinearWeight& w, int64_t rows, int64_t cols, SliceStore* store) {
  LinearWeight o = w;
  o.out = rows;
  o.in = cols;
  o.data = nullptr;
  o.block_scale = nullptr;
  if (!store) return o;
  const int64_t db = rows * data_bytes(w, cols), sb = rows * scale_bytes(w, cols);
  store->emplace_back(static_cast<std::size_t>(db + sb));
  uint8_t* base = store->back().data();
  o.data = base;
  if (w.format == WeightFormat::NVFP4) o.block_scale = base + db;
  return o;
}

}  // namespace

int64_t column_align(const LinearWeight& w) { return w.format == WeightFormat::NVFP4 ? 16 : 1; }

LinearWeight row_view(const LinearWeight& w, int64_t r0, int64_t r1) {
  if (r0 < 0 || r1 < r0 || r1 > w.out) throw Error("row_view: rows [" + std::to_string(r0) + ", " +
                                                   std::to_string(r1) + ") of " + std::to_string(w.out));
  LinearWeight o = w;
  o.out = r1 - r0;
  if (w.data) o.data = static_cast<const uint8_t*>(w.data) + r0 * data_bytes(w, w.in);
  if (w.block_scale) o.block_scale = w.block_scale + r0 * scale_bytes(w, w.in);
  return o;
}

LinearWeight gather_rows(const LinearWeight& w, const std::vector<Range>& rows, SliceStore* store) {
  int64_t n = 0;
  for (const auto& r : rows) n += r.size();
  LinearWeight o = make_like(w, n, w.in, store);
  if (!store) return o;
  const int64_t db = data_bytes(w, w.in), sb = scale_bytes(w, w.in);
  auto* d = static_cast<uint8_t*>(const_cast<void*>(o.data));
  auto* s = const_cast<uint8_t*>(o.block_scale);
  for (const auto& r : rows) {
    if (r.size() == 0) continue;  // nothing to copy (and o may have no storage at all)
    const LinearWeight v = row_view(w, r.begin, r.end);
    std::memcpy(d, v.data, static_cast<std::size_t>(r.size() * db));
    d += r.size() * db;
    if (sb) {
      std::memcpy(s, v.block_scale, static_cast<std::size_t>(r.size() * sb));
      s += r.size() * sb;
    }
  }
  return o;
}

LinearWeight column_slice(const LinearWeight& w, int64_t c0, int64_t c1, SliceStore* store, const std::string& name,
                          const std::string& why) {
  if (c0 < 0 || c1 < c0 || c1 > w.in)
    throw Error(name + ": columns [" + std::to_string(c0) + ", " + std::to_string(c1) + ") of " + std::to_string(w.in));
  if (c0 == 0 && c1 == w.in) return w;
  const int64_t a = column_align(w);
  if (c0 % a != 0 || c1 % a != 0)
    throw Error(name + ": " + why + " splits its input dim (" + std::to_string(w.in) + ") at columns [" +
                std::to_string(c0) + ", " + std::to_string(c1) + "), not on the " + std::to_string(a) +
                "-element blocks of its " + kernels::weight_format_name(w.format) + " quantization");
  LinearWeight o = make_like(w, w.out, c1 - c0, store);
  if (!store) return o;
  const int64_t db = data_bytes(w, w.in), sb = scale_bytes(w, w.in);
  const int64_t odb = data_bytes(w, c1 - c0), osb = scale_bytes(w, c1 - c0);
  const int64_t d0 = data_bytes(w, c0), s0 = scale_bytes(w, c0);
  auto* d = static_cast<uint8_t*>(const_cast<void*>(o.data));
  auto* s = const_cast<uint8_t*>(o.block_scale);
  const auto* src = static_cast<const uint8_t*>(w.data);
  for (int64_t r = 0; r < w.out; ++r) {
    // An empty slice (a rank with no columns of this matrix) has no storage: no copy at all
    // (memcpy of 0 bytes to a null pointer is undefined; UBSan, ParallelForward tests).
    if (odb) std::memcpy(d + r * odb, src + r * db + d0, static_cast<std::size_t>(odb));
    if (osb) std::memcpy(s + r * osb, w.block_scale + r * sb + s0, static_cast<std::size_t>(osb));
  }
  return o;
}

std::vector<float> gather_floats(const std::vector<float>& v, const std::vector<Range>& ranges, int64_t row) {
  std::vector<float> o;
  for (const auto& r : ranges) o.insert(o.end(), v.begin() + r.begin * row, v.begin() + r.end * row);
  return o;
}

}  // namespace nemotron::model
