#pragma once
// Shared helpers for the tokenizer gtests: small tokenizer.json documents built in code.
#include <string>
#include <vector>

#include "text/tokenizer/tokenizer.h"
#include "util/json.h"

namespace nemotron::text::testing {

// A BPE tokenizer.json with the given vocab (ids in order) and merges; other components are
// given as JSON (null when omitted).
inline std::string bpe_json(const std::vector<std::string>& vocab, const Json& merges, const Json& extra_model = Json::object(),
                            const Json& components = Json::object()) {
  Json model = {{"type", "BPE"}, {"vocab", Json::object()}, {"merges", merges}};
  for (std::size_t i = 0; i < vocab.size(); ++i) model["vocab"][vocab[i]] = static_cast<int>(i);
  for (auto it = extra_model.begin(); it != extra_model.end(); ++it) model[it.key()] = it.value();
  Json root = {{"version", "1.0"}, {"added_tokens", Json::array()}, {"normalizer", nullptr},
               {"pre_tokenizer", nullptr}, {"post_processor", nullptr}, {"decoder", nullptr}, {"model", model}};
  for (auto it = components.begin(); it != components.end(); ++it) root[it.key()] = it.value();
  return root.dump();
}

inline Tokenizer demo_tokenizer() { return Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo"); }

}  // namespace nemotron::text::testing
