// The CUDA backend with 16-bit SSM state slots (BackendOptions::ssm_state, kernels/state_round.h)
// at the interface, against the CPU backend emulating the same storage:
//   - a prompt then 24 teacher-forced decode tokens (CudaModel in lockstep with the CPU forced to
//     the GPU's routing): the GPU's logits are about as close to the CPU emulation as the
//     fp32-state GPU is to the fp32 CPU, within kLogitRelTol, and agree at top-1 about as often;
//   - roll_back to every row of a 5-row verify chunk equals the shorter sequence (the replay
//     rounds where the step that kept the rows would have);
//   - a snapshot taken with one storage type is refused by a backend of another.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "cuda_model_test_util.h"
#include "cuda_state_test_util.h"
#include "kernels/state_round.h"
#include "model/backend.h"
#include "model/cuda/cuda_model.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using kernels::SsmStateFormat;
using kernels::StateDType;
using nemotron::testing::kLogitRelTol;
using nemotron::testing::kSelfRelTol;
using nemotron::testing::rel_err;
using nemotron::testing::state_model_path;
using nemotron::testing::state_prompt;

namespace {

std::unique_ptr<Backend> backend(const Model& m, const std::string& device, const SsmStateFormat& f,
                                 int64_t prefix = 0) {
  BackendOptions o;
  o.device = device;
  o.max_seqs = 2;
  o.max_step_tokens = 256;
  o.kv_tokens = 4096;
  o.max_spec_seqs = 2;
  o.max_spec_rows = 8;
  o.prefix_cache_bytes = device == "cuda" ? prefix : 0;
  o.ssm_state = f;
  return make_backend(m, o);
}

class CudaSsmState16 : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
    m_ = std::make_unique<Model>(Model::load(state_model_path(GetParam())));
  }
  const Model& m() const { return *m_; }
  std::unique_ptr<Model> m_;
};

// A prompt then `follow` one token at a time on a CudaModel with state format f, in lockstep
// with the CPU reference emulating f and forced to the GPU's routing (a random fixture's router
// near-ties break differently at rounding level, and a flipped route moves logits by their
// whole spread); returns GPU and CPU logits (the prompt's last row, then each token's).
struct Pair {
  std::vector<float> gpu, cpu;
};
Pair decode_lockstep(const Model& m, const SsmStateFormat& f, const std::vector<int32_t>& prompt,
                     const std::vector<int32_t>& follow, nemotron::testing::RouteStats& stats) {
  CudaModelOptions o;
  o.max_seqs = 2;
  o.max_step_tokens = 256;
  o.kv_tokens = 4096;
  o.verbose = false;
  o.ssm_state = f;
  CudaModel gpu(m, o);
  nemotron::testing::Lockstep ls(m, gpu);
  ls.set_ssm_state(f);
  const int slot = gpu.acquire_slot();
  auto st = ls.cpu().new_state();
  Pair out;
  auto o0 = ls.forward(slot, st, prompt.data(), static_cast<int64_t>(prompt.size()), false);
  out.gpu = std::move(o0.gpu);
  out.cpu = std::move(o0.cpu);
  for (int32_t t : follow) {
    auto r = ls.forward(slot, st, &t, 1, false);
    out.gpu.insert(out.gpu.end(), r.gpu.begin(), r.gpu.end());
    out.cpu.insert(out.cpu.end(), r.cpu.begin(), r.cpu.end());
  }
  gpu.release_slot(slot);
  stats.rows += ls.stats.rows;
  stats.flips += ls.stats.flips;
  stats.illegit += ls.stats.illegit;
  stats.max_gap = std::max(stats.max_gap, ls.stats.max_gap);
  ls.stats.expect_legitimate("16-bit state decode");
  return out;
}

TEST_P(CudaSsmState16, DecodeMatchesTheCpuEmulation) {
  const int64_t V = m().config.vocab_size;
  const auto prompt = state_prompt(GetParam(), 1);
  std::vector<int32_t> follow;
  for (int i = 0; i < 24; ++i) follow.push_back(static_cast<int32_t>((37 * i + 11) % (V - 10) + 5));
  nemotron::testing::RouteStats stats;
  const auto p32 = decode_lockstep(m(), {}, prompt, follow, stats);
  const double e32 = rel_err(p32.gpu.data(), p32.cpu.data(), p32.cpu.size());
  const auto agree32 = nemotron::testing::top1(p32.gpu, p32.cpu, V, 0.05f);
  for (StateDType d : {StateDType::BF16, StateDType::F16}) {
    const SsmStateFormat f{d, true};
    const auto p = decode_lockstep(m(), f, prompt, follow, stats);
    const double e = rel_err(p.gpu.data(), p.cpu.data(), p.cpu.size());
    std::printf("[ %s ] %s state: GPU vs CPU emulation (CPU on GPU routes) rel_err %.3g (fp32 state: %.3g)\n",
                GetParam().c_str(), kernels::state_dtype_name(d), e, e32);
    // A flipped rounding decision is one more rounding-level difference between the devices.
    EXPECT_LE(e, 1.5 * e32 + 0.01) << kernels::state_dtype_name(d);
    EXPECT_LE(e, kLogitRelTol) << kernels::state_dtype_name(d);
    const auto agree = nemotron::testing::top1(p.gpu, p.cpu, V, 0.05f);
    std::printf("[ %s ] top-1 agreement %d of %d (fp32 state: %d of %d)\n", GetParam().c_str(), agree.agree,
                agree.compared, agree32.agree, agree32.compared);
    EXPECT_GE(agree.agree - agree.compared, agree32.agree - agree32.compared - 2) << kernels::state_dtype_name(d);
  }
  stats.print((GetParam() + " 16-bit state decode").c_str());
}

TEST_P(CudaSsmState16, RollBackEqualsTheShorterSequence) {
  const auto prompt = state_prompt(GetParam(), 0);
  const auto T0 = static_cast<int64_t>(prompt.size());
  const std::vector<int32_t> tail{7, 11, 13, 17, 19}, next{23, 29, 31};
  const SsmStateFormat f{StateDType::BF16, true};
  for (int64_t n = 0; n <= 5; ++n) {
    const auto a = backend(m(), "cuda", f);
    const int sa = a->acquire_slot();
    a->step({{.slot = sa, .ids = prompt.data(), .T = T0, .sample = true}});
    a->step({{.slot = sa, .ids = tail.data(), .T = 5, .sample = true, .sample_rows = 5, .draw = 1,
              .logits = LogitsOut::All, .keep_states = true}});
    a->roll_back(sa, T0 + n);
    const auto la = a->step({{.slot = sa, .ids = next.data(), .T = 3, .logits = LogitsOut::All}})[0].logits;
    const auto b = backend(m(), "cuda", f);
    const int sb = b->acquire_slot();
    b->step({{.slot = sb, .ids = prompt.data(), .T = T0, .sample = true}});
    if (n > 0) b->step({{.slot = sb, .ids = tail.data(), .T = n}});
    const auto lb = b->step({{.slot = sb, .ids = next.data(), .T = 3, .logits = LogitsOut::All}})[0].logits;
    const double e = rel_err(la.data(), lb.data(), lb.size());
    std::printf("[ %s ] bfloat16 state, roll back to row %lld of 5: next logits rel_err %.3g%s\n",
                GetParam().c_str(), static_cast<long long>(n), e,
                nemotron::testing::same_bits(la, lb) ? " (bit-identical)" : "");
    EXPECT_LE(e, kSelfRelTol) << "n " << n;
    // n = 0 restores the saved state and n = 5 keeps the step's own: bit for bit.
    if (n == 0 || n == 5) {
      EXPECT_TRUE(nemotron::testing::same_bits(la, lb)) << "n " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaSsmState16, ::testing::Values("nano-moe", "super-latent-mtp", "demo"),
                         nemotron::testing::FixtureParamName());

TEST(CudaSsmState16Snapshots, AnotherStorageTypeIsRefused) {
  ASSERT_TRUE(cuda_backend_available()) << "no CUDA device";
  const Model m = Model::load(state_model_path("demo"));
  const auto prompt = state_prompt("demo", 0);
  const auto src = backend(m, "cuda", {StateDType::BF16, true}, 64ll << 20);
  const int s = src->acquire_slot();
  src->step({{.slot = s, .ids = prompt.data(), .T = static_cast<int64_t>(prompt.size())}});
  src->save_snapshot(s, 1);
  const auto bytes = src->export_snapshot(1);
  EXPECT_NO_THROW(backend(m, "cuda", {StateDType::BF16, false}, 64ll << 20)->import_snapshot(1, bytes));
  for (const SsmStateFormat& other : {SsmStateFormat{}, SsmStateFormat{StateDType::F16, true}}) {
    try {
      backend(m, "cuda", other, 64ll << 20)->import_snapshot(1, bytes);
      ADD_FAILURE() << "imported into " << kernels::state_dtype_name(other.dtype);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("SSM state"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
