// tokenizer.json loading (text/tokenizer/): the input is the document. One that loads is
// used: encode a few texts (added tokens, whitespace, UTF-8, invalid bytes) with and without
// special-token parsing, decode every id below 512 and the encodings, stream them through
// the incremental detokenizer, and query the vocabulary. Anything else than results must be
// a nemotron::Error. (Exactness is checked on the demo tokenizer: fuzz_tokenizer.)
#include "fuzz_common.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::text;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  Tokenizer tok;
  try {
    tok = Tokenizer::from_json(json, "tokenizer.json");
  } catch (const Error&) {
    return 0;
  }
  const int32_t vocab = tok.vocab_size();
  FUZZ_CHECK(vocab >= 0);
  const char* texts[] = {"", "Hello world", "  a\n\n b\tc  ", "<s>x</s><|im_end|>", "héllo 😀 \xe2\x82",
                         "\xff\xfe abc 123 4567", "ab ab ab aaaa bbbb"};
  try {
    for (const char* t : texts) {
      for (int flags = 0; flags < 4; ++flags) {
        const auto ids = tok.encode(t, flags & 1, flags & 2);
        for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < vocab, "encode gave id %d, vocab %d", id, vocab);
        (void)tok.decode(ids, false);
        (void)tok.decode(ids, true);
        IncrementalDetokenizer d(tok, flags & 1);
        for (int32_t id : ids) (void)d.push(id);
        (void)d.flush();
      }
    }
    std::vector<int32_t> all;
    for (int32_t id = -1; id < std::min<int32_t>(vocab + 1, 512); ++id) {
      (void)tok.token_bytes(id);
      const std::string s = tok.id_to_token(id);
      if (!s.empty()) (void)tok.token_to_id(s);
      (void)tok.is_special(id);
      if (id >= 0) all.push_back(id);
    }
    (void)tok.decode(all, false);
    (void)tok.decode(all, true);
    IncrementalDetokenizer d(tok);
    for (int32_t id : all) (void)d.push(id);
    (void)d.flush();
  } catch (const Error&) {
    // encode/decode document no errors, but a loaded tokenizer may still refuse (e.g. an
    // unknown token with no unk_token); those must be Errors too.
  }
  return 0;
}
