// The batch (decode) path of expert_gemv_cuda (moe_batch.cu: the pairs bucketed by expert on the
// device, each selected expert's 16-row tiles read once and multiplied with up to 8 gathered x
// rows per pass on the tensor cores), forced through launch_expert_batch, against
//   - the CPU: dequantize_row of the pair's expert (the rows linear_cpu multiplies) times the
//     same BF16 x row, double accumulation; tolerance as test_moe's GEMV (the same decode and
//     mma code): 1e-5 of the absolute dot sum (x2|a| after relu²) + one BF16 rounding;
//   - the per-pair GEMV (expert_gemv_cuda without a workspace) within one BF16 rounding.
// y is poisoned (0xFFFF, a NaN the kernels never write) and the workspace too; every element of
// a pair with a good id must be finite and within tolerance, every element of a pair with an id
// outside [0, E) must be exactly the kernels' NaN 0x7FC0.
// Covered: NVFP4 / FP8 / BF16; the real Nano (128 experts, k 6: up [1856, 2688] + relu² on token
// rows, down [2688, 1856] on pair rows) and Super latent (512 experts, k 22: up [2688, 1024],
// down [1024, 2688]) expert shapes at T = 2, 3, 8, 17, 64; ragged shapes (out not a multiple of
// 16, K not a multiple of 128); router-like routing (distinct experts per token), skewed
// routing (one expert in every token: r = T pairs, several passes of 8), ids repeated inside a
// token, bad ids; fewer pairs than 8 (k = 1); results bit-identical when the other pairs'
// routing changes and across runs (the bucket order is not deterministic); the ring form of the
// warp-per-tile layout (weights through cp.async rings) bit for bit the register form; the dispatch
// (expert_gemv_path) and the path each T takes; a CUDA graph captured once following the ids
// on the device; argument errors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda_test_util.h"
#include "expert_test_util.h"
#include "kernels/cuda/linear_internal.cuh"
#include "kernels/moe_cuda.h"
#include "linear_test_util.h"
#include "util/parallel.h"

namespace nemotron::testing {
namespace {

using kernels::ExpertGemvPath;
using kernels::WeightFormat;

constexpr uint16_t kNaN = 0x7FC0;  // what the kernels write for a bad id (the poison is 0xFFFF)

enum class Routing {
  Spread,   // router-like: k distinct random experts per token
  Skewed,   // slot 0 of every token on one hot expert (r = T), slot 1 of every other token on a
            // second one, the rest random distinct
  Repeats,  // Spread, then the last slot repeats slot 0's expert in two of every three tokens
};

struct Case {
  WeightFormat f;
  int64_t E, out, in, T, k;
  bool per_slot, relu2;
  Routing routing;
  bool bad_ids = false;      // pair N/2 gets id E, pair N-1 id -1
  bool vs_per_pair = false;  // also compare all pairs with the per-pair GEMV
  uint64_t seed = 1;
  int tiles_per_block = 0;   // the batch path's (0: by size)
  kernels::ExpertGemvArgs::BatchLayout layout = kernels::ExpertGemvArgs::BatchLayout::SplitK;
};
constexpr auto kWarpTile = kernels::ExpertGemvArgs::BatchLayout::WarpTile;
constexpr auto kWarpTileRing = kernels::ExpertGemvArgs::BatchLayout::WarpTileRing;

std::vector<int32_t> make_ids(const Case& c) {
  const int64_t N = c.T * c.k;
  std::vector<int32_t> ids(static_cast<std::size_t>(N));
  uint64_t s = c.seed * 1000003u + 17;
  const int32_t hot = static_cast<int32_t>(c.E / 3), warm = static_cast<int32_t>(c.E - 1);
  for (int64_t t = 0; t < c.T; ++t) {
    std::vector<int32_t> pick;
    for (int64_t j = 0; j < c.k; ++j) {
      int32_t e = -1;
      if (c.routing == Routing::Skewed && j == 0) e = hot;
      if (c.routing == Routing::Skewed && j == 1 && t % 2 == 0) e = warm;
      while (e < 0 || (std::find(pick.begin(), pick.end(), e) != pick.end() && pick.size() < static_cast<std::size_t>(c.E)))
        e = static_cast<int32_t>(splitmix(s) % static_cast<uint64_t>(c.E));
      pick.push_back(e);
    }
    if (c.routing == Routing::Repeats && c.k >= 2 && t % 3 != 1) pick.back() = pick.front();
    std::copy(pick.begin(), pick.end(), ids.begin() + t * c.k);
  }
  if (c.bad_ids) {
    ids[static_cast<std::size_t>(N / 2)] = static_cast<int32_t>(c.E);
    ids[static_cast<std::size_t>(N - 1)] = -1;
  }
  return ids;
}

enum class Via { Batch, PerPair, Dispatch };

std::vector<uint16_t> run(const Case& c, const Experts& ex, const std::vector<int32_t>& ids,
                          const std::vector<uint16_t>& xb, Via via) {
  const int64_t N = c.T * c.k;
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<uint16_t> dx(xb), dy(static_cast<std::size_t>(N * c.out));
  dy.poison();
  const int64_t ws_bytes = kernels::expert_gemv_workspace_bytes(c.T, c.k, c.E);
  DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(ws_bytes));
  ws.poison();  // nothing of a previous call may be trusted
  kernels::ExpertGemvArgs a;
  a.w = ex.table;
  a.ids = d_ids.get();
  a.T = c.T;
  a.k = c.k;
  a.x = dx.get();
  a.x_per_slot = c.per_slot;
  a.relu2 = c.relu2;
  a.y = dy.get();
  a.tiles_per_block = c.tiles_per_block;
  a.batch_layout = c.layout;
  if (via != Via::PerPair) {
    a.workspace = ws.get();
    a.workspace_bytes = ws_bytes;
  }
  if (via == Via::Batch) {
    bool launched = false;
    EXPECT_NO_THROW(launched = kernels::cuda::launch_expert_batch(a, nullptr));
    EXPECT_TRUE(launched) << "the batch path declined";
  } else {
    EXPECT_NO_THROW(kernels::expert_gemv_cuda(a, nullptr));
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return dy.download();
}

std::string case_name(const Case& c) {
  const char* routing = c.routing == Routing::Skewed ? " skewed" : c.routing == Routing::Repeats ? " repeats" : "";
  return std::string(kernels::weight_format_name(c.f)) + " [" + std::to_string(c.out) + "," + std::to_string(c.in) +
         "] E=" + std::to_string(c.E) + " T=" + std::to_string(c.T) + " k=" + std::to_string(c.k) +
         (c.per_slot ? " per-slot" : "") + (c.relu2 ? " relu2" : "") + routing + (c.bad_ids ? " bad-ids" : "") +
         (c.tiles_per_block ? " tiles/block=" + std::to_string(c.tiles_per_block) : "") +
         (c.layout == kWarpTile ? " warp-per-tile" : c.layout == kWarpTileRing ? " warp-per-tile ring" : "");
}

bool is_bad(const Case& c, int32_t id) { return id < 0 || id >= c.E; }

// Checks the batch path on one case against the CPU (and the per-pair GEMV when asked). `ex`
// must hold c.E experts of c.f, [c.out, c.in].
void check(const Case& c, const Experts& ex) {
  const int64_t N = c.T * c.k;
  const auto ids = make_ids(c);
  Rng rng(c.seed + 3);
  std::vector<float> xf;
  const auto xb = rng.bf16(static_cast<std::size_t>((c.per_slot ? N : c.T) * c.in), 1.0f, &xf);
  const auto raw = run(c, ex, ids, xb, Via::Batch);
  const std::string name = "batch " + case_name(c);

  // The pairs of each expert (host bucketing), the reference rows computed expert by expert so
  // that each weight row is dequantized once per expert.
  std::vector<std::vector<int64_t>> bucket(static_cast<std::size_t>(c.E));
  int64_t max_r = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int32_t e = ids[static_cast<std::size_t>(i)];
    if (is_bad(c, e)) {
      for (int64_t r = 0; r < c.out; ++r)
        ASSERT_EQ(raw[static_cast<std::size_t>(i * c.out + r)], kNaN) << name << ": bad id pair " << i << " row " << r;
      continue;
    }
    bucket[static_cast<std::size_t>(e)].push_back(i);
    max_r = std::max<int64_t>(max_r, static_cast<int64_t>(bucket[static_cast<std::size_t>(e)].size()));
  }
  const std::size_t n = static_cast<std::size_t>(N * c.out);
  std::vector<float> got = bf16_to_f32(raw), ref(n, 0.0f), tol(n, 0.0f);
  parallel_for(static_cast<std::size_t>(c.out), [&](std::size_t r0, std::size_t r1) {
    std::vector<float> row(static_cast<std::size_t>(c.in));
    for (std::size_t r = r0; r < r1; ++r)
      for (int64_t e = 0; e < c.E; ++e) {
        const auto& pairs = bucket[static_cast<std::size_t>(e)];
        if (pairs.empty()) continue;
        kernels::dequantize_row(ex.hw[static_cast<std::size_t>(e)].w, static_cast<int64_t>(r), row.data());
        for (int64_t i : pairs) {
          const float* xr = xf.data() + (c.per_slot ? i : i / c.k) * c.in;
          double sum = 0, sa = 0;
          for (int64_t q = 0; q < c.in; ++q) {
            sum += static_cast<double>(row[static_cast<std::size_t>(q)]) * xr[q];
            sa += std::fabs(static_cast<double>(row[static_cast<std::size_t>(q)]) * xr[q]);
          }
          const float av = static_cast<float>(sum), v = c.relu2 ? (av > 0 ? av * av : 0.0f) : av;
          const float d = 1e-5f * static_cast<float>(sa);
          const std::size_t o = static_cast<std::size_t>(i * c.out) + r;
          ref[o] = v;
          tol[o] = (c.relu2 ? 2.0f * std::fabs(av) * d + d * d : d) + std::ldexp(std::fabs(v), -8) + 1e-30f;
        }
      }
  });
  // Bad pairs' rows were checked bit for bit above; they count as exact here.
  for (int64_t i = 0; i < N; ++i)
    if (is_bad(c, ids[static_cast<std::size_t>(i)]))
      for (int64_t r = 0; r < c.out; ++r) got[static_cast<std::size_t>(i * c.out + r)] = 0.0f;
  EXPECT_EQ(report(name + " (max r " + std::to_string(max_r) + ")", got, ref, tol), 0u);
  if (c.layout == kWarpTile) {
    // The ring form runs the same super-steps in the same order: the same bits, bad ids' NaN
    // rows included. Where it does not fit (NVFP4 with in % 64 != 0) the call takes the
    // register form.
    Case r = c;
    r.layout = kWarpTileRing;
    const auto ring = run(r, ex, ids, xb, Via::Batch);
    EXPECT_EQ(ring, raw) << case_name(r) << ": differs from the register form";
  }
  if (!c.vs_per_pair) return;

  // Against the per-pair GEMV: both one BF16 rounding of an fp32 sum (possibly another warp
  // split of K): within 2^-7 |r| plus a few fp32 ulps of the row's largest magnitude.
  const auto pp = run(c, ex, ids, xb, Via::PerPair);
  std::vector<float> g2 = bf16_to_f32(raw), r2 = bf16_to_f32(pp), t2(n);
  for (int64_t i = 0; i < N; ++i) {
    const bool bad = is_bad(c, ids[static_cast<std::size_t>(i)]);
    float row_max = 0.0f;
    for (int64_t r = 0; r < c.out; ++r) {
      const std::size_t o = static_cast<std::size_t>(i * c.out + r);
      if (bad) {
        EXPECT_EQ(pp[o], kNaN) << "per-pair bad id pair " << i;
        g2[o] = r2[o] = 0.0f;
      }
      row_max = std::max(row_max, std::fabs(r2[o]));
    }
    for (int64_t r = 0; r < c.out; ++r) {
      const std::size_t o = static_cast<std::size_t>(i * c.out + r);
      t2[o] = std::ldexp(std::fabs(r2[o]), -7) + std::ldexp(row_max, -9) + 1e-6f;
    }
  }
  EXPECT_EQ(report(name + " vs per-pair", g2, r2, t2), 0u);
}

// Experts of one format and shape, built once for several cases.
std::unique_ptr<Experts> experts_for(const Case& c) { return make_experts(c.f, c.E, c.out, c.in, c.seed, 7919); }

// Nano's routed experts at real shape, NVFP4: the decode sizes of the brief.
TEST(MoeBatch, NanoShapesAgainstCpuAndPerPair) {
  ASSERT_TRUE(have_device());
  const Case up{WeightFormat::NVFP4, 128, 1856, 2688, 2, 6, false, true, Routing::Spread, false, true, 201};
  const Case down{WeightFormat::NVFP4, 128, 2688, 1856, 2, 6, true, false, Routing::Spread, false, true, 202};
  const auto eu = experts_for(up), ed = experts_for(down);
  for (const auto& [table, T] : {std::pair{eu->table, int64_t{8}}, {ed->table, int64_t{64}}}) {
    kernels::ExpertGemvArgs a;  // the ring form's comparisons below are not vacuous at these shapes
    a.w = table;
    a.T = T;
    a.k = 6;
    EXPECT_TRUE(kernels::cuda::expert_batch_ring_fits(a)) << "in " << table.in << " T " << T;
  }
  uint64_t seed = 300;
  for (int64_t T : {2, 3, 8, 17, 64}) {
    for (const Case* base : {&up, &down}) {
      Case c = *base;
      c.T = T;
      c.seed = seed++;
      c.routing = T == 17 ? Routing::Skewed : T == 8 ? Routing::Repeats : Routing::Spread;
      c.bad_ids = T == 3 || T == 17;
      check(c, base == &up ? *eu : *ed);
      c.layout = kWarpTile;
      check(c, base == &up ? *eu : *ed);
    }
  }
  // The hot expert of a skewed 64-row step takes 64 pairs (8 passes of 8).
  Case c = up;
  c.T = 64;
  c.routing = Routing::Skewed;
  c.seed = seed++;
  check(c, *eu);
  c.layout = kWarpTile;
  check(c, *eu);
  c = down;
  c.T = 64;
  c.routing = Routing::Skewed;
  c.bad_ids = true;
  c.seed = seed++;
  check(c, *ed);
  c.layout = kWarpTile;
  check(c, *ed);
}

// Super's latent experts at real shape (512 experts, k = 22), NVFP4.
TEST(MoeBatch, SuperLatentShapesAgainstCpuAndPerPair) {
  ASSERT_TRUE(have_device());
  const Case up{WeightFormat::NVFP4, 512, 2688, 1024, 2, 22, false, true, Routing::Spread, false, true, 401};
  const Case down{WeightFormat::NVFP4, 512, 1024, 2688, 2, 22, true, false, Routing::Spread, false, true, 402};
  const auto eu = experts_for(up), ed = experts_for(down);
  uint64_t seed = 500;
  for (int64_t T : {2, 3, 8, 17, 64}) {
    for (const Case* base : {&up, &down}) {
      Case c = *base;
      c.T = T;
      c.seed = seed++;
      c.routing = T == 17 || T == 64 ? Routing::Skewed : T == 3 ? Routing::Repeats : Routing::Spread;
      c.bad_ids = T == 2 || T == 64;
      c.vs_per_pair = T != 64;  // 1408 pairs: the CPU check covers them
      check(c, base == &up ? *eu : *ed);
      c.layout = kWarpTile;
      check(c, base == &up ? *eu : *ed);
    }
  }
}

// FP8 and BF16 experts at the real expert shapes (Super-shaped with 64 experts, BF16 Nano with
// 64, to keep the host copies small; k stays 6 and 22).
TEST(MoeBatch, Fp8AndBf16AtRealShapes) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 600;
  for (auto f : {WeightFormat::FP8, WeightFormat::Dense}) {
    const int64_t En = f == WeightFormat::FP8 ? 128 : 64;
    const Case nano_up{f, En, 1856, 2688, 8, 6, false, true, Routing::Skewed, true, true, seed++};
    const Case nano_down{f, En, 2688, 1856, 17, 6, true, false, Routing::Repeats, false, true, seed++};
    const Case super_up{f, 64, 2688, 1024, 3, 22, false, false, Routing::Spread, false, true, seed++};
    const Case super_down{f, 64, 1024, 2688, 17, 22, true, true, Routing::Skewed, true, false, seed++};
    for (const Case* c : {&nano_up, &nano_down, &super_up, &super_down}) {
      const auto ex = experts_for(*c);
      check(*c, *ex);
      Case w = *c;
      w.layout = kWarpTile;
      check(w, *ex);
    }
  }
}

// Every format on ragged shapes: out not a multiple of 16, K not a multiple of 128 (in % 128 =
// 96, 32 or 64), k = 1 (fewer than 8 pairs in all: the staging capacity is T*k), E < T*k
// (every expert slot filled) and E > T*k; each also with 1, 2 and 4 tiles per block (out = 37:
// 3 tiles, so a block of 2 or 4 has a partial group; T = 64 skewed: several passes of 8 per tile).
TEST(MoeBatch, EveryFormatRaggedShapes) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 700;
  for (auto f : {WeightFormat::Dense, WeightFormat::FP8, WeightFormat::NVFP4}) {
    const Case cases[] = {
        {f, 7, 37, 224, 5, 1, false, true, Routing::Spread, false, true, seed++},
        {f, 7, 37, 224, 2, 3, true, false, Routing::Repeats, true, true, seed++},
        {f, 7, 100, 96, 17, 3, false, false, Routing::Skewed, true, true, seed++},
        {f, 16, 300, 1856, 3, 6, true, true, Routing::Spread, false, true, seed++},
        {f, 16, 300, 1856, 64, 6, false, true, Routing::Skewed, true, true, seed++},
        {f, 5, 130, 64, 9, 4, true, true, Routing::Repeats, false, true, seed++},
    };
    for (const Case& c : cases) {
      const auto ex = experts_for(c);
      check(c, *ex);
      for (int tpb : {1, 2, 4}) {  // several 16-row tiles per block, the last group partial
        Case d = c;
        d.tiles_per_block = tpb;
        check(d, *ex);
      }
      Case w = c;  // each warp a whole tile: the last block's spare warps store nothing
      w.layout = kWarpTile;
      check(w, *ex);
    }
  }
}

// A pair's output depends only on its own x row and expert: rerouting the other pairs (which
// moves the pair to another place in its bucket, another pass of 8 and another mma column)
// leaves its row bit for bit; and the same call twice gives the same bits (the bucket order
// comes from atomics).
TEST(MoeBatch, IndependentOfTheOtherPairsAndRepeatable) {
  ASSERT_TRUE(have_device());
  for (auto f : {WeightFormat::NVFP4, WeightFormat::FP8})
    for (auto layout : {kernels::ExpertGemvArgs::BatchLayout::SplitK, kWarpTile, kWarpTileRing}) {
      Case c{f, 128, 1856, 2688, 17, 6, false, true, Routing::Spread, false, false, 801};
      c.layout = layout;
      const std::string name = case_name(c);
      const auto ex = experts_for(c);
      const auto ids_a = make_ids(c);
      auto ids_b = ids_a;
      uint64_t s = 802;
      // Half of the pairs move: to the expert of pair 0 (its bucket grows past 8) or anywhere.
      for (std::size_t i = 1; i < ids_b.size(); ++i) {
        const uint64_t v = splitmix(s);
        if (v % 2) ids_b[i] = v % 4 == 1 ? ids_a[0] : static_cast<int32_t>((v >> 8) % 128);
      }
      Rng rng(803);
      const auto xb = rng.bf16(static_cast<std::size_t>(c.T * c.in), 1.0f, nullptr);
      const auto y_a = run(c, *ex, ids_a, xb, Via::Batch), y_b = run(c, *ex, ids_b, xb, Via::Batch);
      const auto y_a2 = run(c, *ex, ids_a, xb, Via::Batch);
      EXPECT_EQ(y_a, y_a2) << name << ": two runs differ";
      std::size_t same = 0, diff = 0;
      for (std::size_t i = 0; i < ids_a.size(); ++i) {
        if (ids_a[i] != ids_b[i]) continue;
        ++same;
        diff += std::memcmp(y_a.data() + i * c.out, y_b.data() + i * c.out, static_cast<std::size_t>(c.out) * 2) != 0;
      }
      EXPECT_GT(same, ids_a.size() / 3);
      EXPECT_EQ(diff, 0u) << name << ": rows changed with the other pairs' routing";
      if (layout == kernels::ExpertGemvArgs::BatchLayout::SplitK) continue;
      // Each warp runs its tile's whole K in one fixed order: the first 3 tokens alone (a
      // smaller grid, other warp counts per expert) give the same bits.
      Case t3 = c;
      t3.T = 3;
      const std::vector<int32_t> ids3(ids_a.begin(), ids_a.begin() + 3 * c.k);
      const std::vector<uint16_t> x3(xb.begin(), xb.begin() + 3 * c.in);
      const auto y3 = run(t3, *ex, ids3, x3, Via::Batch);
      EXPECT_EQ(0, std::memcmp(y3.data(), y_a.data(), y3.size() * 2)) << name << ": 3 tokens alone differ";
    }
}

// expert_gemv_path and what expert_gemv_cuda runs with a workspace: the per-pair GEMV below
// kExpertBatchMinRows rows (bit for bit the call without a workspace), the batch path from there
// (bit for bit launch_expert_batch), the grouped GEMM from kExpertGroupedMinPairs pairs and
// kExpertGroupedMinPairsPerExpert pairs per expert.
TEST(MoeBatch, DispatchPicksThePath) {
  ASSERT_TRUE(have_device());
  using kernels::expert_gemv_path;
  EXPECT_EQ(expert_gemv_path(1, 6, 128, true), ExpertGemvPath::PerPair);
  EXPECT_EQ(expert_gemv_path(kernels::kExpertBatchMinRows - 1, 6, 128, true), ExpertGemvPath::PerPair);
  EXPECT_EQ(expert_gemv_path(kernels::kExpertBatchMinRows, 6, 128, true), ExpertGemvPath::Batch);
  EXPECT_EQ(expert_gemv_path(64, 6, 128, true), ExpertGemvPath::Batch);
  EXPECT_EQ(expert_gemv_path(64, 6, 128, false), ExpertGemvPath::PerPair);
  EXPECT_EQ(expert_gemv_path(2048, 6, 128, true), ExpertGemvPath::Grouped);
  EXPECT_EQ(expert_gemv_path(64, 22, 512, true), ExpertGemvPath::Batch);
  EXPECT_EQ(expert_gemv_path(2048, 22, 512, true), ExpertGemvPath::Grouped);
  EXPECT_EQ(expert_gemv_path(128, 2, 4, true), ExpertGemvPath::Grouped);  // 256 pairs, 64 per expert
  EXPECT_FALSE(kernels::expert_gemv_uses_workspace(1, 6, 128));
  EXPECT_TRUE(kernels::expert_gemv_uses_workspace(kernels::kExpertBatchMinRows, 6, 128));
  EXPECT_TRUE(kernels::expert_gemv_uses_workspace(1, 300, 16));  // one row of 300 pairs: grouped

  uint64_t seed = 900;
  const auto ex = make_experts(WeightFormat::NVFP4, 128, 1856, 2688, 899, 7919);
  for (int64_t T : {1, 2, 3, 4, 8, 33}) {
    const Case c{WeightFormat::NVFP4, 128, 1856, 2688, T, 6, false, true, Routing::Spread, T == 8, false, seed++};
    const auto ids = make_ids(c);
    Rng rng(c.seed);
    const auto xb = rng.bf16(static_cast<std::size_t>(T * c.in), 1.0f, nullptr);
    const auto got = run(c, *ex, ids, xb, Via::Dispatch);
    const bool batch = expert_gemv_path(T, c.k, c.E, true) == ExpertGemvPath::Batch;
    const auto want = run(c, *ex, ids, xb, batch ? Via::Batch : Via::PerPair);
    EXPECT_EQ(got, want) << "T=" << T << (batch ? ": not the batch path" : ": not the per-pair path");
  }
}

// Decode steps are CUDA graphs: one capture of the batch path, replayed after new ids were
// copied into its ids buffer, gives what an eager call with those ids gives (each layout against
// itself: the layouts add the K range in different orders).
TEST(MoeBatch, GraphReplayFollowsTheDeviceIds) {
  ASSERT_TRUE(have_device());
  for (const auto layout : {kernels::ExpertGemvArgs::BatchLayout::SplitK, kWarpTile, kWarpTileRing}) {
    SCOPED_TRACE(layout == kWarpTile ? "warp per tile" : layout == kWarpTileRing ? "warp per tile, ring" : "split K");
    Case c{WeightFormat::NVFP4, 128, 2688, 1856, 8, 6, true, false, Routing::Spread, false, false, 1001};
    c.layout = layout;
    const auto ex = experts_for(c);
    const int64_t N = c.T * c.k;
    Rng rng(1002);
    const auto xb = rng.bf16(static_cast<std::size_t>(N * c.in), 1.0f, nullptr);
    DeviceBuffer<int32_t> d_ids(static_cast<std::size_t>(N));
    DeviceBuffer<uint16_t> dx(xb), dy(static_cast<std::size_t>(N * c.out));
    const int64_t ws_bytes = kernels::expert_gemv_workspace_bytes(c.T, c.k, c.E);
    DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(ws_bytes));
    kernels::ExpertGemvArgs a;
    a.w = ex->table;
    a.ids = d_ids.get();
    a.T = c.T;
    a.k = c.k;
    a.x = dx.get();
    a.x_per_slot = true;
    a.y = dy.get();
    a.workspace = ws.get();
    a.workspace_bytes = ws_bytes;
    a.batch_layout = layout;
    ASSERT_EQ(kernels::expert_gemv_path(c.T, c.k, c.E, true), ExpertGemvPath::Batch);
    cudaStream_t st = nullptr;
    CUDA_OK(cudaStreamCreate(&st));
    Case c1 = c;
    d_ids.upload(make_ids(c1));
    ASSERT_NO_THROW(kernels::expert_gemv_cuda(a, st));  // warm-up (shared-memory attributes)
    CUDA_OK(cudaStreamSynchronize(st));
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
    kernels::expert_gemv_cuda(a, st);
    CUDA_OK(cudaStreamEndCapture(st, &g));
    CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
    for (int rep = 0; rep < 3; ++rep) {
      Case cr = c;
      cr.seed = 1010 + static_cast<uint64_t>(rep);
      cr.routing = rep == 1 ? Routing::Skewed : Routing::Spread;
      cr.bad_ids = rep == 2;
      const auto ids = make_ids(cr);
      d_ids.upload(ids);
      dy.poison();
      CUDA_OK(cudaGraphLaunch(ge, st));
      CUDA_OK(cudaStreamSynchronize(st));
      const auto replayed = dy.download();
      EXPECT_EQ(replayed, run(cr, *ex, ids, xb, Via::Batch)) << "replay " << rep;
    }
    CUDA_OK(cudaGraphExecDestroy(ge));
    CUDA_OK(cudaGraphDestroy(g));
    CUDA_OK(cudaStreamDestroy(st));
  }
}

// ExpertGemvArgs::reuse_buckets: up (batch path) then down reading up's buckets and its first
// weight loads before its wait, back to back on a stream and in a replayed graph with new
// routing each time, equals a down call that buckets again, bit for bit, bad ids' NaN rows
// included (written by block (0, 0) instead of the bucketing).
TEST(MoeBatch, ReusedBucketsDownEqualsRebucketedDown) {
  ASSERT_TRUE(have_device());
  const int64_t E = 64, I = 192, H = 256;  // T*k < 12 E: every T below takes the batch path
  for (auto f : {WeightFormat::NVFP4, WeightFormat::FP8}) {
    const auto up = make_experts(f, E, I, H, 21, 101);
    const auto down = make_experts(f, E, H, I, 22, 101);
    for (const auto layout : {kWarpTile, kWarpTileRing})
    for (int64_t T : {4, 8, 17, 64}) {
      SCOPED_TRACE(layout == kWarpTileRing ? "ring" : "registers");
      const int64_t k = 6, N = T * k;
      Rng rng(static_cast<uint64_t>(T));
      DeviceBuffer<uint16_t> dx(rng.bf16(static_cast<std::size_t>(T * H), 1.0f, nullptr));
      DeviceBuffer<int32_t> d_ids(static_cast<std::size_t>(N));
      DeviceBuffer<uint16_t> dh(static_cast<std::size_t>(N * I)), dy(static_cast<std::size_t>(N * H)),
          dref(static_cast<std::size_t>(N * H));
      const int64_t ws_bytes = kernels::expert_gemv_workspace_bytes(T, k, E);
      DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(ws_bytes));
      auto [ua, da] = expert_pair_args(*up, *down, d_ids.get(), T, k, dx.get(), dh.get(), dy.get());
      for (kernels::ExpertGemvArgs* a : {&ua, &da}) {
        a->workspace = ws.get();
        a->workspace_bytes = ws_bytes;
        a->batch_layout = layout;
      }
      da.ids_settled = da.reuse_buckets = true;
      kernels::ExpertGemvArgs ra = da;
      ra.y = dref.get();
      ra.ids_settled = ra.reuse_buckets = false;
      cudaStream_t st = nullptr;
      CUDA_OK(cudaStreamCreate(&st));
      auto ids_for = [&](int rep) {
        Case c{f, E, I, H, T, k, false, true, rep % 3 == 1 ? Routing::Skewed : Routing::Spread};
        c.routing = rep % 3 == 2 ? Routing::Repeats : c.routing;
        c.bad_ids = rep % 2 == 1;
        c.seed = 500 + static_cast<uint64_t>(rep) + static_cast<uint64_t>(T);
        return make_ids(c);
      };
      auto check = [&](const std::string& what) {
        ASSERT_EQ(kernels::expert_gemv_cuda(ra, st), ExpertGemvPath::Batch);  // buckets again
        CUDA_OK(cudaStreamSynchronize(st));
        EXPECT_EQ(dy.download(), dref.download()) << kernels::weight_format_name(f) << " T=" << T << " " << what;
      };
      for (int rep = 0; rep < 3; ++rep) {
        d_ids.upload(ids_for(rep));
        dy.poison();
        dref.poison();
        ASSERT_EQ(kernels::expert_gemv_cuda(ua, st), ExpertGemvPath::Batch);
        kernels::expert_gemv_cuda(da, st);
        check("stream rep " + std::to_string(rep));
      }
      cudaGraph_t g = nullptr;
      cudaGraphExec_t ge = nullptr;
      CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
      kernels::expert_gemv_cuda(ua, st);
      kernels::expert_gemv_cuda(da, st);
      CUDA_OK(cudaStreamEndCapture(st, &g));
      CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
      for (int rep = 3; rep < 7; ++rep) {
        d_ids.upload(ids_for(rep));
        dy.poison();
        dref.poison();
        CUDA_OK(cudaGraphLaunch(ge, st));
        check("graph replay " + std::to_string(rep));
      }
      CUDA_OK(cudaGraphExecDestroy(ge));
      CUDA_OK(cudaGraphDestroy(g));
      CUDA_OK(cudaStreamDestroy(st));
    }
  }
}

TEST(MoeBatch, RejectsBadArguments) {
  ASSERT_TRUE(have_device());
  const auto ex = make_experts(WeightFormat::Dense, 4, 32, 64, 5, 7919);
  DeviceBuffer<int32_t> ids(std::vector<int32_t>(16, 0));
  DeviceBuffer<uint16_t> x(std::vector<uint16_t>(16 * 64, 0)), y(std::vector<uint16_t>(16 * 32, 0));
  kernels::ExpertGemvArgs a;
  a.w = ex->table;
  a.ids = ids.get();
  a.T = 8;  // 16 pairs over 4 experts: the batch path
  a.k = 2;
  a.x = x.get();
  a.y = y.get();
  ASSERT_EQ(kernels::expert_gemv_path(8, 2, 4, true), ExpertGemvPath::Batch);
  const int64_t need = kernels::expert_gemv_workspace_bytes(8, 2, 4);
  DeviceBuffer<uint8_t> ws(static_cast<std::size_t>(need));
  a.workspace = ws.get();
  a.workspace_bytes = need - 16;
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);  // workspace too small
  a.workspace_bytes = need;
  a.workspace = static_cast<uint8_t*>(ws.get()) + 4;
  EXPECT_THROW(kernels::expert_gemv_cuda(a, nullptr), Error);  // misaligned workspace
  a.workspace = ws.get();
  EXPECT_NO_THROW(kernels::expert_gemv_cuda(a, nullptr));
  a.w.experts = kernels::kExpertBucketMaxExperts + 1;  // the bucketing's limit
  EXPECT_THROW(kernels::cuda::launch_expert_batch(a, nullptr), Error);
  a.w.experts = 4;
  a.T = 0;  // no pairs: expert_gemv_cuda returns, the batch launcher refuses
  EXPECT_NO_THROW(kernels::expert_gemv_cuda(a, nullptr));
  EXPECT_THROW(kernels::cuda::launch_expert_batch(a, nullptr), Error);
  CUDA_OK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nemotron::testing
