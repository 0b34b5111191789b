#include "runtime/prefix_store.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "util/error.h"
#include "util/json.h"

namespace nemotron::runtime {
namespace {

constexpr char kMagic[8] = {'N', 'M', 'T', 'P', 'F', 'X', '0', '2'};
constexpr char kMagicNoRow[8] = {'N', 'M', 'T', 'P', 'F', 'X', '0', '1'};  // before the head row

uint64_t mix(uint64_t h, const void* p, std::size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

namespace fs = std::filesystem;

std::vector<fs::path> prefix_files(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("prefix-", 0) == 0 && e.path().extension() == ".bin") files.push_back(e.path());
  }
  // prefix-<k>.bin by k.
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return std::stoll(a.stem().string().substr(7)) < std::stoll(b.stem().string().substr(7));
  });
  return files;
}

}  // namespace

uint64_t model_fingerprint(const model::Model& m) {
  uint64_t h = 0xcbf29ce484222325ull;
  const std::string config = read_file((fs::path(m.checkpoint.dir()) / "config.json").string());
  h = mix(h, config.data(), config.size());
  for (const auto& [name, t] : m.checkpoint.all()) {
    h = mix(h, name.data(), name.size());
    h = mix(h, &t->dtype, sizeof t->dtype);
    h = mix(h, t->shape.data(), t->shape.size() * sizeof(int64_t));
    h = mix(h, &t->nbytes, sizeof t->nbytes);
    h = mix(h, t->data, std::min<std::size_t>(t->nbytes, 64));
  }
  return h;
}

int save_prefixes(const std::string& dir, uint64_t fingerprint, const PrefixCache& cache,
                  const model::Backend& backend, const std::map<uint64_t, std::vector<float>>* head_rows) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the prefix-cache directory: " + ec.message());
  for (const auto& f : prefix_files(dir)) fs::remove(f, ec);
  int k = 0;
  for (const auto& e : cache.entries()) {
    const std::string path = (fs::path(dir) / ("prefix-" + std::to_string(k) + ".bin")).string();
    const std::vector<uint8_t> snap = backend.export_snapshot(e.id);
    const int64_t n = static_cast<int64_t>(e.ids->size()), m = static_cast<int64_t>(snap.size());
    std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(&fingerprint), 8);
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(reinterpret_cast<const char*>(e.ids->data()), n * 4);
    out.write(reinterpret_cast<const char*>(&m), 8);
    out.write(reinterpret_cast<const char*>(snap.data()), m);
    const std::vector<float>* row = nullptr;
    if (head_rows) {
      const auto it = head_rows->find(e.id);
      if (it != head_rows->end()) row = &it->second;
    }
    const int64_t r = row ? static_cast<int64_t>(row->size()) : 0;
    out.write(reinterpret_cast<const char*>(&r), 8);
    if (row) out.write(reinterpret_cast<const char*>(row->data()), r * 4);
    out.close();
    if (!out) throw Error(path + ": cannot write the prefix-cache file");
    fs::rename(path + ".tmp", path, ec);
    if (ec) throw Error(path + ": cannot write the prefix-cache file: " + ec.message());
    ++k;
  }
  return k;
}

int load_prefixes(const std::string& dir, uint64_t fingerprint, PrefixCache& cache, model::Backend& backend,
                  uint64_t& next_id, std::ostream& log, std::map<uint64_t, std::vector<float>>* head_rows) {
  int loaded = 0;
  for (const auto& path : prefix_files(dir)) {
    try {
      std::ifstream in(path, std::ios::binary);
      char magic[8];
      uint64_t fp = 0;
      int64_t n = 0, m = 0;
      in.read(magic, 8);
      in.read(reinterpret_cast<char*>(&fp), 8);
      const bool has_row = in && std::memcmp(magic, kMagic, 8) == 0;
      if (!in || (!has_row && std::memcmp(magic, kMagicNoRow, 8) != 0)) throw Error("not a prefix-cache file");
      if (fp != fingerprint) throw Error("written for another model or checkpoint");
      in.read(reinterpret_cast<char*>(&n), 8);
      if (!in || n <= 0 || n > (int64_t{1} << 31)) throw Error("bad token count");
      std::vector<int32_t> ids(static_cast<std::size_t>(n));
      in.read(reinterpret_cast<char*>(ids.data()), n * 4);
      in.read(reinterpret_cast<char*>(&m), 8);
      if (!in || m < 0 || m > (int64_t{1} << 40)) throw Error("bad snapshot size");
      std::vector<uint8_t> snap(static_cast<std::size_t>(m));
      in.read(reinterpret_cast<char*>(snap.data()), m);
      std::vector<float> row;
      if (has_row) {
        int64_t r = 0;
        in.read(reinterpret_cast<char*>(&r), 8);
        if (!in || (r != 0 && r != backend.model().config.hidden_size)) throw Error("bad head row size");
        row.resize(static_cast<std::size_t>(r));
        in.read(reinterpret_cast<char*>(row.data()), r * 4);
      }
      if (!in || in.peek() != std::char_traits<char>::eof()) throw Error("truncated or trailing bytes");
      const uint64_t id = next_id++;
      // Registered first, evicting (and dropping) older entries until it fits the budget, so
      // that a backend with a bounded snapshot pool (CUDA; the budget is at most its capacity)
      // has the room when the bytes are imported; newer files win over older ones.
      std::vector<uint64_t> evicted;
      if (!cache.insert(ids.data(), n, id, backend.snapshot_bytes(n), evicted)) continue;
      for (uint64_t e : evicted) {
        backend.drop_snapshot(e);
        if (head_rows) head_rows->erase(e);
      }
      try {
        backend.import_snapshot(id, snap);  // throws for bytes of another shape
      } catch (...) {
        cache.remove(id);
        throw;
      }
      if (head_rows && !row.empty()) (*head_rows)[id] = std::move(row);
      ++loaded;
    } catch (const std::exception& e) {
      log << path.string() << ": skipped (" << e.what() << ")\n";
    }
  }
  return loaded;
}

}  // namespace nemotron::runtime
