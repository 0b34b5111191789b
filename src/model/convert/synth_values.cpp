// Bytes of synthetic tensors: master values encoded to BF16/F32/FP8/NVFP4, in parallel
// chunks. Every output byte depends only on (seed, tensor), never on the chunking.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "kernels/numeric.h"
#include "model/convert/synth_internal.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::model::synth {

using kernels::e4m3_to_float;
using kernels::float_to_bf16;
using kernels::float_to_e2m1;
using kernels::float_to_e4m3;

namespace {

constexpr int64_t kBatch = 4096;  // master values generated per inner step (multiple of 16)
constexpr uint8_t kE4M3One = 0x38;  // 1.0: the block scale ModelOpt gives all-zero blocks
constexpr int64_t kCacheMax = int64_t{64} << 20;  // master values kept between passes (256 MB)

bool quantized(Encoding e) {
  return e == Encoding::FP8Weight || e == Encoding::FP8Scale || e == Encoding::NVFP4Weight ||
         e == Encoding::NVFP4BlockScale || e == Encoding::NVFP4Scale2;
}

bool nvfp4(Encoding e) {
  return e == Encoding::NVFP4Weight || e == Encoding::NVFP4BlockScale || e == Encoding::NVFP4Scale2;
}

// Runs fn(first, count, values) over master values [begin, end) in batches of kBatch,
// in parallel; batches start at multiples of kBatch relative to `begin`.
template <typename Fn>
void for_master_batches(uint64_t seed, const TensorSpec& s, int64_t begin, int64_t end, Fn fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  const std::size_t batches = static_cast<std::size_t>((n + kBatch - 1) / kBatch);
  parallel_for(batches, [&](std::size_t b0, std::size_t b1) {
    std::vector<float> v(kBatch);
    for (std::size_t b = b0; b < b1; ++b) {
      const int64_t first = begin + static_cast<int64_t>(b) * kBatch;
      const int64_t count = std::min(kBatch, end - first);
      master_values(seed, s.master, s.law, first, first + count, v.data());
      fn(first, count, v.data());
    }
  }, 4);
}

void put_f32(float v, uint8_t* out) { std::memcpy(out, &v, 4); }

}  // namespace

// Quantization state of one module: the FP8 weight_scale, or the NVFP4 weight_scale_2 and
// the E4M3 block scales [out, in/16] (row-major, so block b covers elements 16b..16b+15).
// `cached`: the generator's cache holds this module's master values from the amax pass
// (tensors up to kCacheMax elements: every expert, not a quantized lm_head), so the weight
// pass needs no regeneration.
struct Generator::ModuleState {
  float scale = 1.0f;
  std::vector<uint8_t> block_scales;
  bool cached = false;
};

Generator::Generator(uint64_t seed, const Plan& plan) : seed_(seed) {
  for (const auto& s : plan.tensors)
    if (quantized(s.encoding)) ++uses_[s.module];
}

Generator::~Generator() = default;

std::size_t Generator::item_bytes(const TensorSpec& s) {
  switch (s.encoding) {
    case Encoding::BF16: return 2;
    case Encoding::F32: return 4;
    case Encoding::FP8Weight: return 1;
    case Encoding::NVFP4Weight: return 8;  // one 16-element block
    case Encoding::NVFP4BlockScale: return 1;
    default: return 4;                     // F32 scalars
  }
}

Generator::ModuleState& Generator::state(const TensorSpec& s) {
  // (A module whose weight is never generated would keep the cache; the layout has none.)
  auto it = states_.find(s.module);
  if (it != states_.end()) return *it->second;
  auto st = std::make_unique<ModuleState>();
  const int64_t numel = s.rows * s.cols;
  std::mutex mu;
  float amax = 0.0f;
  // The cache and the block-amax scratch keep their size between modules (no zero fill,
  // no page faults per module); one module owns the cache at a time.
  float* keep = nullptr;
  if (numel <= kCacheMax && cache_owner_.empty()) {
    if (cache_.size() < static_cast<std::size_t>(numel)) cache_.resize(static_cast<std::size_t>(numel));
    keep = cache_.data();
    cache_owner_ = s.module;
    st->cached = true;
  }
  if (!nvfp4(s.encoding)) {
    for_master_batches(seed_, s, 0, numel, [&](int64_t first, int64_t count, const float* v) {
      if (keep) std::memcpy(keep + first, v, static_cast<std::size_t>(count) * 4);
      float m = 0.0f;
      for (int64_t i = 0; i < count; ++i) m = std::max(m, std::fabs(v[i]));
      std::lock_guard<std::mutex> lock(mu);
      amax = std::max(amax, m);
    });
    st->scale = amax > 0.0f ? amax / 448.0f : 1.0f;
  } else {
    const int64_t nblocks = numel / 16;
    if (block_amax_.size() < static_cast<std::size_t>(nblocks)) block_amax_.resize(static_cast<std::size_t>(nblocks));
    float* block_amax = block_amax_.data();
    for_master_batches(seed_, s, 0, numel, [&](int64_t first, int64_t count, const float* v) {
      if (keep) std::memcpy(keep + first, v, static_cast<std::size_t>(count) * 4);
      float m = 0.0f;
      for (int64_t b = 0; b < count / 16; ++b) {
        float bm = 0.0f;
        for (int k = 0; k < 16; ++k) bm = std::max(bm, std::fabs(v[16 * b + k]));
        block_amax[first / 16 + b] = bm;
        m = std::max(m, bm);
      }
      std::lock_guard<std::mutex> lock(mu);
      amax = std::max(amax, m);
    });
    st->scale = amax > 0.0f ? amax / (6.0f * 448.0f) : 1.0f;
    const float s2 = st->scale;
    st->block_scales.resize(static_cast<std::size_t>(nblocks));
    uint8_t* scales = st->block_scales.data();
    parallel_for(static_cast<std::size_t>(nblocks), [&](std::size_t b0, std::size_t b1) {
      for (std::size_t b = b0; b < b1; ++b)
        scales[b] = block_amax[b] > 0.0f ? float_to_e4m3(block_amax[b] / (6.0f * s2)) : kE4M3One;
    }, 16384);
  }
  return *states_.emplace(s.module, std::move(st)).first->second;
}

void Generator::done_with(const TensorSpec& s) {
  if (!quantized(s.encoding)) return;
  auto it = uses_.find(s.module);
  if (it != uses_.end() && --it->second == 0) {
    states_.erase(s.module);
    uses_.erase(it);
  }
}

void Generator::generate(const TensorSpec& s, std::size_t offset, std::size_t n, uint8_t* out) {
  if (offset + n > s.nbytes || offset % item_bytes(s) != 0 || n % item_bytes(s) != 0)
    throw Error("synth: internal error: bad byte range for " + s.name);
  const int64_t begin = static_cast<int64_t>(offset), count = static_cast<int64_t>(n);
  switch (s.encoding) {
    case Encoding::BF16:
      for_master_batches(seed_, s, begin / 2, (begin + count) / 2, [&](int64_t first, int64_t k, const float* v) {
        uint8_t* o = out + 2 * (first - begin / 2);
        for (int64_t i = 0; i < k; ++i) {
          const uint16_t b = float_to_bf16(v[i]);
          std::memcpy(o + 2 * i, &b, 2);
        }
      });
      break;
    case Encoding::F32:
      for_master_batches(seed_, s, begin / 4, (begin + count) / 4, [&](int64_t first, int64_t k, const float* v) {
        std::memcpy(out + 4 * (first - begin / 4), v, static_cast<std::size_t>(4 * k));
      });
      break;
    case Encoding::FP8Weight: {
      ModuleState& st = state(s);
      const float scale = st.scale;
      weight_batches(s, st, begin, begin + count, [&](int64_t first, int64_t k, const float* v) {
        uint8_t* o = out + (first - begin);
        for (int64_t i = 0; i < k; ++i) o[i] = float_to_e4m3(v[i] / scale);
      });
      break;
    }
    case Encoding::NVFP4Weight: {
      ModuleState& st = state(s);
      const float s2 = st.scale;
      // Byte j of the weight holds elements 2j (low nibble) and 2j+1: bytes [offset, offset+n)
      // are elements [2*offset, 2*(offset+n)), whole blocks since offset is a multiple of 8.
      weight_batches(s, st, 2 * begin, 2 * (begin + count), [&](int64_t first, int64_t k, const float* v) {
        uint8_t* o = out + (first / 2 - begin);
        for (int64_t b = 0; b < k / 16; ++b) {
          const float bs = e4m3_to_float(st.block_scales[static_cast<std::size_t>(first / 16 + b)]);
          const float denom = bs * s2;
          uint8_t codes[16];
          for (int j = 0; j < 16; ++j) codes[j] = float_to_e2m1(v[16 * b + j] / denom);
          for (int j = 0; j < 8; ++j)
            o[8 * b + j] = denom > 0.0f ? static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4)) : 0;
        }
      });
      break;
    }
    case Encoding::NVFP4BlockScale:
      std::memcpy(out, state(s).block_scales.data() + offset, n);
      break;
    case Encoding::FP8Scale:
    case Encoding::NVFP4Scale2:
      put_f32(state(s).scale, out);
      break;
    case Encoding::InputScale:
      put_f32(s.value, out);
      break;
  }
  if (offset + n == s.nbytes) {
    if (s.encoding == Encoding::FP8Weight || s.encoding == Encoding::NVFP4Weight) {
      auto it = states_.find(s.module);
      if (it != states_.end() && it->second->cached) {
        it->second->cached = false;
        cache_owner_.clear();
      }
    }
    done_with(s);
  }
}

// Master values [begin, end) of a quantized weight: from the cache of the amax pass when
// it holds them, else regenerated. Same batching (and values) either way.
template <typename Fn>
void Generator::weight_batches(const TensorSpec& s, const ModuleState& st, int64_t begin, int64_t end, Fn fn) {
  if (!st.cached) {
    for_master_batches(seed_, s, begin, end, fn);
    return;
  }
  const std::size_t batches = static_cast<std::size_t>((end - begin + kBatch - 1) / kBatch);
  parallel_for(batches, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b) {
      const int64_t first = begin + static_cast<int64_t>(b) * kBatch;
      fn(first, std::min(kBatch, end - first), cache_.data() + first);
    }
  }, 4);
}

}  // namespace nemotron::model::synth
