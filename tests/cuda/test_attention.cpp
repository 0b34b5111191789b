// kv_cache_write_cuda + paged_attention_cuda against attention_cpu (kernels/attention.h).
// Each case builds a paged cache whose pages are handed out in a shuffled order (so every
// lookup goes through the block table), writes every sequence's K/V rows (BF16-rounded random
// values) in one shuffled kv_cache_write_cuda call with some empty (-1) slots mixed in, and
// runs the queries. The reference runs attention_cpu per query row on the same values gathered
// contiguously per sequence (FP8: dequantized exactly as stored, e4m3(x / s) * s).
// Tolerance (both dtypes, since the reference sees the very values the kernel reads): the
// output is one BF16 rounding of an fp32 result whose summation order differs from the CPU's:
// |got - ref| <= 2^-7 |ref| + 3e-5.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/attention.h"
#include "kernels/attention_cuda.h"

namespace nemotron::testing {
namespace {

using kernels::KvDType;

struct Shape {
  int64_t q_heads, kv_heads, head_dim;
  const char* name;
};
const Shape kNano{32, 2, 128, "nano/super 32/2/128"};
const Shape kUltra{64, 2, 128, "ultra 64/2/128"};
const Shape kFixture{4, 2, 32, "fixture 4/2/32"};

struct Seq {
  int64_t len;      // cached positions 0 .. len-1
  int64_t queries;  // query rows at positions len-queries .. len-1
};

const char* dtype_name(KvDType d) { return d == KvDType::BF16 ? "bf16" : "fp8"; }
constexpr float kKScale = 0.02f, kVScale = 0.01f;  // FP8: |x| > 4.48 (v) saturates at 448

// Host copy of a paged cache with its sequences, plus the device buffers.
struct PagedSetup {
  int64_t page_size = 16, max_pages = 0, num_pages = 0, W = 0;
  std::vector<int32_t> block_tables;         // [num_seqs, max_pages], -1 past the sequence
  std::vector<std::vector<float>> kf, vf;    // per sequence [len, W], values as read back
  std::vector<uint16_t> kb_all, vb_all;      // rows written, [R, W] BF16
  std::vector<int32_t> slots;                // [R]
  std::size_t elem = 2;
  std::unique_ptr<DeviceBuffer<uint8_t>> k, v;
  kernels::PagedKvCache cache;
};

float stored_value(float x, KvDType d, float s) {
  return d == KvDType::BF16 ? x : kernels::e4m3_to_float(kernels::float_to_e4m3(x / s)) * s;
}

void build_cache(PagedSetup& ps, const Shape& sh, const std::vector<Seq>& seqs, KvDType dtype, Rng& rng) {
  ps.W = sh.kv_heads * sh.head_dim;
  ps.elem = dtype == KvDType::BF16 ? 2 : 1;
  for (const Seq& s : seqs) ps.max_pages = std::max(ps.max_pages, (s.len + ps.page_size - 1) / ps.page_size + 1);
  int64_t used = 0;
  for (const Seq& s : seqs) used += (s.len + ps.page_size - 1) / ps.page_size;
  ps.num_pages = used + 3;  // a few pages no sequence owns
  std::vector<int32_t> order(static_cast<std::size_t>(ps.num_pages));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng.g);
  ps.block_tables.assign(seqs.size() * ps.max_pages, -1);
  std::size_t next = 0;
  std::vector<std::size_t> row_ids;  // rows written, shuffled below
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const int64_t len = seqs[i].len;
    for (int64_t j = 0; j < (len + ps.page_size - 1) / ps.page_size; ++j)
      ps.block_tables[i * ps.max_pages + j] = order[next++];
    std::vector<float> kx, vx;
    const auto kb = rng.bf16(static_cast<std::size_t>(len * ps.W), 1.0f, &kx);
    const auto vb = rng.bf16(static_cast<std::size_t>(len * ps.W), 1.5f, &vx);
    for (auto& x : kx) x = stored_value(x, dtype, kKScale);
    for (auto& x : vx) x = stored_value(x, dtype, kVScale);
    ps.kf.push_back(std::move(kx));
    ps.vf.push_back(std::move(vx));
    for (int64_t p = 0; p < len; ++p) {
      ps.kb_all.insert(ps.kb_all.end(), kb.begin() + p * ps.W, kb.begin() + (p + 1) * ps.W);
      ps.vb_all.insert(ps.vb_all.end(), vb.begin() + p * ps.W, vb.begin() + (p + 1) * ps.W);
      ps.slots.push_back(ps.block_tables[i * ps.max_pages + p / ps.page_size] * static_cast<int32_t>(ps.page_size) +
                         static_cast<int32_t>(p % ps.page_size));
    }
  }
  // Shuffle the rows (one write call for all sequences, in any order) and mix in empty slots
  // whose rows hold garbage that must not land anywhere.
  const std::size_t R = ps.slots.size();
  std::vector<std::size_t> perm(R);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng.g);
  std::vector<uint16_t> kb2, vb2;
  std::vector<int32_t> s2;
  for (std::size_t r = 0; r < R; ++r) {
    if (r % 7 == 3) {
      s2.push_back(-1);
      for (int64_t e = 0; e < ps.W; ++e) {
        kb2.push_back(0x7F80);  // +inf
        vb2.push_back(0x7F80);
      }
    }
    const std::size_t src = perm[r];
    s2.push_back(ps.slots[src]);
    kb2.insert(kb2.end(), ps.kb_all.begin() + src * ps.W, ps.kb_all.begin() + (src + 1) * ps.W);
    vb2.insert(vb2.end(), ps.vb_all.begin() + src * ps.W, ps.vb_all.begin() + (src + 1) * ps.W);
  }
  ps.kb_all.swap(kb2);
  ps.vb_all.swap(vb2);
  ps.slots.swap(s2);

  const std::size_t bytes = static_cast<std::size_t>(ps.num_pages * ps.page_size * ps.W) * ps.elem;
  ps.k = std::make_unique<DeviceBuffer<uint8_t>>(bytes);
  ps.v = std::make_unique<DeviceBuffer<uint8_t>>(bytes);
  ps.k->poison();  // NaN in BF16 and E4M3: a slot read but never written shows
  ps.v->poison();
  ps.cache.k = ps.k->get();
  ps.cache.v = ps.v->get();
  ps.cache.dtype = dtype;
  ps.cache.num_pages = ps.num_pages;
  ps.cache.page_size = ps.page_size;
  ps.cache.kv_heads = sh.kv_heads;
  ps.cache.head_dim = sh.head_dim;
  ps.cache.k_scale = dtype == KvDType::BF16 ? 1.0f : kKScale;
  ps.cache.v_scale = dtype == KvDType::BF16 ? 1.0f : kVScale;
  DeviceBuffer<uint16_t> dk(ps.kb_all), dv(ps.vb_all);
  DeviceBuffer<int32_t> ds(ps.slots);
  kernels::kv_cache_write_cuda(ps.cache, dk.get(), dv.get(), ds.get(), static_cast<int64_t>(ps.slots.size()), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// Attention arguments over a built cache: T query rows (q, out [T, q_heads * head_dim]) with
// their sequences and positions, the cache's block tables.
kernels::PagedAttentionArgs paged_args(const PagedSetup& ps, const Shape& sh, int64_t T, const uint16_t* q,
                                       const int32_t* seq, const int32_t* pos, const int32_t* block_tables,
                                       uint16_t* out) {
  kernels::PagedAttentionArgs a;
  a.q = q;
  a.T = T;
  a.q_heads = sh.q_heads;
  a.query_seq = seq;
  a.query_pos = pos;
  a.block_tables = block_tables;
  a.max_pages = ps.max_pages;
  a.cache = ps.cache;
  a.out = out;
  return a;
}

struct CaseOpts {
  int64_t num_splits = 0;
  float scale = 0.0f;
  bool shuffle_rows = false;
  int64_t page_size = 16;
  int64_t max_context = 0;  // hint; smaller than the real context: the last split takes the rest
  int tensor_cores = 0;     // PagedAttentionArgs::tensor_cores (0: the CUDA-core kernel, whatever the environment)
  int fp8_direct = 0;       // PagedAttentionArgs::fp8_direct (0: FP8 through BF16 tiles, whatever the environment)
};

// The tensor-core kernels' tolerance (the runs test below says why): the probabilities enter
// P V rounded to BF16, so an element may be off by 2^-7 |ref| + 2^-8 max|v|, and on average
// within 2^-7 of the average |ref|.
float vmax_of(const PagedSetup& ps) {
  float vmax = 0;
  for (const auto& v : ps.vf)
    for (float x : v) vmax = std::max(vmax, std::fabs(x));
  return vmax;
}
void expect_mean_error_within(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref) {
  double err = 0, mag = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    err += std::fabs(static_cast<double>(got[i]) - ref[i]);
    mag += std::fabs(static_cast<double>(ref[i]));
  }
  EXPECT_LE(err, mag / 128 + 1e-6) << what << ": mean error " << err / static_cast<double>(ref.size())
                                   << " against mean |ref| " << mag / static_cast<double>(ref.size());
}

void run_case(const std::string& label, const Shape& sh, const std::vector<Seq>& seqs, KvDType dtype,
              const CaseOpts& o, uint64_t seed) {
  Rng rng(seed);
  PagedSetup ps;
  ps.page_size = o.page_size;
  build_cache(ps, sh, seqs, dtype, rng);
  if (::testing::Test::HasFatalFailure()) return;
  std::vector<int32_t> qseq, qpos;
  for (std::size_t i = 0; i < seqs.size(); ++i)
    for (int64_t p = seqs[i].len - seqs[i].queries; p < seqs[i].len; ++p) {
      qseq.push_back(static_cast<int32_t>(i));
      qpos.push_back(static_cast<int32_t>(p));
    }
  if (o.shuffle_rows) {
    std::vector<std::size_t> perm(qseq.size());
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng.g);
    std::vector<int32_t> a(perm.size()), b(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) {
      a[i] = qseq[perm[i]];
      b[i] = qpos[perm[i]];
    }
    qseq.swap(a);
    qpos.swap(b);
  }
  const int64_t T = static_cast<int64_t>(qseq.size()), D = sh.head_dim, qw = sh.q_heads * D;
  std::vector<float> qf;
  const auto qb = rng.bf16(static_cast<std::size_t>(T * qw), 1.0f, &qf);
  DeviceBuffer<uint16_t> dq(qb), dout(static_cast<std::size_t>(T * qw));
  DeviceBuffer<int32_t> dseq(qseq), dpos(qpos), dbt(ps.block_tables);
  dout.poison();
  kernels::PagedAttentionArgs a = paged_args(ps, sh, T, dq.get(), dseq.get(), dpos.get(), dbt.get(), dout.get());
  a.scale = o.scale;
  a.num_splits = o.num_splits;
  a.max_context = o.max_context;
  a.tensor_cores = o.tensor_cores;
  a.fp8_direct = o.fp8_direct;
  kernels::paged_attention_cuda(a, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = bf16_to_f32(dout.download());

  // attention_cpu scales by 1/sqrt(D): a custom scale s is folded into q (q * s * sqrt(D)).
  const float qmul = o.scale > 0 ? o.scale * std::sqrt(static_cast<float>(D)) : 1.0f;
  const kernels::AttentionDims dims{sh.q_heads, sh.kv_heads, D};
  std::vector<float> ref(static_cast<std::size_t>(T * qw)), qrow(static_cast<std::size_t>(qw));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < qw; ++i) qrow[i] = qf[t * qw + i] * qmul;
    kernels::attention_cpu(qrow.data(), ps.kf[qseq[t]].data(), ps.vf[qseq[t]].data(), dims, 1, qpos[t],
                           ref.data() + t * qw);
  }
  const std::string what = label + " " + sh.name + " " + dtype_name(dtype) +
                           (o.num_splits == 1 ? " 1-pass" : o.num_splits == 0 ? " auto-split" : " splits<=" + std::to_string(o.num_splits)) +
                           (o.max_context ? " ctx-hint=" + std::to_string(o.max_context) : "") +
                           (o.tensor_cores ? " tensor-cores" : "") + (o.fp8_direct ? " fp8-direct" : "") +
                           " page " + std::to_string(o.page_size) +
                           " T=" + std::to_string(T);
  if (o.tensor_cores != 1) {
    EXPECT_EQ(report(what, got, ref, uniform_tol(ref.size(), 3e-5f, ref, 1.0f / 128)), 0u);
    return;
  }
  EXPECT_EQ(report(what, got, ref, uniform_tol(ref.size(), 3e-5f + vmax_of(ps) / 256, ref, 1.0f / 128)), 0u);
  expect_mean_error_within(what, got, ref);
}

const std::vector<Seq> kDecode = {{1, 1}, {17, 1}, {300, 1}, {4100, 1}};
const std::vector<Seq> kPrefill = {{87, 37}};  // 37 new rows after 50 cached positions

TEST(AttentionCuda, Decode) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 100;
  for (const Shape& sh : {kNano, kUltra, kFixture})
    for (KvDType d : {KvDType::BF16, KvDType::FP8_E4M3})
      for (int64_t splits : {0, 1}) run_case("decode", sh, kDecode, d, {splits, 0.0f, false, 16}, ++seed);
}

TEST(AttentionCuda, PrefillChunk) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 200;
  for (const Shape& sh : {kNano, kUltra, kFixture})
    for (KvDType d : {KvDType::BF16, KvDType::FP8_E4M3})
      for (int64_t splits : {0, 1}) run_case("prefill", sh, kPrefill, d, {splits, 0.0f, false, 16}, ++seed);
}

TEST(AttentionCuda, MixedBatch) {
  ASSERT_TRUE(have_device());
  std::vector<Seq> mixed = kDecode;
  mixed.push_back(kPrefill[0]);
  uint64_t seed = 300;
  for (const Shape& sh : {kNano, kUltra, kFixture})
    for (KvDType d : {KvDType::BF16, KvDType::FP8_E4M3})
      for (int64_t splits : {0, 1, 3}) run_case("mixed", sh, mixed, d, {splits, 0.0f, true, 16}, ++seed);
  // A max_context hint below the real context (the split partition then ends early and the
  // last split covers the rest) must not change results.
  run_case("mixed", kNano, mixed, KvDType::BF16, {0, 0.0f, true, 16, 100}, ++seed);
  run_case("mixed", kFixture, mixed, KvDType::FP8_E4M3, {0, 0.0f, true, 16, 1000}, ++seed);
}

// Shapes off the Nemotron path: head_dim 256 (8 heads per block, 16-position tiles) with a
// group of 20 (head chunks 8 + 8 + 4), a group of 24 at head_dim 128 (chunks 16 + 8), head_dim
// 40 (PV threads not a power of two), plain MHA, page sizes 32 and 1, custom scales.
TEST(AttentionCuda, OtherShapesAndScale) {
  ASSERT_TRUE(have_device());
  std::vector<Seq> mixed = {{5, 1}, {700, 2}, {87, 37}};
  run_case("other", Shape{20, 1, 256, "20/1/256"}, mixed, KvDType::BF16, {0, 0.0f, true, 32}, 401);
  run_case("other", Shape{20, 1, 256, "20/1/256"}, mixed, KvDType::FP8_E4M3, {1, 0.0f, true, 16}, 402);
  run_case("other", Shape{48, 2, 128, "48/2/128"}, mixed, KvDType::BF16, {0, 0.0f, true, 16}, 406);
  run_case("other", Shape{6, 3, 40, "6/3/40"}, mixed, KvDType::BF16, {0, 0.2f, true, 16}, 403);
  run_case("other", Shape{6, 3, 40, "6/3/40"}, mixed, KvDType::FP8_E4M3, {0, 0.0f, false, 1}, 404);
  run_case("other", Shape{16, 16, 64, "16/16/64 MHA"}, mixed, KvDType::BF16, {0, 0.1f, true, 16}, 405);
}

// Every row on the tensor-core kernel (attention_decode.cu) against attention_cpu: decode rows
// at 1 to 70,000 positions (one split, automatic splits, at most 3), prefill rows, BF16 and FP8
// (through BF16 tiles, and direct into f16 mmas), GQA groups of 16 (Nano / Super), 32 (Ultra:
// two 16-head chunks), 24 (chunks of 16 and 8), 2 (fixture) and 1 (MHA), head_dim 128, 64 and
// 32, page sizes 16, 1 and 32.
TEST(AttentionCuda, DecodeOnTensorCores) {
  ASSERT_TRUE(have_device());
  std::vector<Seq> decode = kDecode;
  decode.push_back({70000, 1});
  std::vector<Seq> mixed = kDecode;
  mixed.push_back(kPrefill[0]);
  uint64_t seed = 900;
  struct Kv {
    KvDType dtype;
    int fp8_direct;
  };
  const Kv kvs[] = {{KvDType::BF16, 0}, {KvDType::FP8_E4M3, 0}, {KvDType::FP8_E4M3, 1}};
  for (const Shape& sh : {kNano, kUltra, kFixture})
    for (const Kv& kv : kvs) {
      for (int64_t splits : {0, 1, 3}) {
        CaseOpts o{splits, 0.0f, false, 16};
        o.tensor_cores = 1;
        o.fp8_direct = kv.fp8_direct;
        run_case("decode", sh, decode, kv.dtype, o, ++seed);
      }
      CaseOpts o{0, 0.0f, true, 16};
      o.tensor_cores = 1;
      o.fp8_direct = kv.fp8_direct;
      run_case("mixed", sh, mixed, kv.dtype, o, ++seed);
    }
  const std::vector<Seq> short_mixed = {{5, 1}, {700, 2}, {87, 37}};
  for (const auto& [sh, page] : {std::pair{Shape{48, 2, 128, "48/2/128"}, int64_t{16}},
                                 std::pair{Shape{16, 16, 64, "16/16/64 MHA"}, int64_t{1}},
                                 std::pair{Shape{8, 1, 64, "8/1/64"}, int64_t{32}}})
    for (const Kv& kv : kvs) {
      CaseOpts o{0, 0.1f, true, page};
      o.tensor_cores = 1;
      o.fp8_direct = kv.fp8_direct;
      run_case("other", sh, short_mixed, kv.dtype, o, ++seed);
    }
}

// paged_attention_runs_cuda (tensor cores) against attention_cpu. Every sequence's query rows
// are consecutive; the sequences with `run` set are passed as runs, the others not: their
// output rows must keep the poison (untouched). Tolerance: the probabilities enter the P V
// product rounded to BF16 (relative error <= 2^-9 each), which moves an output by up to 2^-9
// of the spread of the values it averages (measured on an H100: 0.0156 at |v| up to ~7), so an
// element may be off by 2^-7 |ref| + 2^-8 max|v|; and on average the error must stay within
// 2^-7 of the average |ref| (a wrong key or dimension anywhere is off by about |ref|).
struct RunSeq {
  Seq s;
  bool run = true;
};

void run_runs_case(const std::string& label, const Shape& sh, const std::vector<RunSeq>& rs, KvDType dtype,
                   int64_t page_size, float scale, uint64_t seed) {
  Rng rng(seed);
  PagedSetup ps;
  ps.page_size = page_size;
  std::vector<Seq> seqs;
  for (const RunSeq& r : rs) seqs.push_back(r.s);
  build_cache(ps, sh, seqs, dtype, rng);
  if (::testing::Test::HasFatalFailure()) return;
  std::vector<int32_t> qseq, qpos;
  std::vector<kernels::AttentionRun> runs;
  std::vector<bool> in_run;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const int64_t row0 = static_cast<int64_t>(qseq.size());
    for (int64_t p = seqs[i].len - seqs[i].queries; p < seqs[i].len; ++p) {
      qseq.push_back(static_cast<int32_t>(i));
      qpos.push_back(static_cast<int32_t>(p));
      in_run.push_back(rs[i].run);
    }
    if (rs[i].run) runs.push_back({row0, seqs[i].queries});
  }
  const int64_t T = static_cast<int64_t>(qseq.size()), D = sh.head_dim, qw = sh.q_heads * D;
  std::vector<float> qf;
  const auto qb = rng.bf16(static_cast<std::size_t>(T * qw), 1.0f, &qf);
  DeviceBuffer<uint16_t> dq(qb), dout(static_cast<std::size_t>(T * qw));
  DeviceBuffer<int32_t> dseq(qseq), dpos(qpos), dbt(ps.block_tables);
  dout.poison();
  kernels::PagedAttentionArgs a = paged_args(ps, sh, T, dq.get(), dseq.get(), dpos.get(), dbt.get(), dout.get());
  a.scale = scale;
  ASSERT_TRUE(kernels::paged_attention_runs_supported(a));
  kernels::paged_attention_runs_cuda(a, runs.data(), static_cast<int64_t>(runs.size()), nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto raw = dout.download();
  const auto all = bf16_to_f32(raw);
  const float qmul = scale > 0 ? scale * std::sqrt(static_cast<float>(D)) : 1.0f;
  const kernels::AttentionDims dims{sh.q_heads, sh.kv_heads, D};
  std::vector<float> ref, got, row(static_cast<std::size_t>(qw)), qrow(static_cast<std::size_t>(qw));
  std::size_t touched = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (!in_run[t]) {
      for (int64_t i = 0; i < qw; ++i) touched += raw[t * qw + i] != 0xFFFF;
      continue;
    }
    for (int64_t i = 0; i < qw; ++i) qrow[i] = qf[t * qw + i] * qmul;
    kernels::attention_cpu(qrow.data(), ps.kf[qseq[t]].data(), ps.vf[qseq[t]].data(), dims, 1, qpos[t], row.data());
    ref.insert(ref.end(), row.begin(), row.end());
    got.insert(got.end(), all.begin() + t * qw, all.begin() + (t + 1) * qw);
  }
  EXPECT_EQ(touched, 0u) << label << ": rows outside the runs were written";
  const std::string what = label + " " + sh.name + " " + dtype_name(dtype) + " page " + std::to_string(page_size) +
                           " runs " + std::to_string(runs.size()) + " T=" + std::to_string(T);
  EXPECT_EQ(report(what, got, ref, uniform_tol(ref.size(), 3e-5f + vmax_of(ps) / 256, ref, 1.0f / 128)), 0u);
  expect_mean_error_within(what, got, ref);
}

TEST(AttentionRunsCuda, PrefillRunsMatchTheCpu) {
  ASSERT_TRUE(have_device());
  uint64_t seed = 700;
  // One partial tile; several tiles with a partial last one; a deep context; two runs in one
  // launch beside rows left to the other kernel; a run of one row.
  const std::vector<std::vector<RunSeq>> cases = {
      {{{87, 37}}},
      {{{300, 200}}},
      {{{5000, 130}}},
      {{{700, 70}}, {{17, 1}, false}, {{65, 65}}, {{300, 1}, false}},
      {{{17, 1}}, {{129, 128}}},
  };
  for (const Shape& sh : {kNano, kUltra, kFixture})
    for (KvDType d : {KvDType::BF16, KvDType::FP8_E4M3})
      for (const auto& c : cases) run_runs_case("runs", sh, c, d, 16, 0.0f, ++seed);
  // Other shapes: MHA at head_dim 64, page sizes 1 and 32, a custom scale.
  run_runs_case("runs", Shape{16, 16, 64, "16/16/64 MHA"}, {{{300, 150}}, {{90, 90}}}, KvDType::BF16, 1, 0.1f, ++seed);
  run_runs_case("runs", Shape{8, 2, 64, "8/2/64"}, {{{1000, 300}}}, KvDType::FP8_E4M3, 32, 0.0f, ++seed);
  run_runs_case("runs", kNano, {{{2000, 64}}, {{64, 64}}}, KvDType::BF16, 32, 0.05f, ++seed);
  // Odd groups (one q head per block instead of two), FP8 and BF16.
  run_runs_case("runs", Shape{6, 2, 128, "6/2/128"}, {{{700, 300}}, {{40, 40}}}, KvDType::FP8_E4M3, 16, 0.0f, ++seed);
  run_runs_case("runs", Shape{3, 1, 32, "3/1/32"}, {{{200, 130}}}, KvDType::BF16, 16, 0.0f, ++seed);
}

// Inside a run: a row of another sequence or past the block table is NaN, the others are not;
// a page id outside the cache makes the rows of the tiles that read it NaN.
TEST(AttentionRunsCuda, BadDeviceIdsGiveNaNRows) {
  ASSERT_TRUE(have_device());
  Rng rng(800);
  PagedSetup ps;
  const Shape sh = kFixture;
  build_cache(ps, sh, {{200, 1}, {200, 1}}, KvDType::BF16, rng);
  if (HasFatalFailure()) return;
  ps.block_tables[1 * ps.max_pages + 10] = static_cast<int32_t>(ps.num_pages);  // seq 1, page 10: bad
  // Run A: rows 0..69 of seq 0 (positions 130..199), row 5 claims seq 1, row 9 a position past
  // the table. Run B: rows 70..139 of seq 1 at positions 100..169: tile 1 (rows 134..139,
  // positions 164..169) and tile 0 (positions 100..163) both read page 10 (positions 160..175)
  // only if their keys reach it: tile 0 reaches 163, tile 1 169, so both are NaN.
  // Run C: rows 140..149 of seq 1 at positions 0..9: never reaches page 10, fine.
  std::vector<int32_t> qseq, qpos;
  for (int i = 0; i < 70; ++i) {
    qseq.push_back(i == 5 ? 1 : 0);
    qpos.push_back(i == 9 ? static_cast<int32_t>(ps.max_pages * ps.page_size) : 130 + i);
  }
  for (int i = 0; i < 70; ++i) {
    qseq.push_back(1);
    qpos.push_back(100 + i);
  }
  for (int i = 0; i < 10; ++i) {
    qseq.push_back(1);
    qpos.push_back(i);
  }
  const int64_t T = static_cast<int64_t>(qseq.size()), qw = sh.q_heads * sh.head_dim;
  std::vector<float> qf;
  DeviceBuffer<uint16_t> dq(rng.bf16(static_cast<std::size_t>(T * qw), 1.0f, &qf)), dout(T * qw);
  DeviceBuffer<int32_t> dseq(qseq), dpos(qpos), dbt(ps.block_tables);
  dout.poison();
  kernels::PagedAttentionArgs a = paged_args(ps, sh, T, dq.get(), dseq.get(), dpos.get(), dbt.get(), dout.get());
  const std::vector<kernels::AttentionRun> runs = {{0, 70}, {70, 70}, {140, 10}};
  kernels::paged_attention_runs_cuda(a, runs.data(), 3, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = bf16_to_f32(dout.download());
  const kernels::AttentionDims dims{sh.q_heads, sh.kv_heads, sh.head_dim};
  std::vector<float> ref(static_cast<std::size_t>(qw));
  for (int64_t t = 0; t < T; ++t) {
    const bool good = (t < 70 && t != 5 && t != 9) || t >= 140;
    std::size_t nan = 0;
    for (int64_t i = 0; i < qw; ++i) nan += std::isnan(got[t * qw + i]);
    if (!good) {
      EXPECT_EQ(nan, static_cast<std::size_t>(qw)) << "row " << t;
      continue;
    }
    EXPECT_EQ(nan, 0u) << "row " << t;
    kernels::attention_cpu(qf.data() + t * qw, ps.kf[qseq[t]].data(), ps.vf[qseq[t]].data(), dims, 1, qpos[t], ref.data());
    for (int64_t i = 0; i < qw; ++i)
      EXPECT_NEAR(got[t * qw + i], ref[i], 0.02f + 0.01f * std::fabs(ref[i])) << "row " << t << " element " << i;
  }
  // Argument errors.
  const std::vector<kernels::AttentionRun> outside = {{140, 11}};
  EXPECT_THROW(kernels::paged_attention_runs_cuda(a, outside.data(), 1, nullptr), Error);
  kernels::PagedAttentionArgs wide = a;
  wide.cache.head_dim = 256;
  EXPECT_FALSE(kernels::paged_attention_runs_supported(wide));
  EXPECT_THROW(kernels::paged_attention_runs_cuda(wide, runs.data(), 1, nullptr), Error);
}

// Empty (-1) and out-of-range slots are skipped; written slots hold exactly the BF16 bits or
// the E4M3 code of value / scale; every other byte keeps its poison.
TEST(AttentionCuda, KvWriteSlotsExact) {
  ASSERT_TRUE(have_device());
  Rng rng(500);
  for (KvDType d : {KvDType::BF16, KvDType::FP8_E4M3}) {
    const int64_t kvh = 2, D = 32, W = kvh * D, pages = 3, page = 4, nslots = pages * page;
    const std::vector<int32_t> slots = {5, -1, 0, 11, 12, -7, 7, 1 << 30};
    const int64_t T = static_cast<int64_t>(slots.size());
    std::vector<float> kf, vf;
    const auto kb = rng.bf16(static_cast<std::size_t>(T * W), 1.0f, &kf);
    const auto vb = rng.bf16(static_cast<std::size_t>(T * W), 3.0f, &vf);
    const std::size_t elem = d == KvDType::BF16 ? 2 : 1, bytes = static_cast<std::size_t>(nslots * W) * elem;
    DeviceBuffer<uint8_t> ck(bytes), cv(bytes);
    ck.poison();
    cv.poison();
    kernels::PagedKvCache c;
    c.k = ck.get();
    c.v = cv.get();
    c.dtype = d;
    c.num_pages = pages;
    c.page_size = page;
    c.kv_heads = kvh;
    c.head_dim = D;
    c.k_scale = d == KvDType::BF16 ? 1.0f : 0.05f;
    c.v_scale = d == KvDType::BF16 ? 1.0f : 0.004f;
    DeviceBuffer<uint16_t> dk(kb), dv(vb);
    DeviceBuffer<int32_t> ds(slots);
    kernels::kv_cache_write_cuda(c, dk.get(), dv.get(), ds.get(), T, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
    for (int which = 0; which < 2; ++which) {
      std::vector<uint8_t> expect(bytes, 0xFF);
      const auto& src = which == 0 ? kb : vb;
      const float s = which == 0 ? c.k_scale : c.v_scale;
      for (int64_t t = 0; t < T; ++t) {
        if (slots[t] < 0 || slots[t] >= nslots) continue;
        for (int64_t e = 0; e < W; ++e) {
          const uint16_t b = src[t * W + e];
          const std::size_t at = (static_cast<std::size_t>(slots[t]) * W + e) * elem;
          if (d == KvDType::BF16) {
            std::memcpy(&expect[at], &b, 2);
          } else {
            expect[at] = kernels::float_to_e4m3(kernels::bf16_to_float(b) / s);
          }
        }
      }
      const auto got = (which == 0 ? ck : cv).download();
      std::size_t bad = 0;
      for (std::size_t i = 0; i < bytes; ++i) bad += got[i] != expect[i];
      std::printf("[ max_err ] kv write %s %s: %zu bytes, %zu differ\n", dtype_name(d), which == 0 ? "k" : "v",
                  bytes, bad);
      EXPECT_EQ(bad, 0u);
    }
  }
}

// Rows whose ids would read out of bounds (negative sequence, position past the block table,
// a page id outside the cache) come out NaN; the other rows of the batch are unaffected.
TEST(AttentionCuda, BadDeviceIdsGiveNaNRows) {
  ASSERT_TRUE(have_device());
  for (int run = 0; run < 6; ++run) {
    const int64_t splits = run % 2 == 0 ? 0 : 1;
    // The CUDA-core kernel, the tensor-core one, and the latter on FP8 K/V direct into f16 mmas.
    const int tensor_cores = run / 2 >= 1 ? 1 : 0, fp8_direct = run / 2 == 2 ? 1 : 0;
    Rng rng(600);
    PagedSetup ps;
    const Shape sh = kFixture;
    build_cache(ps, sh, {{600, 1}, {600, 1}}, fp8_direct ? KvDType::FP8_E4M3 : KvDType::BF16, rng);
    if (HasFatalFailure()) return;
    ps.block_tables[1 * ps.max_pages + 1] = static_cast<int32_t>(ps.num_pages);  // seq 1, page 1: bad id
    const std::vector<int32_t> qseq = {0, -1, 0, 1, 1};
    const std::vector<int32_t> qpos = {599, 5, static_cast<int32_t>(ps.max_pages * ps.page_size), 10, 599};
    const std::vector<bool> good = {true, false, false, true, false};  // row 3 stays on page 0
    const int64_t T = 5, qw = sh.q_heads * sh.head_dim;
    std::vector<float> qf;
    DeviceBuffer<uint16_t> dq(rng.bf16(static_cast<std::size_t>(T * qw), 1.0f, &qf)), dout(T * qw);
    DeviceBuffer<int32_t> dseq(qseq), dpos(qpos), dbt(ps.block_tables);
    dout.poison();
    kernels::PagedAttentionArgs a = paged_args(ps, sh, T, dq.get(), dseq.get(), dpos.get(), dbt.get(), dout.get());
    a.num_splits = splits;
    a.tensor_cores = tensor_cores;
    a.fp8_direct = fp8_direct;
    kernels::paged_attention_cuda(a, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
    const auto got = bf16_to_f32(dout.download());
    const kernels::AttentionDims dims{sh.q_heads, sh.kv_heads, sh.head_dim};
    std::vector<float> g, r;
    for (int64_t t = 0; t < T; ++t) {
      if (!good[t]) {
        for (int64_t i = 0; i < qw; ++i) EXPECT_TRUE(std::isnan(got[t * qw + i])) << "row " << t << " elem " << i;
        continue;
      }
      std::vector<float> ref(static_cast<std::size_t>(qw));
      kernels::attention_cpu(qf.data() + t * qw, ps.kf[qseq[t]].data(), ps.vf[qseq[t]].data(), dims, 1, qpos[t],
                             ref.data());
      g.insert(g.end(), got.begin() + t * qw, got.begin() + (t + 1) * qw);
      r.insert(r.end(), ref.begin(), ref.end());
    }
    EXPECT_EQ(report(std::string("bad ids, good rows") + (splits == 1 ? " 1-pass" : " auto-split") +
                         (tensor_cores ? " tensor-cores" : "") + (fp8_direct ? " fp8-direct" : ""),
                     g, r, uniform_tol(r.size(), 3e-5f + (tensor_cores ? vmax_of(ps) / 256 : 0.0f), r, 1.0f / 128)),
              0u);
  }
}

TEST(AttentionCuda, RejectsBadArguments) {
  // Fake, never dereferenced pointers: validation throws before any launch.
  auto* p16 = reinterpret_cast<uint16_t*>(uintptr_t{0x10000});
  auto* i32 = reinterpret_cast<int32_t*>(uintptr_t{0x20000});
  kernels::PagedAttentionArgs good;
  good.q = p16;
  good.out = p16;
  good.T = 1;
  good.q_heads = 4;
  good.query_seq = i32;
  good.query_pos = i32;
  good.block_tables = i32;
  good.max_pages = 4;
  good.cache.k = p16;
  good.cache.v = p16;
  good.cache.num_pages = 4;
  good.cache.kv_heads = 2;
  good.cache.head_dim = 32;
  auto expect_error = [&](const char* what, auto mutate) {
    kernels::PagedAttentionArgs a = good;
    mutate(a);
    EXPECT_THROW(kernels::paged_attention_cuda(a, nullptr), Error) << what;
  };
  expect_error("q_heads % kv_heads", [](auto& a) { a.q_heads = 3; });
  expect_error("kv_heads 0", [](auto& a) { a.cache.kv_heads = 0; });
  expect_error("head_dim % 8", [](auto& a) { a.cache.head_dim = 36; });
  expect_error("head_dim > 256", [](auto& a) { a.cache.head_dim = 264; });
  expect_error("T < 0", [](auto& a) { a.T = -1; });
  expect_error("null q", [](auto& a) { a.q = nullptr; });
  expect_error("null block table", [](auto& a) { a.block_tables = nullptr; });
  expect_error("null cache", [](auto& a) { a.cache.v = nullptr; });
  expect_error("misaligned out", [p16](auto& a) { a.out = p16 + 1; });
  expect_error("page_size 0", [](auto& a) { a.cache.page_size = 0; });
  expect_error("max_pages 0", [](auto& a) { a.max_pages = 0; });
  expect_error("negative scale", [](auto& a) { a.scale = -1.0f; });
  expect_error("NaN scale", [](auto& a) { a.scale = std::nanf(""); });
  expect_error("fp8 scale 0", [](auto& a) {
    a.cache.dtype = KvDType::FP8_E4M3;
    a.cache.k_scale = 0.0f;
  });
  expect_error("positions overflow int32", [](auto& a) { a.max_pages = int64_t{1} << 28; });

  kernels::PagedKvCache c = good.cache;
  EXPECT_THROW(kernels::kv_cache_write_cuda(c, p16, p16, i32, -1, nullptr), Error);
  EXPECT_THROW(kernels::kv_cache_write_cuda(c, nullptr, p16, i32, 1, nullptr), Error);
  EXPECT_THROW(kernels::kv_cache_write_cuda(c, p16, p16 + 4, i32, 1, nullptr), Error);
  c.head_dim = 12;
  EXPECT_THROW(kernels::kv_cache_write_cuda(c, p16, p16, i32, 1, nullptr), Error);
}

}  // namespace
}  // namespace nemotron::testing
