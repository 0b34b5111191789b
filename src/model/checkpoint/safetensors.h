#pragma once
// Safetensors checkpoints: reading (mmap, single file or sharded with
// model.safetensors.index.json) and writing.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the data section; offsets are relative to its start.
// Every tensor is validated when the file is opened: known dtype, shape product times dtype
// size equals the byte range, range inside the file, no overlaps. Errors are
// nemotron::Error naming the file and the tensor.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nemotron::model {

enum class DType { BF16, F16, F32, F8_E4M3, U8, I64 };

const char* dtype_name(DType dtype);           // "BF16", "F8_E4M3", ...

// One entry of a safetensors header, `"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]}`
// (the safetensors library's key order). Headers are built entry by entry: an ordered Json
// object of 10^5 keys would take quadratic time. Throws nlohmann's exception on invalid UTF-8.
std::string safetensors_header_entry(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                     uint64_t begin, uint64_t end);
std::size_t dtype_size(DType dtype);           // bytes per element
bool parse_dtype(const std::string& name, DType* out);  // false for unsupported names

// Byte size of a tensor: product of `shape` times dtype_size. Returns false (leaving *out
// untouched) when a dim is negative or the product overflows size_t / int64.
bool checked_nbytes(DType dtype, const std::vector<int64_t>& shape, std::size_t* out);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;      // [] for a scalar
  const uint8_t* data = nullptr;   // into the file's mapping; valid while the file is open
  std::size_t nbytes = 0;
  std::string file;                // path of the file that holds it (for error messages)
  int64_t numel() const;             // throws Error for a negative or overflowing shape
  std::string shape_string() const;  // "[10304, 2688]"
};

// One .safetensors file, memory-mapped read-only.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::size_t file_size() const { return size_; }

  // Page release (unified memory: the file's cached pages and a GPU's copy of the weights are
  // the same RAM). Drops the pages of bytes [offset, offset + n) of the file (clamped to it):
  // from this process's mapping (madvise MADV_DONTNEED) and from the page cache
  // (posix_fadvise POSIX_FADV_DONTNEED); only whole pages inside the range go. The mapping
  // stays valid: a later read faults the same bytes back in from the file. Best effort (the
  // kernel may keep pages; errors are ignored: the bytes never change).
  void release_pages(std::size_t offset, std::size_t n) const;
  void release_pages() const { release_pages(0, size_); }  // the whole file
  // Whether `p` points into this file's mapping, and its offset in the file if so.
  bool contains(const void* p) const;
  std::size_t offset_of(const void* p) const;
  const uint8_t* mapping() const { return static_cast<const uint8_t*>(map_); }  // file byte 0

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  int fd_ = -1;  // kept open for posix_fadvise
  std::size_t size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory. Which files are opened:
//  - with model.safetensors.index.json: every shard named in its weight_map (a tensor
//    listed there must be in the shard it names; a shard may hold extra, unlisted tensors,
//    which are indexed too), plus any mtp*.safetensors file not already a shard;
//  - without an index: model.safetensors plus any mtp*.safetensors file;
//  - every other file is ignored (test fixtures keep expected.safetensors next to the model).
// Neither model.safetensors nor the index present -> Error. A tensor present in two opened
// files -> Error "tensor X appears in both A and B". `dir` may also be the path of a single
// .safetensors file, which is then the only file opened; dir() returns the path as given.
// Copies share the open files; TensorInfo pointers stay valid while any copy lives.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  const TensorInfo& get(const std::string& name) const;   // throws Error naming the tensor
  const std::map<std::string, const TensorInfo*>& all() const { return index_; }
  std::size_t total_bytes() const;  // sum of tensor bytes

  // SafetensorsFile::release_pages for the part of [data, data + n) inside each opened file's
  // mapping (a TensorInfo::data range, or a run of them; any part outside every file is
  // ignored), or for every file. Tensors stay readable.
  void release_pages(const void* data, std::size_t n) const;
  void release_pages() const;

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
};

// A tensor to write. `bytes` holds exactly numel * dtype_size bytes.
struct TensorData {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Writes a .safetensors file (tensors sorted by name, header padded to 8 bytes).
void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Convenience for F32 outputs: shape and row-major values.
TensorData make_f32_tensor(const std::string& name, std::vector<int64_t> shape,
                           const std::vector<float>& values);

}  // namespace nemotron::model
