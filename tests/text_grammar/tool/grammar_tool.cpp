// nemotron_grammar_tool: compiles JSON schemas and samples texts from them, for
// tests/text_grammar/test_schema_suite.py.
//
// Input (stdin): one JSON object per line: {"schema": ..., "samples": N, "seed": S,
// "max_bytes": B}. Output (stdout): one line per input line:
//   {"ok": true, "samples": ["...", ...]}      texts generated from the grammar
//   {"ok": false, "error": "..."}               the nemotron::Error the schema was refused with
// Anything else (a crash, another exception) ends the process with a non-zero status.
#include <iostream>
#include <string>

#include "text/grammar/grammar.h"
#include "text/grammar/sampler.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::text::grammar;

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    const Json req = parse_json(line, "stdin");
    Json out;
    try {
      auto g = from_json_schema(req.at("schema"));
      const int n = req.value("samples", 10);
      const uint64_t seed = req.value("seed", uint64_t{1});
      const int64_t max_bytes = req.value("max_bytes", int64_t{200});
      Json samples = Json::array();
      for (int i = 0; i < n; ++i) {
        auto t = sample_text(g, seed * 1000003 + static_cast<uint64_t>(i), max_bytes);
        if (!t) {
          std::cerr << "grammar_tool: no text within the budget for " << req.at("schema").dump() << "\n";
          return 3;
        }
        samples.push_back(*t);
      }
      out = Json{{"ok", true}, {"samples", samples}};
    } catch (const Error& e) {
      out = Json{{"ok", false}, {"error", e.what()}};
    }
    std::cout << out.dump(-1, ' ', false, Json::error_handler_t::strict) << "\n" << std::flush;
  }
  return 0;
}
