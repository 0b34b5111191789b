#include "cli/args.h"

#include <cctype>

#include "util/error.h"

namespace nemotron::cli {

std::vector<int32_t> parse_ids(const std::string& text, const std::string& what) {
  std::vector<int32_t> ids;
  std::size_t i = 0;
  auto skip = [&] {
    while (i < text.size() && (std::isspace(static_cast<unsigned char>(text[i])) || text[i] == '[' || text[i] == ']')) ++i;
  };
  skip();
  while (i < text.size()) {
    std::size_t start = i;
    if (text[i] == '-' || text[i] == '+') ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    const std::string tok = text.substr(start, i - start);
    if (tok.empty() || tok == "-" || tok == "+" || tok.size() > 10)
      throw Error(what + ": expected comma-separated token ids, got '" + text.substr(start, 20) + "'");
    const long long v = std::stoll(tok);
    if (v < 0 || v > INT32_MAX) throw Error(what + ": token id " + tok + " is out of range");
    ids.push_back(static_cast<int32_t>(v));
    skip();
    if (i < text.size()) {
      if (text[i] != ',') throw Error(what + ": expected ',' after " + tok + ", got '" + text.substr(i, 10) + "'");
      ++i;
      skip();
    }
  }
  if (ids.empty()) throw Error(what + ": no token ids given");
  return ids;
}


std::string ids_json(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s + "]";
}

}  // namespace nemotron::cli
