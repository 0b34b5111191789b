// Safetensors reader/writer: round trips, the real fixtures (names, shapes and bytes read
// from their headers with Python's json/struct), one test per malformed-input error, and a
// light seeded fuzz of header bytes.
#include "model/checkpoint/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "util/error.h"
#include "util/json.h"

namespace nemotron::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kFixtures = std::string(NEMOTRON_TEST_DATA) + "/fixtures/";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A file with the given header text (length prefix = its size unless overridden) and data.
std::string raw_file(const std::string& header, const std::string& data,
                     int64_t len_override = -1) {
  const uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Runs fn, expecting nemotron::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning " << parts.front();
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_THAT(std::string(e.what()), HasSubstr(p));
  }
}

TensorData tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                  uint8_t fill) {
  TensorData t{name, dtype, shape, {}};
  std::size_t n = 0;
  EXPECT_TRUE(checked_nbytes(dtype, shape, &n));
  for (std::size_t i = 0; i < n; ++i) t.bytes.push_back(static_cast<uint8_t>(fill + i * 7));
  return t;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "nemotron_st_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  // Writes a raw file and expects SafetensorsFile::open to fail naming the file + `parts`.
  void expect_open_error(const std::string& bytes, std::vector<std::string> parts) {
    const std::string p = path("bad.safetensors");
    spit(p, bytes);
    parts.push_back(p);
    expect_error([&] { SafetensorsFile::open(p); }, parts);
  }
  std::string dir_;
};

TEST(DTypeTest, NamesSizesAndParsing) {
  const std::vector<std::tuple<DType, std::string, std::size_t>> all = {
      {DType::BF16, "BF16", 2}, {DType::F16, "F16", 2},  {DType::F32, "F32", 4},
      {DType::F8_E4M3, "F8_E4M3", 1}, {DType::U8, "U8", 1}, {DType::I64, "I64", 8}};
  for (const auto& [dtype, name, size] : all) {
    EXPECT_EQ(dtype_name(dtype), name);
    EXPECT_EQ(dtype_size(dtype), size);
    DType parsed = DType::U8;
    ASSERT_TRUE(parse_dtype(name, &parsed)) << name;
    EXPECT_EQ(parsed, dtype);
  }
  DType d = DType::BF16;
  for (const char* bad : {"F64", "bf16", "", "BOOL", "F8_E5M2", "I32", "F32 "}) {
    EXPECT_FALSE(parse_dtype(bad, &d)) << bad;
  }
  EXPECT_EQ(d, DType::BF16);
}

TEST(DTypeTest, TensorInfoHelpers) {
  TensorInfo t;
  t.shape = {10304, 2688};
  EXPECT_EQ(t.shape_string(), "[10304, 2688]");
  EXPECT_EQ(t.numel(), 10304 * 2688);
  t.shape = {};
  EXPECT_EQ(t.shape_string(), "[]");
  EXPECT_EQ(t.numel(), 1);
  t.shape = {3, 0, 5};
  EXPECT_EQ(t.numel(), 0);
  std::size_t n = 0;
  EXPECT_TRUE(checked_nbytes(DType::I64, {3, 5}, &n));
  EXPECT_EQ(n, 120u);
  EXPECT_FALSE(checked_nbytes(DType::F32, {-1, 4}, &n));
  EXPECT_FALSE(checked_nbytes(DType::U8, {int64_t{1} << 32, int64_t{1} << 32}, &n));
  EXPECT_FALSE(checked_nbytes(DType::I64, {int64_t{1} << 62}, &n));  // bytes overflow
  t.shape = {-2};
  EXPECT_THROW(t.numel(), Error);
}

TEST_F(SafetensorsTest, RoundTrip) {
  std::vector<TensorData> in = {
      tensor("z.bf16", DType::BF16, {3, 5}, 1),
      tensor("a.f32", DType::F32, {2, 3}, 2),
      tensor("m.f16", DType::F16, {7}, 3),
      tensor("b.fp8", DType::F8_E4M3, {4, 3}, 4),
      tensor("c.u8", DType::U8, {5}, 5),
      tensor("d.i64", DType::I64, {1, 2}, 6),
      tensor("scalar", DType::F32, {}, 7),
      tensor("empty", DType::BF16, {0, 4}, 8),
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "héllo \"q\""}};
  write_safetensors(path("rt.safetensors"), in, meta);
  auto f = SafetensorsFile::open(path("rt.safetensors"));
  EXPECT_EQ(f->metadata(), meta);
  ASSERT_EQ(f->tensors().size(), in.size());
  for (const auto& t : in) {
    const auto it = f->tensors().find(t.name);
    ASSERT_NE(it, f->tensors().end()) << t.name;
    const TensorInfo& info = it->second;
    EXPECT_EQ(info.name, t.name);
    EXPECT_EQ(info.dtype, t.dtype) << t.name;
    EXPECT_EQ(info.shape, t.shape) << t.name;
    EXPECT_EQ(info.file, path("rt.safetensors"));
    ASSERT_EQ(info.nbytes, t.bytes.size()) << t.name;
    EXPECT_EQ(std::vector<uint8_t>(info.data, info.data + info.nbytes), t.bytes) << t.name;
  }
  EXPECT_EQ(f->tensors().at("scalar").numel(), 1);
  EXPECT_EQ(f->tensors().at("empty").numel(), 0);

  // Layout: header length a multiple of 8, tensors in name order, data back to back.
  const std::string raw = slurp(path("rt.safetensors"));
  EXPECT_EQ(f->file_size(), raw.size());
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const Json header = parse_json(raw.substr(8, n), "header");
  std::vector<std::string> keys;
  for (const auto& [k, v] : header.items()) keys.push_back(k);
  EXPECT_EQ(keys.front(), "__metadata__");
  EXPECT_TRUE(std::is_sorted(keys.begin() + 1, keys.end()));
  uint64_t expect_begin = 0;
  for (std::size_t i = 1; i < keys.size(); ++i) {
    EXPECT_EQ(header[keys[i]]["data_offsets"][0].get<uint64_t>(), expect_begin);
    expect_begin = header[keys[i]]["data_offsets"][1].get<uint64_t>();
  }
  EXPECT_EQ(8 + n + expect_begin, raw.size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f->tensors().at("a.f32").data) % 4, 0u);
}

TEST_F(SafetensorsTest, RoundTripWithoutMetadataAndEmptyFile) {
  write_safetensors(path("a.safetensors"), {make_f32_tensor("x", {2, 2}, {1, -2, 3.5f, 4})});
  auto f = SafetensorsFile::open(path("a.safetensors"));
  EXPECT_TRUE(f->metadata().empty());
  const TensorInfo& x = f->tensors().at("x");
  float v[4];
  std::memcpy(v, x.data, sizeof v);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -2.0f);
  EXPECT_EQ(v[2], 3.5f);
  EXPECT_EQ(v[3], 4.0f);
  EXPECT_EQ(slurp(path("a.safetensors")).find("__metadata__"), std::string::npos);

  write_safetensors(path("none.safetensors"), {});
  EXPECT_TRUE(SafetensorsFile::open(path("none.safetensors"))->tensors().empty());
}

TEST_F(SafetensorsTest, WriterRejectsBadTensorsAndLeavesNoFile) {
  write_safetensors(path("keep.safetensors"), {make_f32_tensor("old", {1}, {9})});
  TensorData bad = tensor("w.bad", DType::BF16, {2, 3}, 0);
  bad.bytes.pop_back();
  expect_error([&] { write_safetensors(path("keep.safetensors"), {bad}); },
               {"w.bad", "11 bytes", "[2, 3]", "BF16", "needs 12", path("keep.safetensors")});
  expect_error([&] { write_safetensors(path("n.safetensors"), {tensor("neg", DType::U8, {}, 0),
                                                               {"neg2", DType::U8, {-1}, {}}}); },
               {"neg2", "invalid shape [-1]"});
  expect_error([&] { write_safetensors(path("n.safetensors"), {tensor("d", DType::U8, {1}, 0),
                                                               tensor("d", DType::U8, {1}, 0)}); },
               {"tensor d is given twice"});
  expect_error([&] { make_f32_tensor("mk", {2, 2}, {1, 2, 3}); }, {"mk", "[2, 2]", "3 values"});
  // The failed writes left the old file intact and no temp files behind.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"keep.safetensors"});
  EXPECT_TRUE(SafetensorsFile::open(path("keep.safetensors"))->tensors().count("old"));
  // Unwritable destination: Error naming the path.
  expect_error([&] { write_safetensors(path("nodir/x.safetensors"), {}); },
               {path("nodir/x.safetensors")});
}

TEST(SafetensorsFixtures, NanoMoe) {
  const std::string p = kFixtures + "nano-moe/model.safetensors";
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->tensors().size(), 197u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const TensorInfo& a = f->tensors().at("backbone.layers.0.mixer.A_log");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{8}));
  float v[8];
  ASSERT_EQ(a.nbytes, sizeof v);
  std::memcpy(v, a.data, sizeof v);
  EXPECT_FLOAT_EQ(v[0], 1.8794141f);
  EXPECT_FLOAT_EQ(v[7], 0.8639321f);
  const TensorInfo& emb = f->tensors().at("backbone.embeddings.weight");
  EXPECT_EQ(emb.dtype, DType::BF16);
  EXPECT_EQ(emb.shape_string(), "[512, 128]");
  EXPECT_EQ(emb.nbytes, 131072u);

  const Checkpoint ck = Checkpoint::open(kFixtures + "nano-moe");
  EXPECT_EQ(ck.all().size(), 197u);  // expected.safetensors next to it is not opened
  EXPECT_EQ(ck.find("p0.greedy_ids"), nullptr);
  EXPECT_EQ(ck.total_bytes(), 2723648u);
  EXPECT_EQ(ck.get("lm_head.weight").shape, (std::vector<int64_t>{512, 128}));
  expect_error([&] { ck.get("no.such.weight"); },
               {"tensor no.such.weight not found in checkpoint " + kFixtures + "nano-moe"});
}

TEST(SafetensorsFixtures, NanoNvfp4QuantizedDtypes) {
  const Checkpoint ck = Checkpoint::open(kFixtures + "nano-nvfp4");
  EXPECT_EQ(ck.all().size(), 617u);
  EXPECT_EQ(ck.total_bytes(), 1285152u);
  const TensorInfo& w = ck.get("backbone.layers.5.mixer.in_proj.weight");
  EXPECT_EQ(w.dtype, DType::U8);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{328, 64}));
  EXPECT_EQ(std::vector<int>(w.data, w.data + 4), (std::vector<int>{253, 237, 151, 231}));
  const TensorInfo& s = ck.get("backbone.layers.0.mixer.in_proj.weight_scale");
  EXPECT_EQ(s.dtype, DType::F8_E4M3);
  EXPECT_EQ(s.shape, (std::vector<int64_t>{328, 8}));
  EXPECT_EQ(std::vector<int>(s.data, s.data + 4), (std::vector<int>{116, 115, 117, 118}));
  const TensorInfo& scalar = ck.get("backbone.layers.0.mixer.in_proj.input_scale");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.nbytes, 4u);
}

TEST(SafetensorsFixtures, ShardedWithIndex) {
  const std::string dir = kFixtures + "super-latent-mtp";
  const Checkpoint ck = Checkpoint::open(dir);
  const Json index = read_json_file(dir + "/model.safetensors.index.json");
  const Json& wm = index["weight_map"];
  ASSERT_EQ(ck.all().size(), wm.size());
  EXPECT_EQ(ck.all().size(), 417u);
  for (const auto& [name, shard] : wm.items()) {
    const TensorInfo* t = ck.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(fs::path(t->file).filename(), shard.get<std::string>()) << name;
  }
  EXPECT_EQ(ck.total_bytes(), index["metadata"]["total_size"].get<std::size_t>());
  const TensorInfo& eh = ck.get("mtp.layers.0.eh_proj.weight");
  EXPECT_EQ(eh.shape, (std::vector<int64_t>{128, 256}));
  EXPECT_THAT(eh.file, HasSubstr("model-00002-of-00002.safetensors"));
}

TEST(SafetensorsFixtures, SingleFilePathAndAllFixturesOpen) {
  const std::string p = kFixtures + "dense-mlp/expected.safetensors";
  const Checkpoint ck = Checkpoint::open(p);
  EXPECT_EQ(ck.dir(), p);
  EXPECT_EQ(ck.all().size(), 18u);
  EXPECT_EQ(ck.get("p0.greedy_ids").dtype, DType::I64);
  EXPECT_EQ(ck.get("p0.greedy_ids").shape, (std::vector<int64_t>{12}));
  EXPECT_EQ(Checkpoint::open(kFixtures + "dense-mlp").all().size(), 56u);
  EXPECT_EQ(Checkpoint::open(kFixtures + "super-mixed-mtp").all().size(), 1206u);
}

TEST_F(SafetensorsTest, CheckpointOutlivesScopeAndCopies) {
  write_safetensors(path("model.safetensors"), {make_f32_tensor("w", {3}, {1, 2, 3})});
  Checkpoint copy;
  {
    const Checkpoint ck = Checkpoint::open(dir_);
    copy = ck;
  }
  const TensorInfo& w = copy.get("w");
  float v[3];
  std::memcpy(v, w.data, sizeof v);
  EXPECT_EQ(v[2], 3.0f);
}

// Page release (unified memory, CudaModel's upload): dropping the pages of a byte range, of
// a tensor run and of whole files keeps every tensor readable with the same bytes (the
// mapping stays valid and faults them back in from the file). Whether the kernel really
// dropped them is best effort (tmpfs keeps them), so it is printed, not asserted.
TEST_F(SafetensorsTest, ReleasingPagesKeepsTheBytesReadable) {
  std::vector<TensorData> in;
  for (int i = 0; i < 4; ++i) in.push_back(tensor("t" + std::to_string(i), DType::F32, {3, 4099}, uint8_t(10 + i)));
  write_safetensors(path("model.safetensors"), in);
  ::sync();  // dirty pages of the fresh file are not dropped, only clean ones
  const Checkpoint ck = Checkpoint::open(dir_);
  auto same = [&](const char* when) {
    for (const auto& t : in) {
      const TensorInfo& info = ck.get(t.name);
      ASSERT_EQ(info.nbytes, t.bytes.size());
      EXPECT_EQ(std::vector<uint8_t>(info.data, info.data + info.nbytes), t.bytes) << t.name << " " << when;
    }
  };
  auto resident = [&] {
    const TensorInfo& first = ck.get("t0");
    const long page = ::sysconf(_SC_PAGESIZE);
    const auto base = reinterpret_cast<uintptr_t>(first.data) / page * page;
    const std::size_t len = reinterpret_cast<uintptr_t>(ck.get("t3").data) + ck.get("t3").nbytes - base;
    std::vector<unsigned char> vec((len + page - 1) / page);
    if (::mincore(reinterpret_cast<void*>(base), len, vec.data()) != 0) return -1;
    int n = 0;
    for (unsigned char v : vec) n += v & 1;
    return n;
  };
  same("before");
  const int before = resident();
  // One tensor, then a run of two at an unaligned start, then a range outside every file.
  ck.release_pages(ck.get("t1").data, ck.get("t1").nbytes);
  same("after releasing t1");
  ck.release_pages(ck.get("t2").data + 3, ck.get("t2").nbytes + ck.get("t3").nbytes - 3);
  same("after releasing t2..t3");
  const std::vector<uint8_t> outside(100, 1);
  ck.release_pages(outside.data(), outside.size());
  EXPECT_EQ(outside, std::vector<uint8_t>(100, 1));
  // A range that starts in the header and covers the first pages of data.
  ck.release_pages(ck.get("t0").data - 16, 4096 * 3);
  same("after releasing a range from the header on");
  ck.release_pages();
  const int after = resident();  // before `same` faults them back in
  same("after releasing every file");
  std::printf("[ resident pages of the tensors: %d before release, %d after ]\n", before, after);

  // SafetensorsFile level: offsets past the end are clamped, empty ranges are no-ops.
  auto f = SafetensorsFile::open(path("model.safetensors"));
  f->release_pages(0, 0);
  f->release_pages(f->file_size() - 1, 1 << 20);
  f->release_pages(f->file_size() + 10, 5);
  f->release_pages();
  EXPECT_TRUE(f->contains(f->tensors().at("t0").data));
  EXPECT_FALSE(f->contains(outside.data()));
  const TensorInfo& t0 = f->tensors().at("t0");
  EXPECT_EQ(std::vector<uint8_t>(t0.data, t0.data + t0.nbytes), in[0].bytes);
}

// ---- malformed single files ----

TEST_F(SafetensorsTest, ShortFile) {
  expect_open_error("abc", {"3 bytes", "shorter than the 8-byte"});
  expect_open_error("", {"0 bytes"});
}

TEST_F(SafetensorsTest, HeaderLengthPastEnd) {
  expect_open_error(raw_file("{}", "", 1000), {"header length 1000", "past the end of the file"});
  expect_open_error(raw_file("{}", "", int64_t{1} << 62), {"absurdly large"});
  expect_open_error(raw_file("{}", "", 100'000'001), {"absurdly large"});
}

TEST_F(SafetensorsTest, BadJson) {
  expect_open_error(raw_file("{\"a\": ", ""), {"invalid JSON"});
  expect_open_error(raw_file("[1, 2]", ""), {"array, expected an object"});
  expect_open_error(raw_file("\xff\xfe", ""), {"invalid JSON"});
}

TEST_F(SafetensorsTest, MissingOrMistypedFields) {
  const std::string data(8, 'x');
  expect_open_error(raw_file(R"({"t": {"dtype": "U8", "shape": [8]}})", data),
                    {"tensor t", "missing \"data_offsets\""});
  expect_open_error(raw_file(R"({"t": {"shape": [8], "data_offsets": [0, 8]}})", data),
                    {"tensor t", "missing \"dtype\""});
  expect_open_error(raw_file(R"({"t": {"dtype": "U8", "data_offsets": [0, 8]}})", data),
                    {"tensor t", "missing \"shape\""});
  expect_open_error(raw_file(R"({"t": [1]})", data), {"tensor t", "not a JSON object"});
  expect_open_error(raw_file(R"({"t": {"dtype": 3, "shape": [8], "data_offsets": [0, 8]}})", data),
                    {"tensor t", "dtype is not a string"});
  expect_open_error(raw_file(R"({"t": {"dtype": "U8", "shape": "8", "data_offsets": [0, 8]}})",
                             data),
                    {"tensor t", "shape is not an array"});
  expect_open_error(raw_file(R"({"t": {"dtype": "U8", "shape": [8.0], "data_offsets": [0, 8]}})",
                             data),
                    {"tensor t", "non-integer dimension"});
  for (const char* offs : {"[0, 8, 9]", "[0]", "{}", "[-1, 8]", "[0, \"8\"]", "[0.0, 8]"}) {
    expect_open_error(
        raw_file(std::string(R"({"t": {"dtype": "U8", "shape": [8], "data_offsets": )") + offs +
                     "}}",
                 data),
        {"tensor t", "data_offsets must be [begin, end]"});
  }
}

TEST_F(SafetensorsTest, UnsupportedDtype) {
  expect_open_error(
      raw_file(R"({"w.f64": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
               std::string(8, '\0')),
      {"tensor w.f64", "F64 is not supported"});
}

TEST_F(SafetensorsTest, NegativeDimAndOverflow) {
  expect_open_error(raw_file(R"({"t": {"dtype": "U8", "shape": [-2, -4], "data_offsets": [0, 8]}})",
                             std::string(8, '\0')),
                    {"tensor t", "negative dimension -2"});
  expect_open_error(
      raw_file(R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
               std::string(8, '\0')),
      {"tensor t", "overflows"});
  expect_open_error(
      raw_file(R"({"t": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 8]}})",
               std::string(8, '\0')),
      {"tensor t", "too large"});
}

TEST_F(SafetensorsTest, BadOffsets) {
  expect_open_error(
      raw_file(R"({"t": {"dtype": "U8", "shape": [0], "data_offsets": [8, 4]}})", std::string(8, 'x')),
      {"tensor t", "[8, 4]", "begin > end"});
  expect_open_error(
      raw_file(R"({"t": {"dtype": "U8", "shape": [4], "data_offsets": [0, 8]}})", std::string(8, 'x')),
      {"tensor t", "hold 8 bytes", "needs 4"});
}

TEST_F(SafetensorsTest, TruncatedFile) {
  write_safetensors(path("full.safetensors"),
                    {make_f32_tensor("a", {4}, {1, 2, 3, 4}), make_f32_tensor("b", {4}, {5, 6, 7, 8})});
  std::string raw = slurp(path("full.safetensors"));
  raw.resize(raw.size() - 3);
  expect_open_error(raw, {"tensor b", "[16, 32]", "truncated"});
}

TEST_F(SafetensorsTest, OverlappingRanges) {
  expect_open_error(raw_file(R"({"a": {"dtype": "U8", "shape": [6], "data_offsets": [0, 6]},
                                 "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})",
                             std::string(8, 'x')),
                    {"tensors a [0, 6) and b [4, 8) overlap"});
  // Empty tensors may sit anywhere, also inside another tensor's range.
  spit(path("ok.safetensors"),
       raw_file(R"({"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                    "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]}})",
                std::string(8, 'x')));
  auto f = SafetensorsFile::open(path("ok.safetensors"));
  EXPECT_EQ(f->tensors().at("e").nbytes, 0u);
}

TEST_F(SafetensorsTest, MetadataMustBeStrings) {
  expect_open_error(raw_file(R"({"__metadata__": {"format": 1}})", ""),
                    {"__metadata__ value for key format", "expected a string"});
  expect_open_error(raw_file(R"({"__metadata__": ["pt"]})", ""), {"__metadata__ is not"});
  spit(path("pad.safetensors"), raw_file(R"({"__metadata__": {"k": "v"}}      )", ""));
  EXPECT_EQ(SafetensorsFile::open(path("pad.safetensors"))->metadata().at("k"), "v");
}

TEST_F(SafetensorsTest, NotAFile) {
  expect_error([&] { SafetensorsFile::open(path("missing.safetensors")); },
               {path("missing.safetensors"), "cannot open"});
  expect_error([&] { SafetensorsFile::open(dir_); }, {dir_, "not a regular file"});
}

// ---- checkpoint directories ----

class CheckpointTest : public SafetensorsTest {
 protected:
  void write_index(const std::string& weight_map_json) {
    spit(path("model.safetensors.index.json"),
         R"({"metadata": {"total_size": 0}, "weight_map": )" + weight_map_json + "}");
  }
};

TEST_F(CheckpointTest, NoModelFiles) {
  write_safetensors(path("expected.safetensors"), {make_f32_tensor("x", {1}, {1})});
  write_safetensors(path("mtp.safetensors"), {make_f32_tensor("y", {1}, {1})});
  expect_error([&] { Checkpoint::open(dir_); },
               {"no model.safetensors or model.safetensors.index.json in " + dir_});
  expect_error([&] { Checkpoint::open(path("nothing")); },
               {path("nothing"), "no such file or directory"});
}

TEST_F(CheckpointTest, SingleFileWithMtpAndIgnoredFiles) {
  write_safetensors(path("model.safetensors"), {make_f32_tensor("a", {1}, {1})});
  write_safetensors(path("mtp.safetensors"), {make_f32_tensor("mtp.b", {2}, {1, 2})});
  write_safetensors(path("expected.safetensors"), {make_f32_tensor("a", {1}, {5})});
  write_safetensors(path("other.safetensors"), {make_f32_tensor("c", {1}, {5})});
  const Checkpoint ck = Checkpoint::open(dir_);
  EXPECT_EQ(ck.all().size(), 2u);
  EXPECT_EQ(ck.get("mtp.b").file, path("mtp.safetensors"));
  EXPECT_EQ(ck.find("c"), nullptr);
  EXPECT_EQ(ck.total_bytes(), 12u);
}

TEST_F(CheckpointTest, DuplicateAcrossFiles) {
  write_safetensors(path("model.safetensors"), {make_f32_tensor("a", {1}, {1})});
  write_safetensors(path("mtp-extra.safetensors"), {make_f32_tensor("a", {1}, {2})});
  expect_error([&] { Checkpoint::open(dir_); },
               {"tensor a appears in both " + path("model.safetensors") + " and " +
                path("mtp-extra.safetensors")});
}

TEST_F(CheckpointTest, ShardedIndex) {
  write_safetensors(path("s1.safetensors"), {make_f32_tensor("a", {1}, {1}),
                                             make_f32_tensor("unlisted", {1}, {3})});
  write_safetensors(path("s2.safetensors"), {make_f32_tensor("b", {2}, {1, 2})});
  write_safetensors(path("model.safetensors"), {make_f32_tensor("ignored", {1}, {1})});
  write_index(R"({"a": "s1.safetensors", "b": "s2.safetensors"})");
  const Checkpoint ck = Checkpoint::open(dir_);
  EXPECT_EQ(ck.all().size(), 3u);  // unlisted extra tensors are tolerated and indexed
  EXPECT_EQ(ck.get("b").file, path("s2.safetensors"));
  EXPECT_EQ(ck.get("unlisted").file, path("s1.safetensors"));
  EXPECT_EQ(ck.find("ignored"), nullptr);  // model.safetensors is not a shard of the index
}

TEST_F(CheckpointTest, MissingShard) {
  write_safetensors(path("s1.safetensors"), {make_f32_tensor("a", {1}, {1})});
  write_index(R"({"a": "s1.safetensors", "b": "s2.safetensors"})");
  expect_error([&] { Checkpoint::open(dir_); },
               {path("model.safetensors.index.json"), "shard s2.safetensors", "tensor b",
                "does not exist"});
}

TEST_F(CheckpointTest, TensorMissingFromItsShard) {
  write_safetensors(path("s1.safetensors"), {make_f32_tensor("a", {1}, {1})});
  write_safetensors(path("s2.safetensors"), {make_f32_tensor("b", {1}, {1})});
  write_index(R"({"a": "s2.safetensors", "b": "s2.safetensors", "c": "s1.safetensors"})");
  expect_error([&] { Checkpoint::open(dir_); },
               {path("model.safetensors.index.json"), "tensor a is listed in shard s2.safetensors",
                "does not contain it"});
}

TEST_F(CheckpointTest, UnlistedTensorDuplicatedInAnotherShard) {
  write_safetensors(path("s1.safetensors"), {make_f32_tensor("a", {1}, {1})});
  write_safetensors(path("s2.safetensors"), {make_f32_tensor("a", {1}, {1}),
                                             make_f32_tensor("b", {1}, {1})});
  write_index(R"({"a": "s1.safetensors", "b": "s2.safetensors"})");
  expect_error([&] { Checkpoint::open(dir_); },
               {"tensor a appears in both " + path("s1.safetensors") + " and " +
                path("s2.safetensors")});
}

TEST_F(CheckpointTest, MalformedIndex) {
  const std::string idx = path("model.safetensors.index.json");
  spit(idx, R"({"metadata": {}})");
  expect_error([&] { Checkpoint::open(dir_); }, {idx, "missing \"weight_map\""});
  write_index("[]");
  expect_error([&] { Checkpoint::open(dir_); }, {idx, "weight_map is not a JSON object"});
  write_index(R"({"a": 3})");
  expect_error([&] { Checkpoint::open(dir_); }, {idx, "tensor a", "not a file name string"});
  write_index(R"({"a": "../escape.safetensors"})");
  expect_error([&] { Checkpoint::open(dir_); }, {idx, "not a file name inside"});
  write_index(R"({"a": "/etc/passwd"})");
  expect_error([&] { Checkpoint::open(dir_); }, {idx, "not a file name inside"});
  spit(idx, "{not json");
  expect_error([&] { Checkpoint::open(dir_); }, {idx, "invalid JSON"});
}

TEST_F(CheckpointTest, BadShardNamesTheShard) {
  spit(path("s1.safetensors"), "short");
  write_index(R"({"a": "s1.safetensors"})");
  expect_error([&] { Checkpoint::open(dir_); }, {path("s1.safetensors"), "shorter than"});
}

// ---- fuzz: mutated headers must give a valid file or nemotron::Error, never a crash ----

TEST_F(SafetensorsTest, FuzzHeaderMutations) {
  const std::string good_path = path("good.safetensors");
  write_safetensors(good_path,
                    {tensor("a.w", DType::BF16, {3, 4}, 1), tensor("b.s", DType::F32, {}, 2),
                     tensor("c.e", DType::U8, {0}, 3), tensor("d.q", DType::F8_E4M3, {5, 2}, 4),
                     tensor("e.i", DType::I64, {2}, 5)},
                    {{"format", "pt"}});
  const std::string good = slurp(good_path);
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  const std::string specials = "{}[]\",:-0123456789 eE.\\";
  std::mt19937 rng(1234);
  int opened = 0;
  int rejected = 0;
  const std::string header = good.substr(8, n);
  const std::string data = good.substr(8 + n);
  for (int iter = 0; iter < 600; ++iter) {
    // 0: bit flips in the length prefix or header; 1: structural characters written into
    // the header; 2: digits changed/inserted/deleted (shapes, offsets); 1 and 2 re-prefix
    // the edited header with its new length; 3: truncation anywhere.
    const int kind = iter % 4;
    const int edits = 1 + static_cast<int>(rng() % 4);
    std::string bad = good;
    std::string h = header;
    for (int e = 0; e < edits; ++e) {
      if (kind == 0) {
        const std::size_t pos = rng() % (8 + n);
        bad[pos] = static_cast<char>(bad[pos] ^ (1u << (rng() % 8)));
      } else if (kind == 1) {
        h[rng() % h.size()] = specials[rng() % specials.size()];
      } else if (kind == 2) {
        const std::size_t pos = rng() % h.size();
        if (h[pos] < '0' || h[pos] > '9') continue;
        const auto it = h.begin() + static_cast<std::ptrdiff_t>(pos);
        switch (rng() % 3) {
          case 0: *it = static_cast<char>('0' + rng() % 10); break;
          case 1: h.insert(it, static_cast<char>('0' + rng() % 10)); break;
          default: h.erase(it); break;
        }
      }
    }
    if (kind == 1 || kind == 2) bad = raw_file(h, data);
    if (kind == 3) bad.resize(rng() % good.size());
    const std::string p = path("fuzz.safetensors");
    spit(p, bad);
    try {
      auto f = SafetensorsFile::open(p);
      ++opened;
      for (const auto& [name, t] : f->tensors()) {
        std::size_t expect = 0;
        ASSERT_TRUE(checked_nbytes(t.dtype, t.shape, &expect)) << name;
        ASSERT_EQ(t.nbytes, expect) << name;
        ASSERT_LE(t.nbytes, f->file_size()) << name;
        if (t.nbytes > 0) {  // touching the bytes must stay inside the mapping
          volatile uint8_t sink = t.data[0];
          sink = t.data[t.nbytes - 1];
          (void)sink;
        }
      }
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": non-Error exception " << e.what();
    }
  }
  EXPECT_GT(opened, 0);
  EXPECT_GT(rejected, 100);
}

}  // namespace
}  // namespace nemotron::model
