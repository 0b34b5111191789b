#pragma once
// JSON as Python writes it: json.dumps emits the non-standard tokens Infinity, -Infinity
// and NaN, which config.json files of real checkpoints contain. parse_json accepts them
// (outside strings) and stores them as the strings "Infinity", "-Infinity", "NaN";
// json_number() turns such a value back into a double.
#include <string>

#include <nlohmann/json.hpp>

namespace nemotron {

using Json = nlohmann::ordered_json;

// Throws nemotron::Error "<source>: invalid JSON: ..." on malformed input.
Json parse_json(const std::string& text, const std::string& source);

// The same, into objects keyed by std::map (key order not kept). For documents that may be
// large (safetensors headers and shard indexes, config.json / hf_quant_config.json with a
// MIXED_PRECISION module table: 10^5 keys for Super), where the ordered map's linear-time
// insert would make parsing quadratic.
using PlainJson = nlohmann::json;
PlainJson parse_plain_json(const std::string& text, const std::string& source);
PlainJson read_plain_json_file(const std::string& path);
Json read_json_file(const std::string& path);
std::string read_file(const std::string& path);  // throws Error naming the path

// JSON as Python's json.dumps(indent=2) writes it: the strings "Infinity", "-Infinity" and
// "NaN" (how parse_json stores those tokens) become bare tokens again. Throws Error past
// 64 levels of nesting.
std::string python_json(const Json& value);

// Writes `text` to `path` through a temporary file renamed into place (throws Error naming
// the path).
void write_text_file(const std::string& path, const std::string& text);

// A number, or one of the strings "Infinity", "-Infinity", "NaN". Throws Error naming
// `what` otherwise.
double json_number(const Json& value, const std::string& what);
double json_number(const PlainJson& value, const std::string& what);

}  // namespace nemotron
