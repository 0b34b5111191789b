#pragma once
// FP8 KV-cache test helpers (tests/common): checkpoints with ModelOpt k/v scales written into
// a copy of a fixture, and the scales a calibration would give (amax / 448 of each attention
// layer's K and V rows over a sequence, from a CPU fp32 run).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "model/checkpoint/safetensors.h"
#include "model/checkpoint/weights.h"
#include "model/cpu/cpu_forward.h"
#include "temp_dir.h"
#include "util/json.h"

namespace nemotron::testing {

// A copy of checkpoint directory `src` in `dst` with the F32 scalars `scales` added: written into
// model.safetensors (single file) or a new shard named in the index.
inline void copy_with_scales(const std::string& src, const TempDir& dst, const std::map<std::string, float>& scales) {
  namespace fs = std::filesystem;
  std::vector<model::TensorData> extra;
  for (const auto& [name, v] : scales) {
    model::TensorData t{name, model::DType::F32, {}, std::vector<uint8_t>(4)};
    std::memcpy(t.bytes.data(), &v, 4);
    extra.push_back(t);
  }
  for (const auto& e : fs::directory_iterator(src))
    if (e.is_regular_file() && e.path().filename() != "model.safetensors")
      fs::copy_file(e.path(), dst.path() / e.path().filename());
  const fs::path index = dst.path() / "model.safetensors.index.json";
  if (fs::exists(index)) {
    Json j = read_json_file(index.string());
    for (const auto& t : extra) j["weight_map"][t.name] = "model-kv-scales.safetensors";
    std::ofstream(index.string()) << j.dump(2);
    model::write_safetensors(dst.sub("model-kv-scales.safetensors"), extra);
    return;
  }
  auto f = model::SafetensorsFile::open(src + "/model.safetensors");
  std::vector<model::TensorData> ts;
  for (const auto& [name, t] : f->tensors())
    ts.push_back({name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
  ts.insert(ts.end(), extra.begin(), extra.end());
  model::write_safetensors(dst.sub("model.safetensors"), ts);
}

// ModelOpt-style calibration: `factor` * amax / 448 of every attention layer's K and V rows in
// `state` (blocks of `blocks`, trunk or MTP head), under the canonical names.
inline void calibrate_kv_scales(const std::vector<model::BlockWeights>& blocks, const model::SequenceState& state,
                                std::map<std::string, float>& scales, float factor = 1.0f) {
  auto amax = [](const std::vector<float>& v) {
    float m = 0;
    for (float x : v) m = std::max(m, std::fabs(x));
    return m;
  };
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    if (blocks[b].kind != model::LayerKind::Attention) continue;
    scales[blocks[b].prefix + "mixer.k_proj.k_scale"] = factor * amax(state.blocks[b].k) / 448.0f;
    scales[blocks[b].prefix + "mixer.v_proj.v_scale"] = factor * amax(state.blocks[b].v) / 448.0f;
  }
}

}  // namespace nemotron::testing
