#pragma once
// Small parsing helpers shared by the subcommands.
#include <cstdint>
#include <string>
#include <vector>

namespace nemotron::cli {

// "5,9,13" or a JSON array "[5, 9, 13]" -> ids. Throws Error naming the bad entry.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& what);

// JSON array text of ids: [5,9,13]
std::string ids_json(const std::vector<int32_t>& ids);

}  // namespace nemotron::cli
