// util/json: Python's non-standard Infinity / -Infinity / NaN tokens, strings left alone,
// escapes, error messages naming the source, read_file / read_json_file.
#include "util/json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "util/error.h"

namespace nemotron {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(JsonTest, PythonSpecialNumbersOutsideStrings) {
  const Json j = parse_json(R"({"a": Infinity, "b": -Infinity, "c": NaN, "d": [NaN, 1.5, -2]})",
                            "cfg");
  EXPECT_EQ(json_number(j["a"], "a"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(json_number(j["b"], "b"), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(json_number(j["c"], "c")));
  EXPECT_TRUE(std::isnan(json_number(j["d"][0], "d0")));
  EXPECT_EQ(json_number(j["d"][1], "d1"), 1.5);
  EXPECT_EQ(json_number(j["d"][2], "d2"), -2.0);
  // Python's json.dumps without spaces.
  const Json k = parse_json("[Infinity,-Infinity,NaN]", "compact");
  ASSERT_EQ(k.size(), 3u);
  EXPECT_EQ(json_number(k[1], "k1"), -std::numeric_limits<double>::infinity());
}

TEST(JsonTest, SpecialWordsInsideStringsUntouched) {
  const Json j = parse_json(
      R"({"NaN": "NaNa", "s": "Infinity is far", "t": "-Infinity", "u": "x NaN y",
          "Infinity": 1})",
      "strings");
  EXPECT_EQ(j["NaN"], "NaNa");
  EXPECT_EQ(j["s"], "Infinity is far");
  EXPECT_EQ(j["t"], "-Infinity");
  EXPECT_EQ(j["u"], "x NaN y");
  EXPECT_EQ(j["Infinity"], 1);
  std::vector<std::string> keys;
  for (const auto& [key, v] : j.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"NaN", "s", "t", "u", "Infinity"}));  // order kept
}

TEST(JsonTest, EscapedQuotesInsideStrings) {
  const Json j = parse_json(R"({"q": "say \"NaN\" and \\", "r": NaN, "e": "a\\\"Infinity"})",
                            "esc");
  EXPECT_EQ(j["q"], "say \"NaN\" and \\");
  EXPECT_TRUE(std::isnan(json_number(j["r"], "r")));
  EXPECT_EQ(j["e"], "a\\\"Infinity");
}

TEST(JsonTest, MalformedJsonNamesTheSource) {
  for (const char* bad : {"{\"a\": 1", "{\"a\": Infinit}", "[1, 2,]", "", "{\"a\": \"unterminated}",
                          "nan", "{'a': 1}"}) {
    const std::string msg = error_of([&] { parse_json(bad, "my/config.json"); });
    EXPECT_THAT(msg, HasSubstr("my/config.json: invalid JSON")) << bad;
  }
}

TEST(JsonTest, JsonNumberRejectsOtherValues) {
  const Json j = parse_json(R"({"s": "NaNa", "b": true, "n": null})", "x");
  EXPECT_THAT(error_of([&] { json_number(j["s"], "rope_theta"); }),
              HasSubstr("rope_theta: expected a number"));
  EXPECT_THROW(json_number(j["b"], "b"), Error);
  EXPECT_THROW(json_number(j["n"], "n"), Error);
}

TEST(JsonTest, ReadFiles) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("nemotron_json_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "c.json").string();
  {
    std::ofstream out(path);
    out << R"({"x": -Infinity})";
  }
  EXPECT_EQ(read_file(path), R"({"x": -Infinity})");
  EXPECT_EQ(json_number(read_json_file(path)["x"], "x"),
            -std::numeric_limits<double>::infinity());
  {
    std::ofstream out(path);
    out << "{oops";
  }
  EXPECT_THAT(error_of([&] { read_json_file(path); }), HasSubstr(path + ": invalid JSON"));
  const std::string missing = (dir / "missing.json").string();
  EXPECT_THAT(error_of([&] { read_file(missing); }), HasSubstr(missing + ": cannot open"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nemotron
