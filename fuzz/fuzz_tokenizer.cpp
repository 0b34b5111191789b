// Encode and decode with the demo model's tokenizer (models/demo/tokenizer.json: Nemotron 3's
// structure, byte-level BPE, 1000 special added tokens). Input: the text; flags and an id
// count come from its last bytes. Checks what the header claims for this tokenizer:
//  * byte-level BPE is lossless: decode(encode(text)) is the text (invalid UTF-8 first
//    replaced as Python's errors="replace" does), with or without special-token parsing;
//  * every id is in the vocabulary;
//  * the incremental detokenizer's pieces concatenate to decode(ids), for the encoding and
//    for arbitrary id sequences (ids taken from the input bytes, out-of-range ones included),
//    up to kMaxHeldTokens ids (past that bound the header documents a difference), and every
//    piece is whole UTF-8 characters.
#include "fuzz_common.h"
#include "text/tokenizer/tokenizer.h"
#include "text/utf8.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::text;

namespace {

const Tokenizer& demo() {
  static const Tokenizer t = Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo");
  return t;
}

void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer d(tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = d.push(id);
    FUZZ_CHECK(utf8_valid(piece), "detokenizer piece is not valid UTF-8");
    streamed += piece;
  }
  streamed += d.flush();
  if (ids.size() <= IncrementalDetokenizer::kMaxHeldTokens) {
    const std::string whole = tok.decode(ids, skip);
    FUZZ_CHECK(streamed == whole, "streamed [%s] != decoded [%s]", streamed.c_str(), whole.c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const Tokenizer& tok = demo();
  FuzzedDataProvider fdp(data, size);
  const uint8_t flags = fdp.ConsumeIntegral<uint8_t>();
  const std::string text = fdp.ConsumeRemainingBytesAsString();
  const bool parse_special = flags & 1, add_special = flags & 2, skip = flags & 4;

  const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "id %d", id);
  const std::string expected = utf8_sanitize(text);
  if (!add_special) {
    const std::string back = tok.decode(ids, false);
    FUZZ_CHECK(back == expected, "round trip: [%s] -> [%s]", expected.c_str(), back.c_str());
  }
  if (!parse_special && !skip) {
    // Special-token text was encoded as plain text: nothing is skipped.
    FUZZ_CHECK(tok.decode(ids, true) == tok.decode(ids, false));
  }
  std::vector<int32_t> window(ids.begin(), ids.begin() + static_cast<long>(std::min<std::size_t>(ids.size(), 64)));
  check_stream(tok, window, skip);

  // Arbitrary ids: the text's bytes read as 16-bit ids (some past the vocabulary).
  std::vector<int32_t> raw;
  for (std::size_t i = 0; i + 1 < text.size() && raw.size() < 64; i += 2)
    raw.push_back(static_cast<int32_t>((static_cast<uint8_t>(text[i]) << 8 | static_cast<uint8_t>(text[i + 1])) % 9300) - 50);
  check_stream(tok, raw, skip);
  for (int32_t id : raw) {
    (void)tok.token_bytes(id);
    (void)tok.id_to_token(id);
    (void)tok.is_special(id);
  }
  return 0;
}
