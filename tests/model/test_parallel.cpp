// The pieces of tensor / expert parallelism: the in-process communicator (sums in rank order,
// the same bits on every rank, uneven all-gathers, size mismatches and aborts as errors), the
// rank layout and dimension splits, weight slices in every storage format (NVFP4 blocks),
// and the errors for sizes that do not split.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <thread>

#include "kernels/linear.h"
#include "model/parallel/inproc_communicator.h"
#include "model/parallel/linear_slice.h"
#include "model/parallel/parallel_config.h"
#include "model/parallel/rank_threads.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Runs fn(rank) on `n` threads at once.
void on_threads(int n, const std::function<void(int)>& fn) {
  RankThreads t(n, nullptr);
  t.run(fn);
}

TEST(Communicator, AllReduceSumsInRankOrderWithTheSameBitsOnEveryRank) {
  for (int N : {1, 2, 3, 4}) {
    InProcessGroup g(N);
    const int64_t n = 37;  // not a multiple of N: uneven chunks of the reduction
    std::vector<std::vector<float>> data(N);
    for (int r = 0; r < N; ++r)
      for (int64_t i = 0; i < n; ++i) data[r].push_back(1.0f / static_cast<float>(3 + i + 7 * r) * (r % 2 ? 1e4f : 1e-3f));
    std::vector<float> want(n);
    for (int64_t i = 0; i < n; ++i) {
      float s = data[0][i];
      for (int r = 1; r < N; ++r) s += data[r][i];
      want[i] = s;
    }
    for (int round = 0; round < 3; ++round) {  // the group is reusable
      auto d = data;
      on_threads(N, [&](int r) { g.member(r).all_reduce_sum(d[r].data(), n); });
      for (int r = 0; r < N; ++r) EXPECT_EQ(0, std::memcmp(d[r].data(), want.data(), n * 4)) << "N " << N << " rank " << r;
    }
  }
}

TEST(Communicator, AllGatherConcatenatesUnevenBlocksInRankOrder) {
  InProcessGroup g(3);
  const std::vector<int64_t> counts{2, 0, 3};
  std::vector<std::vector<float>> out(3, std::vector<float>(5));
  on_threads(3, [&](int r) {
    std::vector<float> in(static_cast<std::size_t>(counts[r]), static_cast<float>(r + 1));
    g.member(r).all_gather(in.data(), counts, out[r].data());
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(out[r], (std::vector<float>{1, 1, 3, 3, 3}));
}

TEST(Communicator, MismatchedSizesAndAFailedRankAreErrorsOnEveryRank) {
  InProcessGroup g(2);
  std::vector<std::string> errs(2);
  on_threads(2, [&](int r) {
    std::vector<float> v(4);
    errs[r] = error_of([&] { g.member(r).all_reduce_sum(v.data(), r == 0 ? 4 : 3); });
  });
  for (const auto& e : errs) EXPECT_NE(e.find("different sizes"), std::string::npos) << e;

  // Rank 1 fails before its collective: rank 0, waiting in it, returns with an error, and
  // run() rethrows the first (rank 1's).
  InProcessGroup h(2);
  RankThreads t(2, [&] { h.abort(); });
  const std::string e = error_of([&] {
    t.run([&](int r) {
      if (r == 1) throw Error("rank 1 failed");
      float x = 1;
      h.member(0).all_reduce_sum(&x, 1);
    });
  });
  EXPECT_EQ(e, "rank 1 failed");
  h.reset();
  std::vector<float> x{1, 2};
  t.run([&](int r) { h.member(r).all_reduce_sum(&x[r], 1); });  // usable again
  EXPECT_EQ(x, (std::vector<float>{3, 3}));
}

TEST(ParallelConfig, RankLayoutPutsExpertsOnTheTensorParallelRanks) {
  // TP 4 x EP 2: experts split in two groups of two ranks, each expert's width split in two.
  const RankLayout a = rank_layout({4, 2}, 3);
  EXPECT_EQ(a.world, 4);
  EXPECT_EQ(a.tp_rank, 3);
  EXPECT_EQ(a.replicas, 1);
  EXPECT_EQ(a.ep_rank, 1);
  EXPECT_EQ(a.moe_tp_size, 2);
  EXPECT_EQ(a.moe_tp_rank, 1);
  // EP 4 alone: four ranks, the dense part replicated on each.
  const RankLayout b = rank_layout({1, 4}, 2);
  EXPECT_EQ(b.world, 4);
  EXPECT_EQ(b.tp_size, 1);
  EXPECT_EQ(b.replica, 2);
  EXPECT_EQ(b.ep_rank, 2);
  EXPECT_EQ(b.moe_tp_size, 1);
  EXPECT_NE(error_of([] { rank_layout({2, 3}, 0); }).find("the smaller must divide the larger"), std::string::npos);
  EXPECT_NE(error_of([] { rank_layout({0, 1}, 0); }).find("--tensor-parallel-size 0"), std::string::npos);
}

TEST(ParallelConfig, HeadCountsThatDoNotSplitNameTheKeyAndSizes) {
  Config c;
  c.path = "m/config.json";
  c.layers = {LayerKind::Mamba, LayerKind::Attention};
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.mamba_num_heads = 8;
  c.n_groups = 2;
  EXPECT_NO_THROW(validate_parallel(c, {4, 1}));  // KV heads and groups replicated
  EXPECT_EQ(error_of([&] { validate_parallel(c, {3, 1}); }),
            "m/config.json: num_attention_heads (4) is not divisible by --tensor-parallel-size 3 (heads are split "
            "evenly over the tensor-parallel ranks)");
  c.num_attention_heads = 6;
  c.num_key_value_heads = 3;
  EXPECT_NE(error_of([&] { validate_parallel(c, {2, 1}); }).find("num_key_value_heads (3) and --tensor-parallel-size 2"),
            std::string::npos);
  c.layers = {LayerKind::Mamba};
  c.mamba_num_heads = 12;
  c.n_groups = 3;
  EXPECT_NE(error_of([&] { validate_parallel(c, {2, 1}); }).find("n_groups (3) and --tensor-parallel-size 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { require_parallel_supported("cuda", {2, 1}, "serve"); })
                .find("serve with --tensor-parallel-size 2 --expert-parallel-size 1: not yet supported on the cuda backend"),
            std::string::npos);
  EXPECT_NO_THROW(require_parallel_supported("cuda", {1, 1}, "serve"));
  EXPECT_NO_THROW(require_parallel_supported("cuda", {2, 2}));  // the sharded GPU forward (score, generate)
  EXPECT_NO_THROW(require_parallel_supported("cpu", {2, 2}, "serve"));
}

TEST(ParallelConfig, SplitsAreContiguousEvenAndOnWholeUnits) {
  auto parts = [](int64_t n, int k, int64_t align) {
    std::vector<int64_t> sizes;
    int64_t at = 0;
    for (int p = 0; p < k; ++p) {
      const Range r = split_range(n, k, p, align);
      EXPECT_EQ(r.begin, at);
      at = r.end;
      sizes.push_back(r.size());
    }
    EXPECT_EQ(at, n);
    return sizes;
  };
  EXPECT_EQ(parts(16, 3, 1), (std::vector<int64_t>{5, 5, 6}));
  EXPECT_EQ(parts(48, 2, 16), (std::vector<int64_t>{16, 32}));   // three NVFP4 blocks over two ranks
  EXPECT_EQ(parts(48, 4, 16), (std::vector<int64_t>{0, 16, 16, 16}));
  EXPECT_EQ(parts(40, 2, 16), (std::vector<int64_t>{16, 24}));   // a partial last unit
  EXPECT_EQ(parts(512, 4, 1), (std::vector<int64_t>{128, 128, 128, 128}));
}

// A random weight [out, in] in `format`, with its bytes.
struct TestWeight {
  kernels::LinearWeight w;
  std::vector<uint8_t> data, scales;
};
TestWeight make_weight(kernels::WeightFormat f, int64_t out, int64_t in) {
  TestWeight t;
  t.w.format = f;
  t.w.out = out;
  t.w.in = in;
  t.w.scale = 0.75f;
  const int64_t bytes = f == kernels::WeightFormat::NVFP4 ? out * in / 2 : f == kernels::WeightFormat::FP8 ? out * in : out * in * 2;
  // Bytes below 0x40: finite in every format (E4M3 0x7F and BF16 0x7F8x are NaN / inf).
  for (int64_t i = 0; i < bytes; ++i) t.data.push_back(static_cast<uint8_t>((i * 37 + 11) % 251 & 0x3F));
  if (f == kernels::WeightFormat::NVFP4)
    for (int64_t i = 0; i < out * in / 16; ++i) t.scales.push_back(static_cast<uint8_t>(0x30 + i % 16));
  t.w.data = t.data.data();
  t.w.block_scale = t.scales.empty() ? nullptr : t.scales.data();
  return t;
}

TEST(LinearSlice, RowAndColumnSlicesDequantizeToTheSameElementsInEveryFormat) {
  using kernels::WeightFormat;
  for (auto f : {WeightFormat::Dense, WeightFormat::FP8, WeightFormat::NVFP4}) {
    const TestWeight t = make_weight(f, 6, 64);
    std::vector<std::vector<float>> full(6, std::vector<float>(64));
    for (int64_t r = 0; r < 6; ++r) kernels::dequantize_row(t.w, r, full[r].data());
    SliceStore store;
    const auto cols = column_slice(t.w, 16, 48, &store, "x.weight", "--tensor-parallel-size 2");
    const auto rows = gather_rows(t.w, {{1, 2}, {4, 6}}, &store);
    const auto view = row_view(t.w, 2, 5);
    EXPECT_EQ(cols.in, 32);
    EXPECT_EQ(rows.out, 3);
    std::vector<float> got(64);
    for (int64_t r = 0; r < 6; ++r) {
      kernels::dequantize_row(cols, r, got.data());
      for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(got[i], full[r][16 + i]) << weight_format_name(f);
    }
    const int64_t picked[3] = {1, 4, 5};
    for (int64_t r = 0; r < 3; ++r) {
      kernels::dequantize_row(rows, r, got.data());
      EXPECT_EQ(got, full[picked[r]]) << weight_format_name(f);
      kernels::dequantize_row(view, r, got.data());
      EXPECT_EQ(got, full[2 + r]) << weight_format_name(f);
    }
    // Counting only: the same sizes, nothing copied.
    const auto counted = column_slice(t.w, 16, 48, nullptr, "x.weight", "");
    EXPECT_EQ(counted.stored_bytes(), cols.stored_bytes());
    EXPECT_EQ(counted.data, nullptr);
  }
}

TEST(LinearSlice, AnNvfp4ColumnSplitInsideABlockIsAnErrorNamingTheTensor) {
  const TestWeight t = make_weight(kernels::WeightFormat::NVFP4, 4, 64);
  SliceStore store;
  EXPECT_EQ(error_of([&] { column_slice(t.w, 8, 40, &store, "backbone.layers.3.mixer.o_proj", "--tensor-parallel-size 8"); }),
            "backbone.layers.3.mixer.o_proj: --tensor-parallel-size 8 splits its input dim (64) at columns [8, 40), not "
            "on the 16-element blocks of its NVFP4 quantization");
  const TestWeight d = make_weight(kernels::WeightFormat::Dense, 4, 64);
  EXPECT_NO_THROW(column_slice(d.w, 8, 40, &store, "x", ""));  // BF16: any column
}

}  // namespace
