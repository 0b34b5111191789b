// The safetensors reader (model/checkpoint/safetensors_read.cpp) and the sharded checkpoint
// index (safetensors_checkpoint.cpp).
//
// Input, by its first byte:
//   '{'  a header JSON: the file is its u64 length, the JSON, then 4096 data bytes;
//   'I'  the rest is model.safetensors.index.json of a directory holding two small valid
//        shards (a.safetensors: tensors a, b; b.safetensors: c) -> Checkpoint::open;
//   else the whole .safetensors file, as is.
// Whatever opens must describe tensors that lie inside the mapping with the bytes their
// shape and dtype need; everything else must be a nemotron::Error.
#include <cstring>
#include <filesystem>

#include "fuzz_common.h"
#include "model/checkpoint/safetensors.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;

namespace {

std::string header_file(const std::string& json) {
  std::string f(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) f[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return f + json + std::string(4096, '\x5a');
}

unsigned check_tensor(const TensorInfo& t, const uint8_t* base, std::size_t size) {
  std::size_t expected = 0;
  FUZZ_CHECK(checked_nbytes(t.dtype, t.shape, &expected), "%s", t.name.c_str());
  FUZZ_CHECK(expected == t.nbytes, "%s", t.name.c_str());
  FUZZ_CHECK(t.data >= base && t.data <= base + size && t.nbytes <= static_cast<std::size_t>(base + size - t.data),
             "%s", t.name.c_str());
  (void)t.numel();
  (void)t.shape_string();
  (void)dtype_name(t.dtype);
  unsigned sum = 0;
  if (t.nbytes > 0) sum = t.data[0] + t.data[t.nbytes - 1];  // reads the range's ends
  return sum;
}

void check_file(const SafetensorsFile& f) {
  for (const auto& [name, t] : f.tensors()) {
    FUZZ_CHECK(name == t.name);
    check_tensor(t, f.mapping(), f.file_size());
  }
}

const std::string& shard_dir() {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_dir() + "/ckpt";
    std::filesystem::create_directories(d);
    write_safetensors(d + "/a.safetensors", {make_f32_tensor("a", {2}, {1, 2}), make_f32_tensor("b", {1, 1}, {3})});
    write_safetensors(d + "/b.safetensors", {make_f32_tensor("c", {3}, {4, 5, 6})});
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  try {
    if (!input.empty() && input[0] == 'I') {
      const std::string& dir = shard_dir();
      fuzz::write_file(dir + "/model.safetensors.index.json", input.substr(1));
      const Checkpoint ck = Checkpoint::open(dir);
      std::size_t total = 0;
      for (const auto& [name, t] : ck.all()) {
        FUZZ_CHECK(ck.find(name) == t);
        total += t->nbytes;
      }
      FUZZ_CHECK(total == ck.total_bytes());
      return 0;
    }
    const std::string file = !input.empty() && input[0] == '{' ? header_file(input) : input;
    const std::string path = fuzz::scratch_dir() + "/model.safetensors";
    fuzz::write_file(path, file);
    const auto f = SafetensorsFile::open(path);
    FUZZ_CHECK(f->file_size() == file.size());
    FUZZ_CHECK(std::memcmp(f->mapping(), file.data(), file.size()) == 0);
    check_file(*f);
  } catch (const Error&) {
  }
  return 0;
}
