#pragma once
// A Hugging Face fast tokenizer (tokenizer.json) that encodes and decodes like the
// `tokenizers` library: added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor,
// and model/added-token strings -> decoder chain for decoding.
//
// Input that is not valid UTF-8 is first decoded like Python's
// bytes.decode("utf-8", errors="replace") (each maximal invalid subpart becomes U+FFFD), then
// encoded; HF's Python API only accepts str, so this matches encoding that decoded string.
//
// Tokenizer is cheap to copy (shared immutable state) and safe to use from several threads.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nemotron::text {

struct TokenizerImpl;

class Tokenizer {
 public:
  // `dir_or_file`: a directory holding tokenizer.json (and optionally tokenizer_config.json,
  // special_tokens_map.json, chat_template.jinja), or the tokenizer.json file itself.
  // Throws nemotron::Error naming the file and JSON path at fault.
  static Tokenizer load(const std::string& dir_or_file);
  // Parses tokenizer.json text; `source` names it in errors. No config files are read.
  static Tokenizer from_json(const std::string& json_text, const std::string& source);

  // `parse_special`: match added tokens (special or not) in the text, as HF does by default;
  // when false, special tokens in `text` are encoded as plain text (HF's
  // encode_special_tokens=True / llama.cpp parse_special=false).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false,
                              bool parse_special = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // The raw bytes token `id` contributes in the middle of a text (byte-level tokens may hold
  // part of a UTF-8 character; nothing is replaced by U+FFFD). Added tokens: their content
  // as decode() shows it. Unknown ids: "".
  std::string token_bytes(int32_t id) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  std::string id_to_token(int32_t id) const;          // "" when absent
  int32_t vocab_size() const;                         // max id + 1, added tokens included
  bool is_special(int32_t id) const;

  // From tokenizer_config.json (or special_tokens_map.json / chat_template.jinja) when present.
  const std::string& chat_template() const;
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  const std::string& pad_token() const;

 private:
  const TokenizerImpl& impl() const;  // throws nemotron::Error on a default-constructed Tokenizer
  std::shared_ptr<const TokenizerImpl> impl_;
};

// Streaming detokenizer: push ids one at a time and get back text made of whole UTF-8
// characters only: a valid multi-byte character is never split, however many ids it spans.
// The concatenation of every push() result and a final flush() equals
// tokenizer.decode(all ids) whenever no more than kMaxHeldTokens ids ever wait for a character
// boundary. It decodes a short window of recent ids and emits the difference from the
// previously decoded window (HF DecodeStream's method), so decoders whose output depends on
// position (Metaspace, Strip) and byte tokens that split a character work. A trailing U+FFFD
// is held back while it may still be completed by later ids, since a partial character decodes
// to U+FFFD, and so is a run of byte-fallback tokens ("<0xXX>", which decodes as a whole).
// Past kMaxHeldTokens held ids (a long run of byte tokens: CJK, Thai or emoji text in a
// Llama-2/Mistral-style vocabulary) it emits up to the last character boundary and goes on
// from the tokens' raw bytes until a token ends on a boundary: valid characters come out
// whole, invalid bytes as U+FFFD, nothing is dropped, and at most 3 bytes are held
// (detokenizer.cpp says where this can differ from decode()).
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  std::string push(int32_t id);
  std::string flush();

  static constexpr std::size_t kMaxHeldTokens = 64;

 private:
  bool byte_fallback(int32_t id) const;    // a "<0xXX>" token
  std::string raw_bytes(int32_t id) const; // what it adds mid-text ("" for a skipped special token)
  // Emits decode(ids_[0, end)) (`text`) past prefix_; ids_[prefix_index_, end) become the context.
  std::string emit(const std::string& text, std::size_t end);
  std::string force();                 // more than kMaxHeldTokens ids held
  std::string push_raw(int32_t id);    // raw-byte mode
  std::string take_bytes();            // bytes_ up to its last character boundary

  Tokenizer tok_;
  bool skip_;
  std::vector<int32_t> ids_;  // the window
  std::string prefix_;        // decoding of the window after the last emission (detokenizer.cpp)
  std::size_t prefix_index_ = 0;
  bool raw_ = false;          // raw-byte mode: bytes_ holds what is not emitted yet (< 4 bytes)
  std::string bytes_;
};

}  // namespace nemotron::text
