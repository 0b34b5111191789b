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
Json read_json_file(const std::string& path);
std::string read_file(const std::string& path);  // throws Error naming the path

// A number, or one of the strings "Infinity", "-Infinity", "NaN". Throws Error naming
// `what` otherwise.
double json_number(const Json& value, const std::string& what);

}  // namespace nemotron
