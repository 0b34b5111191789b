// Checkpoint: the set of .safetensors files that make up a model directory (which files,
// see safetensors.h) and one name -> TensorInfo index over all of them.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <set>

#include "model/checkpoint/safetensors.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::model {
namespace {

namespace fs = std::filesystem;

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// mtp*.safetensors files directly in `dir`, sorted by name.
std::vector<std::string> mtp_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw Error(dir.string() + ": cannot list directory: " + ec.message());
  for (const auto& e : it) {
    const std::string name = e.path().filename().string();
    const std::string suffix = ".safetensors";
    if (name.size() > suffix.size() && name.rfind("mtp", 0) == 0 &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        is_file(e.path())) {
      out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Shard file names from the index's weight_map: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  const PlainJson index = parse_plain_json(read_file(index_path), index_path);
  if (!index.is_object() || !index.contains("weight_map")) {
    throw Error(index_path + ": missing \"weight_map\"");
  }
  const PlainJson& wm = index.at("weight_map");
  if (!wm.is_object()) throw Error(index_path + ": weight_map is not a JSON object");
  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : wm.items()) {
    if (!shard.is_string()) {
      throw Error(index_path + ": weight_map entry for tensor " + tensor +
                  " is not a file name string");
    }
    const std::string name = shard.get<std::string>();
    const fs::path p(name);
    bool bad = name.empty() || p.is_absolute();
    for (const auto& part : p) bad = bad || part == "..";
    if (bad) {
      throw Error(index_path + ": weight_map entry for tensor " + tensor + " names shard \"" +
                  name + "\", which is not a file name inside the checkpoint directory");
    }
    out[tensor] = p.lexically_normal().string();
  }
  return out;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint ck;
  ck.dir_ = dir;
  const fs::path root(dir);
  std::error_code ec;
  const auto st = fs::status(root, ec);
  if (ec || !fs::exists(st)) throw Error(dir + ": no such file or directory");

  // Paths of the files to open, in opening order.
  std::vector<std::string> paths;
  std::map<std::string, std::string> weight_map;
  std::string index_path;
  if (fs::is_regular_file(st)) {
    paths.push_back(dir);
  } else if (fs::is_directory(st)) {
    const fs::path index = root / "model.safetensors.index.json";
    const fs::path single = root / "model.safetensors";
    std::set<std::string> names;
    if (is_file(index)) {
      index_path = index.string();
      weight_map = read_weight_map(index_path);
      for (const auto& [tensor, shard] : weight_map) {
        if (!names.insert(shard).second) continue;
        if (!is_file(root / shard)) {
          throw Error(index_path + ": shard " + shard + " (holding tensor " + tensor +
                      ") does not exist in " + dir);
        }
      }
    } else if (is_file(single)) {
      names.insert("model.safetensors");
    } else {
      throw Error("no model.safetensors or model.safetensors.index.json in " + dir);
    }
    for (const auto& m : mtp_files(root)) names.insert(m);
    for (const auto& n : names) paths.push_back((root / n).string());
  } else {
    throw Error(dir + ": not a file or directory");
  }

  std::map<std::string, const SafetensorsFile*> by_path;
  for (const auto& p : paths) {
    ck.files_.push_back(SafetensorsFile::open(p));
    const SafetensorsFile& f = *ck.files_.back();
    by_path[p] = &f;
    for (const auto& [name, info] : f.tensors()) {
      auto [it, inserted] = ck.index_.emplace(name, &info);
      if (!inserted) {
        throw Error("tensor " + name + " appears in both " + it->second->file + " and " + p);
      }
    }
  }
  for (const auto& [tensor, shard] : weight_map) {
    const SafetensorsFile* f = by_path.at((root / shard).string());
    if (f->tensors().count(tensor) == 0) {
      throw Error(index_path + ": tensor " + tensor + " is listed in shard " + shard + ", but " +
                  f->path() + " does not contain it");
    }
  }
  return ck;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorInfo& Checkpoint::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) throw Error("tensor " + name + " not found in checkpoint " + dir_);
  return *t;
}

void Checkpoint::release_pages(const void* data, std::size_t n) const {
  const auto begin = reinterpret_cast<uintptr_t>(data), end = begin + n;
  for (const auto& f : files_) {
    const auto base = reinterpret_cast<uintptr_t>(f->mapping());
    const uintptr_t b = std::max(begin, base), e = std::min(end, base + f->file_size());
    if (f->mapping() != nullptr && b < e) f->release_pages(b - base, e - b);
  }
}

void Checkpoint::release_pages() const {
  for (const auto& f : files_) f->release_pages();
}

std::size_t Checkpoint::total_bytes() const {
  std::size_t total = 0;
  for (const auto& [name, info] : index_) total += info->nbytes;
  return total;
}

}  // namespace nemotron::model
