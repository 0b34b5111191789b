#pragma once
// HF `pre_tokenizers`: Split, ByteLevel, Sequence, Digits, Metaspace, Whitespace,
// WhitespaceSplit, Punctuation. A pre-tokenizer turns each piece of text into sub-pieces;
// empty pieces are always dropped (as HF's PreTokenizedString::split does).
#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer/tokenizer_json.h"

namespace nemotron::text {

struct Piece {
  std::string text;
  // True when the piece begins at offset 0 of the original input (HF's
  // offsets_original().0 == 0), which Metaspace's prepend_scheme "first" checks.
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` with their sub-pieces, in order.
  virtual void split(std::vector<Piece>& pieces) const = 0;
};

// Returns nullptr for JSON null. Throws SpecError naming `path`.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const TokJson& j, const std::string& path);

// How a Split treats the matched delimiters (HF SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct Span {
  std::size_t begin, end;
  bool is_match;
};
// Applies `behavior` to a list of spans that cover a text (matches and the gaps between
// them, in order) and returns the kept [begin, end) ranges, empty ones dropped.
std::vector<std::pair<std::size_t, std::size_t>> apply_split_behavior(const std::vector<Span>& spans,
                                                                      SplitBehavior behavior);

// The 256 strings of GPT-2's bytes_to_unicode table (byte b -> a printable code point).
const std::string* byte_level_alphabet();

}  // namespace nemotron::text
