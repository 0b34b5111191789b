// Safetensors dtypes, TensorInfo helpers and the writer (the reader is in
// safetensors_read.cpp, checkpoint directories in safetensors_checkpoint.cpp).
#include "model/checkpoint/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include "util/error.h"
#include "util/json.h"

namespace nemotron::model {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts are not supported");

namespace {

struct DTypeEntry {
  DType dtype;
  const char* name;
  std::size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::BF16, "BF16", 2}, {DType::F16, "F16", 2}, {DType::F32, "F32", 4},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::U8, "U8", 1}, {DType::I64, "I64", 8},
};

const DTypeEntry& entry(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  throw Error("invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

// Writes all of `data` to `fd`; false on error (errno set).
bool write_all(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

const char* dtype_name(DType dtype) { return entry(dtype).name; }

std::string safetensors_header_entry(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                     uint64_t begin, uint64_t end) {
  const Json e = {{"dtype", dtype_name(dtype)}, {"shape", shape}, {"data_offsets", {begin, end}}};
  return Json(name).dump() + ":" + e.dump();
}

std::size_t dtype_size(DType dtype) { return entry(dtype).size; }

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& e : kDTypes) {
    if (name == e.name) {
      *out = e.dtype;
      return true;
    }
  }
  return false;
}

bool checked_nbytes(DType dtype, const std::vector<int64_t>& shape, std::size_t* out) {
  // numel must fit int64 (TensorInfo::numel) and numel * size must fit size_t.
  uint64_t numel = 1;
  for (const int64_t d : shape) {
    if (d < 0) return false;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) return false;
  }
  if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(numel, dtype_size(dtype), &bytes)) return false;
  *out = bytes;
  return true;
}

int64_t TensorInfo::numel() const {
  std::size_t bytes = 0;
  if (!checked_nbytes(dtype, shape, &bytes)) {
    throw Error(file + ": tensor " + name + ": invalid shape " + shape_string());
  }
  return static_cast<int64_t>(bytes / dtype_size(dtype));
}

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Layout written: u64 LE header length N (a multiple of 8, so the data section starts
// 8-aligned), the compact JSON header padded with spaces to N bytes, then the tensors'
// bytes back to back in name order. `__metadata__` comes first in the header when present.
void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorData*> sorted;
  sorted.reserve(tensors.size());
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name.empty()) throw Error(path + ": cannot write a tensor with an empty name");
    if (t.name == "__metadata__") {
      throw Error(path + ": cannot write a tensor named __metadata__ (reserved)");
    }
    if (!names.insert(t.name).second) {
      throw Error(path + ": tensor " + t.name + " is given twice");
    }
    std::size_t expected = 0;
    TensorInfo shown;
    shown.shape = t.shape;
    if (!checked_nbytes(t.dtype, t.shape, &expected)) {
      throw Error(path + ": tensor " + t.name + ": invalid shape " + shown.shape_string());
    }
    if (expected != t.bytes.size()) {
      throw Error(path + ": tensor " + t.name + ": " + std::to_string(t.bytes.size()) +
                  " bytes given but shape " + shown.shape_string() + " of " +
                  dtype_name(t.dtype) + " needs " + std::to_string(expected));
    }
    sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorData* a, const TensorData* b) { return a->name < b->name; });

  std::string text = "{";
  try {
    if (!metadata.empty()) {
      Json meta = Json::object();
      for (const auto& [k, v] : metadata) meta[k] = v;
      text += "\"__metadata__\":" + meta.dump();
    }
    uint64_t offset = 0;
    for (const TensorData* t : sorted) {
      const uint64_t end = offset + t->bytes.size();
      text += (text.size() > 1 ? "," : "") + safetensors_header_entry(t->name, t->dtype, t->shape, offset, end);
      offset = end;
    }
  } catch (const nlohmann::json::exception& e) {
    // Names or metadata that are not valid UTF-8.
    throw Error(path + ": cannot encode the safetensors header: " + e.what());
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));

  // Temp file in the same directory, renamed over `path` only once fully written.
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = write_all(fd, len_bytes, 8) && write_all(fd, text.data(), text.size());
  for (std::size_t i = 0; ok && i < sorted.size(); ++i) {
    ok = write_all(fd, sorted[i]->bytes.data(), sorted[i]->bytes.size());
  }
  int err = ok ? 0 : errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    throw Error(path + ": write failed: " + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot rename " + tmp + " into place: " + std::strerror(e));
  }
}

TensorData make_f32_tensor(const std::string& name, std::vector<int64_t> shape,
                           const std::vector<float>& values) {
  TensorData t;
  t.name = name;
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  std::size_t bytes = 0;
  TensorInfo shown;
  shown.shape = t.shape;
  if (!checked_nbytes(DType::F32, t.shape, &bytes) || bytes != values.size() * sizeof(float)) {
    throw Error("tensor " + name + ": shape " + shown.shape_string() + " does not match " +
                std::to_string(values.size()) + " values");
  }
  t.bytes.resize(bytes);
  if (bytes > 0) std::memcpy(t.bytes.data(), values.data(), bytes);
  return t;
}

}  // namespace nemotron::model
