#pragma once
// HF `decoders`: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence. Each
// rewrites the list of token strings (decode_chain); Tokenizer::decode joins the result.
#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer/tokenizer_json.h"

namespace nemotron::text {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  // The raw bytes one token contributes in the middle of a text: like decode_chain on that
  // token alone, but without replacing invalid UTF-8 (a byte-level token may hold part of a
  // character) and without position-dependent edits (Strip, Metaspace's first-token rule).
  virtual void raw_token(std::string& token) const { (void)token; }
};

// Returns nullptr for JSON null. Throws SpecError naming `path`.
std::unique_ptr<Decoder> make_decoder(const TokJson& j, const std::string& path);


}  // namespace nemotron::text
