#include "util/json.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "util/error.h"

namespace nemotron {
namespace {

// Rewrites the bare tokens Infinity, -Infinity and NaN (outside strings) as JSON strings.
std::string quote_python_specials(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool matched = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const std::size_t len = std::char_traits<char>::length(token);
      if (text.compare(i, len, token) == 0) {
        out += '"';
        out += token;
        out += '"';
        i += len - 1;
        matched = true;
        break;
      }
    }
    if (!matched) out += c;
  }
  return out;
}

}  // namespace

Json parse_json(const std::string& text, const std::string& source) {
  try {
    return Json::parse(quote_python_specials(text));
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
}

PlainJson parse_plain_json(const std::string& text, const std::string& source) {
  try {
    return PlainJson::parse(quote_python_specials(text));
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  return ss.str();
}

Json read_json_file(const std::string& path) { return parse_json(read_file(path), path); }
PlainJson read_plain_json_file(const std::string& path) { return parse_plain_json(read_file(path), path); }

template <class J>
double number_of(const J& value, const std::string& what) {
  if (value.is_number()) return value.template get<double>();
  if (value.is_string()) {
    const auto& s = value.template get_ref<const std::string&>();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
  }
  throw Error(what + ": expected a number, got " + value.dump());
}

double json_number(const Json& value, const std::string& what) { return number_of(value, what); }
double json_number(const PlainJson& value, const std::string& what) { return number_of(value, what); }

}  // namespace nemotron
