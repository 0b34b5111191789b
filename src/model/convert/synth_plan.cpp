// The tensor plan of a synthetic checkpoint (a TensorBinder that records the layout walk),
// the value laws of each parameter, and the counter-based master-value generator.
#include <cmath>
#include <set>

#include "model/convert/synth.h"
#include "model/checkpoint/weights.h"
#include "util/error.h"

namespace nemotron::model::synth {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) { return s.ends_with(suffix); }

// Linears that write into the residual stream get std 1/sqrt(in) / sqrt(2*num_layers), so
// the residual grows modestly through the stack; every other linear keeps N(0, 1/in).
// With a latent projection the routed experts' down_proj feeds fc2_latent_proj (which is
// the residual writer); without one it writes the residual itself.
Master linear_law(const Config& c, const std::string& module, int64_t in) {
  Master m;
  m.std = 1.0f / std::sqrt(static_cast<float>(in));
  const float residual = 1.0f / std::sqrt(2.0f * static_cast<float>(std::max(1, c.num_layers())));
  const bool expert_down = module.find(".experts.") != std::string::npos && ends_with(module, ".down_proj");
  if (ends_with(module, ".out_proj") || ends_with(module, ".o_proj") || ends_with(module, "fc2_latent_proj") ||
      ends_with(module, "shared_experts.down_proj") || (ends_with(module, "mixer.down_proj")) ||
      (expert_down && c.moe_latent_size == 0))
    m.std *= residual;
  if (ends_with(module, ".gate")) m.std *= 0.5f;  // router logits ~N(0, 1/4): soft, varied routing
  return m;
}

Master param_law(const std::string& name, const std::vector<int64_t>& shape) {
  Master m;
  if (ends_with(name, "A_log")) m.law = Law::ALog;                 // log(U[1, 16])
  else if (ends_with(name, "dt_bias")) m.law = Law::DtBias;        // softplus^-1(dt), dt log-uniform [1e-3, 1e-1]
  else if (ends_with(name, ".D")) { m.mean = 1.0f; m.std = 0.1f; }
  else if (ends_with(name, "conv1d.weight")) m.std = 1.0f / std::sqrt(static_cast<float>(shape.back()));
  else if (ends_with(name, "conv1d.bias")) m.std = 0.02f;
  else if (ends_with(name, "e_score_correction_bias")) m.std = 1e-3f;
  else { m.mean = 1.0f; m.std = 0.02f; }                          // RMSNorm weights
  return m;
}

std::size_t nbytes_of(DType dtype, const std::vector<int64_t>& shape, const std::string& name) {
  std::size_t n = 0;
  if (!checked_nbytes(dtype, shape, &n)) throw Error("synth: tensor " + name + " has an invalid shape");
  return n;
}

class PlanBinder final : public TensorBinder {
 public:
  PlanBinder(const Config& c, const QuantConfig& q, Plan& plan) : c_(c), q_(q), plan_(plan) {}

  Linear linear(const std::string& module, int64_t out, int64_t in, bool quantizable) override {
    Linear L;
    L.name = module;
    if (module == "lm_head" && c_.tie_word_embeddings) return L;  // the loader reuses the embeddings
    const WeightFormat f = quantizable ? q_.format_of(module) : WeightFormat::Dense;
    const std::string w = module + ".weight";
    const Master law = linear_law(c_, module, in);
    auto base = [&](const std::string& name, DType dt, std::vector<int64_t> shape, Encoding e) {
      TensorSpec s;
      s.name = name;
      s.dtype = dt;
      s.shape = std::move(shape);
      s.nbytes = nbytes_of(dt, s.shape, name);
      s.encoding = e;
      s.master = w;
      s.law = law;
      s.module = module;
      s.rows = out;
      s.cols = in;
      return s;
    };
    switch (f) {
      case WeightFormat::Dense:
        add(base(w, DType::BF16, {out, in}, Encoding::BF16));
        break;
      case WeightFormat::FP8:
        add(base(w, DType::F8_E4M3, {out, in}, Encoding::FP8Weight));
        add(base(module + ".weight_scale", DType::F32, {}, Encoding::FP8Scale));
        add(input_scale(base(module + ".input_scale", DType::F32, {}, Encoding::InputScale), 448.0f));
        break;
      case WeightFormat::NVFP4:
        if (in % 16 != 0)
          throw Error("synth: " + module + " cannot be NVFP4: in_features " + std::to_string(in) +
                      " is not a multiple of 16");
        add(base(w, DType::U8, {out, in / 2}, Encoding::NVFP4Weight));
        add(base(module + ".weight_scale", DType::F8_E4M3, {out, in / 16}, Encoding::NVFP4BlockScale));
        add(base(module + ".weight_scale_2", DType::F32, {}, Encoding::NVFP4Scale2));
        add(input_scale(base(module + ".input_scale", DType::F32, {}, Encoding::InputScale), 6.0f * 448.0f));
        break;
    }
    return L;
  }

  std::vector<float> param(const std::string& name, const std::vector<int64_t>& shape, bool f32_on_disk) override {
    TensorSpec s;
    s.name = name;
    s.dtype = f32_on_disk ? DType::F32 : DType::BF16;
    s.shape = shape;
    s.nbytes = nbytes_of(s.dtype, shape, name);
    s.encoding = f32_on_disk ? Encoding::F32 : Encoding::BF16;
    s.master = name;
    s.law = param_law(name, shape);
    s.rows = 1;
    s.cols = static_cast<int64_t>(s.nbytes / dtype_size(s.dtype));
    add(std::move(s));
    return {};
  }

  // FP8 KV-cache scales: written (canonical spelling, F32 []) when the quantization config asks
  // for an FP8 KV cache, as a calibration would give them for K / V rows of amax ~8.
  float kv_scale(const std::vector<std::string>& spellings) override {
    if (q_.kv_cache_quant_algo != "FP8") return 0.0f;
    TensorSpec s;
    s.name = spellings.front();
    s.dtype = DType::F32;
    s.nbytes = 4;
    s.encoding = Encoding::InputScale;
    s.value = kSynthKvScale;
    add(std::move(s));
    return kSynthKvScale;
  }

  kernels::LinearWeight embedding(const std::string& name, int64_t vocab, int64_t hidden) override {
    TensorSpec s;
    s.name = name;
    s.dtype = DType::BF16;
    s.shape = {vocab, hidden};
    s.nbytes = nbytes_of(s.dtype, s.shape, name);
    s.encoding = Encoding::BF16;
    s.master = name;
    s.law = Master{};  // N(0, 1): hidden states start at RMS ~1
    s.rows = vocab;
    s.cols = hidden;
    add(std::move(s));
    return {};
  }

 private:
  // Static activation scale as calibration would give it for activations of amax ~8.
  static TensorSpec input_scale(TensorSpec s, float range) {
    s.value = 8.0f / range;
    return s;
  }

  void add(TensorSpec s) {
    if (!names_.insert(s.name).second) throw Error("synth: the layout names tensor " + s.name + " twice");
    plan_.total_bytes += s.nbytes;
    plan_.tensors.push_back(std::move(s));
  }

  const Config& c_;
  const QuantConfig& q_;
  Plan& plan_;
  std::set<std::string> names_;
};

// SplitMix64 finalizer: a bijective 64-bit mix with full avalanche.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001B3ull;
  return h;
}

}  // namespace

Plan plan_checkpoint(const Config& config, const QuantConfig& quant) {
  Plan plan;
  PlanBinder binder(config, quant, plan);
  walk_layout(config, binder);
  return plan;
}

// Element i of a stream keyed k is mix64(k + (i+1) * golden): the SplitMix64 sequence,
// addressable at any index. Its four 16-bit lanes give uniforms for Irwin-Hall(4), whose
// sum (mean 2, variance 1/3) is standardized to z with mean 0 and variance 1.
void master_values(uint64_t seed, const std::string& master, const Master& law, int64_t begin, int64_t end,
                   float* out) {
  constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
  const uint64_t key = mix64(mix64(seed ^ 0x6E656D6F74726F6Eull) ^ fnv1a(master));
  constexpr float kInv16 = 1.0f / 65536.0f;
  const float kStd = std::sqrt(3.0f);
  auto hash = [&](int64_t i) { return mix64(key + static_cast<uint64_t>(i + 1) * kGolden); };
  auto uniform24 = [](uint64_t h) { return static_cast<float>(h >> 40) * (1.0f / 16777216.0f); };
  switch (law.law) {
    case Law::Normal:
      for (int64_t i = begin; i < end; ++i) {
        const uint64_t h = hash(i);
        // Lanes as (n + 0.5)/65536 in (0, 1); the sum of four is symmetric about 2.
        const float s = static_cast<float>((h & 0xFFFF) + ((h >> 16) & 0xFFFF) + ((h >> 32) & 0xFFFF) + (h >> 48)) +
                        2.0f;
        out[i - begin] = law.mean + law.std * ((s * kInv16 - 2.0f) * kStd);
      }
      break;
    case Law::ALog:
      for (int64_t i = begin; i < end; ++i) out[i - begin] = std::log(1.0f + 15.0f * uniform24(hash(i)));
      break;
    case Law::DtBias:
      for (int64_t i = begin; i < end; ++i) {
        const float dt = std::exp(std::log(1e-3f) + uniform24(hash(i)) * (std::log(1e-1f) - std::log(1e-3f)));
        out[i - begin] = dt + std::log(-std::expm1(-dt));  // softplus(dt_bias) = dt
      }
      break;
  }
}

}  // namespace nemotron::model::synth
