// SafetensorsFile: mmap a .safetensors file and validate its header.
//
// The whole file is mapped read-only (MAP_PRIVATE); TensorInfo::data points into the
// mapping. Everything the header claims is checked before any pointer is formed, with
// overflow-checked arithmetic, so no input can make a TensorInfo point outside the map.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>

#include "model/checkpoint/safetensors.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::model {
namespace {

// Same bound as the reference implementation: headers above 100 MB are rejected.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string supported_dtypes() { return "BF16, F16, F32, F8_E4M3, U8, I64"; }

// Reads a non-negative JSON integer into *out; false for any other value.
bool json_u64(const PlainJson& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
    return true;
  }
  return false;
}

// Owns an fd / a mapping until released (open() may throw halfway).
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// "[begin, end" + close; built by appending (GCC 12 -Wrestrict misfires on "[" + string).
std::string range_text(uint64_t begin, uint64_t end, const char* close) {
  std::string s;
  s += '[';
  s += std::to_string(begin);
  s += ", ";
  s += std::to_string(end);
  s += close;
  return s;
}

struct Range {
  uint64_t begin, end;
  const std::string* name;
};

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

bool SafetensorsFile::contains(const void* p) const {
  const auto a = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(map_);
  return map_ != nullptr && a >= base && a < base + size_;
}

std::size_t SafetensorsFile::offset_of(const void* p) const {
  return static_cast<std::size_t>(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(map_));
}

void SafetensorsFile::release_pages(std::size_t offset, std::size_t n) const {
  if (map_ == nullptr || offset >= size_) return;
  n = std::min(n, size_ - offset);
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  // Whole pages inside [offset, offset + n): the mapping starts on a page boundary.
  const std::size_t first = (offset + page - 1) / page * page, last = (offset + n) / page * page;
  if (last > first) ::madvise(static_cast<uint8_t*>(map_) + first, last - first, MADV_DONTNEED);
  if (fd_ >= 0 && n > 0)
    ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(n), POSIX_FADV_DONTNEED);
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) throw Error(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    throw Error(path + ": file is " + std::to_string(file_size) +
                " bytes, shorter than the 8-byte safetensors header length");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (map == MAP_FAILED) throw Error(path + ": mmap failed: " + std::strerror(errno));
  f->map_ = map;  // unmapped by the destructor from here on, also when we throw below
  f->size_ = file_size;
  f->fd_ = fd.fd;  // closed by the destructor
  fd.fd = -1;
  const auto* base = static_cast<const uint8_t*>(map);

  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t{base[i]} << (8 * i);
  if (header_len > kMaxHeaderBytes) {
    throw Error(path + ": header length " + std::to_string(header_len) +
                " is absurdly large (limit " + std::to_string(kMaxHeaderBytes) +
                "); not a safetensors file?");
  }
  if (header_len > file_size - 8) {
    throw Error(path + ": header length " + std::to_string(header_len) +
                " extends past the end of the file (" + std::to_string(file_size) +
                " bytes); the file is truncated or not a safetensors file");
  }
  const PlainJson header =
      parse_plain_json(std::string(reinterpret_cast<const char*>(base + 8), header_len), path);
  if (!header.is_object()) {
    throw Error(path + ": safetensors header is a JSON " + std::string(header.type_name()) +
                ", expected an object");
  }

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  std::vector<Range> ranges;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(path + ": __metadata__ is not a JSON object");
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string()) {
          throw Error(path + ": __metadata__ value for key " + k + " is a " +
                      std::string(mv.type_name()) + ", expected a string");
        }
        f->metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor " + name + ": ";
    if (!v.is_object()) throw Error(where + "entry is not a JSON object");
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!v.contains(key)) throw Error(where + "missing \"" + key + "\"");
    }
    TensorInfo t;
    t.name = name;
    t.file = path;

    const PlainJson& dt = v.at("dtype");
    if (!dt.is_string()) throw Error(where + "dtype is not a string");
    if (!parse_dtype(dt.get<std::string>(), &t.dtype)) {
      throw Error(where + "dtype " + dt.get<std::string>() + " is not supported (supported: " +
                  supported_dtypes() + ")");
    }

    const PlainJson& shape = v.at("shape");
    if (!shape.is_array()) throw Error(where + "shape is not an array");
    for (const PlainJson& d : shape) {
      if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0) {
        throw Error(where + "shape has a negative dimension " + std::to_string(d.get<int64_t>()));
      }
      uint64_t dim = 0;
      if (!json_u64(d, &dim)) throw Error(where + "shape has a non-integer dimension");
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw Error(where + "shape dimension " + std::to_string(dim) + " is too large");
      }
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    std::size_t expected = 0;
    if (!checked_nbytes(t.dtype, t.shape, &expected)) {
      throw Error(where + "shape " + t.shape_string() + " overflows (element count too large)");
    }

    const PlainJson& offs = v.at("data_offsets");
    uint64_t begin = 0;
    uint64_t end = 0;
    if (!offs.is_array() || offs.size() != 2 || !json_u64(offs[0], &begin) ||
        !json_u64(offs[1], &end)) {
      throw Error(where + "data_offsets must be [begin, end] with non-negative integers");
    }
    const std::string offs_text = range_text(begin, end, "]");
    if (begin > end) throw Error(where + "data_offsets " + offs_text + " has begin > end");
    if (end > data_size) {
      throw Error(where + "data_offsets " + offs_text + " extend past the end of the data (" +
                  std::to_string(data_size) + " bytes); the file is truncated");
    }
    if (end - begin != expected) {
      throw Error(where + "data_offsets " + offs_text + " hold " + std::to_string(end - begin) +
                  " bytes but shape " + t.shape_string() + " of " + dtype_name(t.dtype) +
                  " needs " + std::to_string(expected));
    }
    t.nbytes = expected;
    t.data = base + data_start + begin;
    auto [it, inserted] = f->tensors_.emplace(name, std::move(t));
    if (!inserted) throw Error(where + "listed twice");  // unreachable with a JSON object
    if (end > begin) ranges.push_back({begin, end, &it->first});
  }

  // Non-empty ranges must be disjoint: sorted by begin, each starts at or after the
  // previous one's end.
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      throw Error(path + ": tensors " + *ranges[i - 1].name + " " +
                  range_text(ranges[i - 1].begin, ranges[i - 1].end, ")") + " and " +
                  *ranges[i].name + " " + range_text(ranges[i].begin, ranges[i].end, ")") +
                  " overlap");
    }
  }
  return f;
}

}  // namespace nemotron::model
