// `nemotron tokenize`: encode text to ids or decode ids to text with a HF tokenizer.json.
// Output is machine-readable for the conformance tests: ids as one-line JSON array; decoded
// text written exactly (no added newline); --stream prints the incremental pieces as a JSON
// array of strings.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"

namespace {

std::vector<int32_t> parse_ids_list(const std::string& s) {
  std::vector<int32_t> ids;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t j = s.find(',', i);
    const std::string item = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < INT32_MIN || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw nemotron::Error("--ids: not an integer: \"" + item + "\"");
    }
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return ids;
}

std::vector<int32_t> read_ids_file(const std::string& path) {
  const nemotron::Json j = nemotron::read_json_file(path);
  if (!j.is_array()) throw nemotron::Error(path + ": expected a JSON array of integers");
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer()) throw nemotron::Error(path + ": expected a JSON array of integers");
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

void write_all(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

int run_tokenize(int argc, char** argv) {
  CLI::App app{
      "Encode text to token ids (printed as a JSON array) or, with --decode, ids to text (printed "
      "exactly, no newline added), using a Hugging Face tokenizer.json."};
  std::string tok_path, text, text_file, ids_str, ids_file, batch_file;
  bool add_special = false, no_parse_special = false, decode = false, skip_special = false, stream = false;
  app.add_option("--tokenizer", tok_path, "Directory with tokenizer.json, or the file itself")->required();
  app.add_option("--text", text, "Text to encode");
  app.add_option("--text-file", text_file, "File whose bytes are encoded (invalid UTF-8 becomes U+FFFD)");
  app.add_flag("--add-special-tokens", add_special, "Apply the post-processor (e.g. add BOS)");
  app.add_flag("--no-parse-special", no_parse_special,
               "Encode special-token strings in the text as plain text");
  app.add_flag("--decode", decode, "Decode --ids / --ids-file instead of encoding");
  app.add_option("--ids", ids_str, "Comma-separated ids to decode, e.g. 1,2,3");
  app.add_option("--ids-file", ids_file, "File holding a JSON array of ids to decode");
  app.add_flag("--skip-special-tokens", skip_special, "Drop special tokens when decoding");
  app.add_flag("--stream", stream,
               "With --decode: decode incrementally, one id at a time, and print the pieces "
               "(plus the final flush) as a JSON array of strings");
  app.add_option("--batch-file", batch_file,
                 "Batch mode: a JSON array of strings to encode (or, with --decode, of id arrays); "
                 "prints one JSON array of the results (with --decode --stream: of piece arrays)");
  CLI11_PARSE(app, argc, argv);

  const auto tok = nemotron::text::Tokenizer::load(tok_path);
  if (!batch_file.empty()) {
    const nemotron::Json in = nemotron::read_json_file(batch_file);
    if (!in.is_array()) throw nemotron::Error(batch_file + ": expected a JSON array");
    nemotron::Json out = nemotron::Json::array();
    for (const auto& item : in) {
      if (!decode) {
        if (!item.is_string()) throw nemotron::Error(batch_file + ": expected strings");
        out.push_back(tok.encode(item.get<std::string>(), add_special, !no_parse_special));
        continue;
      }
      if (!item.is_array()) throw nemotron::Error(batch_file + ": expected arrays of ids");
      std::vector<int32_t> ids;
      for (const auto& v : item) {
        if (!v.is_number_integer()) throw nemotron::Error(batch_file + ": expected arrays of ids");
        ids.push_back(v.get<int32_t>());
      }
      if (!stream) {
        out.push_back(tok.decode(ids, skip_special));
        continue;
      }
      nemotron::text::IncrementalDetokenizer detok(tok, skip_special);
      nemotron::Json pieces = nemotron::Json::array();
      for (int32_t id : ids) pieces.push_back(detok.push(id));
      pieces.push_back(detok.flush());
      out.push_back(std::move(pieces));
    }
    write_all(out.dump() + "\n");
    return 0;
  }
  if (decode) {
    if (ids_str.empty() == ids_file.empty()) throw nemotron::Error("--decode needs exactly one of --ids, --ids-file");
    const std::vector<int32_t> ids = ids_file.empty() ? parse_ids_list(ids_str) : read_ids_file(ids_file);
    if (stream) {
      nemotron::text::IncrementalDetokenizer detok(tok, skip_special);
      nemotron::Json pieces = nemotron::Json::array();
      for (int32_t id : ids) pieces.push_back(detok.push(id));
      pieces.push_back(detok.flush());
      write_all(pieces.dump() + "\n");
    } else {
      write_all(tok.decode(ids, skip_special));
    }
    return 0;
  }
  if (app.count("--text") + app.count("--text-file") != 1)
    throw nemotron::Error("encoding needs exactly one of --text, --text-file");
  const std::string input = text_file.empty() ? text : nemotron::read_file(text_file);
  const std::vector<int32_t> ids = tok.encode(input, add_special, !no_parse_special);
  std::string out = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  write_all(out);
  return 0;
}

}  // namespace

NEMOTRON_COMMAND("tokenize", "encode text to token ids or decode ids (HF tokenizer.json)", run_tokenize)
