// Streaming safetensors writer of `synth`: shard assignment, headers written first (all
// sizes are known from the plan), then each tensor generated and written chunk by chunk
// while the previous chunk is being written by a second thread.
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <regex>

#include "model/convert/synth_internal.h"
#include "util/error.h"

namespace nemotron::model::synth {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kChunk = std::size_t{64} << 20;  // bytes generated per write

struct Shard {
  std::string file;                       // file name inside out_dir
  std::vector<const TensorSpec*> tensors;  // sorted by name = data order
  uint64_t data_bytes = 0;
};

std::string shard_name(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i, n);
  return buf;
}

// Greedy split in layout order (a module's tensors stay together): a new shard starts when
// the next tensor would push the current one past `limit` bytes.
std::vector<Shard> assign_shards(const Plan& plan, double shard_gb) {
  const double limit = shard_gb * 1e9;
  std::vector<Shard> shards;
  if (static_cast<double>(plan.total_bytes) <= limit) {
    shards.push_back({"model.safetensors", {}, 0});
    for (const auto& t : plan.tensors) shards[0].tensors.push_back(&t);
  } else {
    shards.emplace_back();
    for (const auto& t : plan.tensors) {
      Shard& cur = shards.back();
      if (!cur.tensors.empty() && static_cast<double>(cur.data_bytes + t.nbytes) > limit) shards.emplace_back();
      shards.back().tensors.push_back(&t);
      shards.back().data_bytes += t.nbytes;
    }
    const int n = static_cast<int>(shards.size());
    if (n > 99999) throw Error("synth: --shard-gb " + std::to_string(shard_gb) + " gives more than 99999 shards");
    for (int i = 0; i < n; ++i) shards[static_cast<std::size_t>(i)].file = shard_name(i + 1, n);
  }
  for (auto& s : shards) {
    std::sort(s.tensors.begin(), s.tensors.end(),
              [](const TensorSpec* a, const TensorSpec* b) { return a->name < b->name; });
    s.data_bytes = 0;
    for (const auto* t : s.tensors) s.data_bytes += t->nbytes;
  }
  return shards;
}

// u64 LE length N (a multiple of 8) + the JSON header padded with spaces to N bytes.
std::string header_bytes(const Shard& s) {
  std::string text = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t off = 0;
  for (const auto* t : s.tensors) {
    text += "," + safetensors_header_entry(t->name, t->dtype, t->shape, off, off + t->nbytes);
    off += t->nbytes;
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>(uint64_t{text.size()} >> (8 * i));
  return out + text;
}

void write_all(int fd, const uint8_t* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(path + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

bool is_synth_output(const std::string& name) {
  static const std::regex shard(R"(model-\d{5}-of-\d{5}\.safetensors)");
  return name == "model.safetensors" || name == "model.safetensors.index.json" || std::regex_match(name, shard);
}

class Progress {
 public:
  Progress(bool on, std::size_t tensors, uint64_t bytes) : on_(on), tensors_(tensors), bytes_(bytes) {}
  void update(std::size_t tensors_done, uint64_t bytes_done, bool final) {
    if (!on_) return;
    const auto now = Clock::now();
    if (!final && now - last_ < std::chrono::seconds(1)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "synth: %zu/%zu tensors, %.2f/%.2f GB, %.2f GB/s%s\n", tensors_done, tensors_,
                 static_cast<double>(bytes_done) / 1e9, static_cast<double>(bytes_) / 1e9,
                 secs > 0 ? static_cast<double>(bytes_done) / 1e9 / secs : 0.0, final ? " (done)" : "");
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  bool on_;
  std::size_t tensors_;
  uint64_t bytes_;
  Clock::time_point start_ = Clock::now(), last_ = start_;
};

// Writes one shard: header, then tensor bytes packed into kChunk buffers; buffer k+1 is
// generated while buffer k is written.
void write_shard(const Shard& shard, const std::string& path, Generator& gen, Progress& progress,
                 std::size_t& tensors_done, uint64_t& bytes_done) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create " + tmp + ": " + std::strerror(errno));
  // Buffers of kChunk bytes (less for a small shard); a multiple of every item size (8).
  const std::size_t cap = static_cast<std::size_t>(std::min<uint64_t>(kChunk, (shard.data_bytes + 7) / 8 * 8 + 8));
  std::vector<uint8_t> bufs[2];
  bufs[0].resize(cap);
  bufs[1].resize(cap);
  std::future<void> pending;
  try {
    const std::string head = header_bytes(shard);
    write_all(fd, reinterpret_cast<const uint8_t*>(head.data()), head.size(), path);
    int cur = 0;
    std::size_t fill = 0;
    auto flush = [&] {
      if (pending.valid()) pending.get();
      const uint8_t* p = bufs[cur].data();
      const std::size_t n = fill;
      pending = std::async(std::launch::async, [fd, p, n, &path] { write_all(fd, p, n, path); });
      bytes_done += n;
      cur ^= 1;
      fill = 0;
      progress.update(tensors_done, bytes_done, false);
    };
    for (const TensorSpec* t : shard.tensors) {
      const std::size_t item = Generator::item_bytes(*t);
      std::size_t off = 0;
      while (off < t->nbytes) {
        const std::size_t room = (cap - fill) / item * item;
        if (room == 0) { flush(); continue; }
        const std::size_t n = std::min(room, t->nbytes - off);
        gen.generate(*t, off, n, bufs[cur].data() + fill);
        off += n;
        fill += n;
      }
      ++tensors_done;
    }
    if (fill > 0) flush();
    if (pending.valid()) pending.get();
  } catch (...) {
    if (pending.valid()) pending.wait();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error(path + ": write failed: " + std::strerror(e));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot rename " + tmp + " into place: " + ec.message());
  }
}

}  // namespace

Result synthesize(const Options& o) {
  if (!(o.shard_gb > 0)) throw Error("synth: --shard-gb must be positive");
  Config config;
  const QuantConfig quant = write_config_files(o, &config);
  const Plan plan = plan_checkpoint(config, quant);
  const std::vector<Shard> shards = assign_shards(plan, o.shard_gb);

  // Room check before anything is replaced: new files vs free space plus the stale outputs.
  uint64_t needed = 0, reclaimable = 0;
  for (const auto& s : shards) needed += header_bytes(s).size() + s.data_bytes;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(o.out_dir)) {
    if (e.is_regular_file() && is_synth_output(e.path().filename().string())) {
      stale.push_back(e.path());
      reclaimable += e.file_size();
    }
  }
  struct statvfs vfs {};
  if (::statvfs(o.out_dir.c_str(), &vfs) == 0) {
    const uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (avail + reclaimable < needed)
      throw Error("synth: " + o.out_dir + " has " + std::to_string((avail + reclaimable) / 1000000) +
                  " MB free (counting the outputs this run replaces) but the checkpoint needs " +
                  std::to_string(needed / 1000000) + " MB");
  }
  for (const auto& p : stale) fs::remove(p);

  if (o.progress)
    std::fprintf(stderr, "synth: %s -> %s: %zu tensors, %.3f GB in %zu file(s), quantization %s, seed %llu\n",
                 o.config_path.c_str(), o.out_dir.c_str(), plan.tensors.size(),
                 static_cast<double>(plan.total_bytes) / 1e9, shards.size(),
                 quant.quant_algo.empty() ? "none" : quant.quant_algo.c_str(),
                 static_cast<unsigned long long>(o.seed));
  Generator gen(o.seed, plan);
  Progress progress(o.progress, plan.tensors.size(), plan.total_bytes);
  std::size_t tensors_done = 0;
  uint64_t bytes_done = 0;
  for (const auto& s : shards)
    write_shard(s, (fs::path(o.out_dir) / s.file).string(), gen, progress, tensors_done, bytes_done);

  if (shards.size() > 1) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& s : shards)
      for (const auto* t : s.tensors) entries.emplace_back(t->name, s.file);
    std::sort(entries.begin(), entries.end());
    // Written entry by entry in json.dump(indent=2)'s format: an ordered Json object of
    // 10^5 keys (Super) would take quadratic time to build.
    std::string text = "{\n  \"metadata\": {\n    \"total_size\": " + std::to_string(plan.total_bytes) +
                       "\n  },\n  \"weight_map\": {\n";
    for (std::size_t i = 0; i < entries.size(); ++i) {
      text += "    " + python_json(Json(entries[i].first)) + ": " + python_json(Json(entries[i].second)) +
              (i + 1 < entries.size() ? ",\n" : "\n");
    }
    text += "  }\n}\n";
    write_text_file((fs::path(o.out_dir) / "model.safetensors.index.json").string(), text);
  }
  progress.update(tensors_done, bytes_done, true);
  Result r;
  r.tensors = plan.tensors.size();
  r.bytes = plan.total_bytes;
  r.shards = static_cast<int>(shards.size());
  r.seconds = progress.seconds();
  return r;
}

}  // namespace nemotron::model::synth
