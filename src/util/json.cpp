#include "util/json.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
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

void emit(const Json& v, int depth, std::string& out) {
  if (depth > 64) throw Error("JSON nests deeper than 64 levels");
  const std::string pad(2 * (depth + 1), ' '), close(2 * depth, ' ');
  if (v.is_object()) {
    if (v.empty()) { out += "{}"; return; }
    out += "{\n";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += ",\n";
      first = false;
      out += pad + Json(it.key()).dump() + ": ";
      emit(it.value(), depth + 1, out);
    }
    out += "\n" + close + "}";
  } else if (v.is_array()) {
    if (v.empty()) { out += "[]"; return; }
    out += "[\n";
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) out += ",\n";
      out += pad;
      emit(v[i], depth + 1, out);
    }
    out += "\n" + close + "]";
  } else if (v.is_string() && (v == "Infinity" || v == "-Infinity" || v == "NaN")) {
    out += v.get<std::string>();
  } else {
    out += v.dump();
  }
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

std::string python_json(const Json& value) {
  std::string out;
  emit(value, 0, out);
  return out;
}

void write_text_file(const std::string& path, const std::string& text) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(path + ": cannot create " + tmp);
    f << text;
    f.close();
    if (!f) {
      std::remove(tmp.c_str());
      throw Error(path + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename " + tmp + " into place: " + ec.message());
  }
}

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
