// IncrementalDetokenizer (declared in tokenizer.h), HF DecodeStream's method.
//
// State: ids_ is a window of recent ids, prefix_ = decode(ids_) as it was right after the
// last emission, and prefix_index_ = how many ids the window held then. Each push appends
// the id and decodes the whole window; what follows prefix_ is new text. After emitting it,
// the window drops the ids that preceded the last emission (keeping the last emission's ids
// as context for position-dependent decoders such as Metaspace and Strip), and prefix_ is
// recomputed for the new window.
//
// New text is held back while it ends in U+FFFD (a partial character) or the last id is a
// byte-fallback token ("<0xXX>", whose run decodes as a whole), unless more than
// kMaxHeldTokens ids are pending; then it is emitted anyway. That bound is the one case where
// the output can differ from decode(all ids): a run of more than kMaxHeldTokens byte tokens
// that turns invalid later is replaced as a whole by ByteFallback in the full decode.
// Since prefix_ and the decoded window are valid UTF-8 and one extends the other, every
// emitted piece consists of whole characters.
#include <algorithm>

#include "text/tokenizer/tokenizer.h"

namespace nemotron::text {
namespace {

bool ends_with_replacement(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

// Length of the longest common prefix of a and b, cut back to a character boundary of b.
std::size_t common_prefix(const std::string& a, const std::string& b) {
  std::size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  while (n > 0 && n < b.size() && (static_cast<unsigned char>(b[n]) & 0xC0) == 0x80) --n;
  return n;
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(tokenizer), skip_(skip_special_tokens) {}

std::string IncrementalDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_, skip_);
  const std::size_t pending = ids_.size() - prefix_index_;
  // A run of byte-fallback tokens decodes as a whole (all U+FFFD if any byte is invalid), so
  // it is held until a different token ends it.
  const std::string last = tok_.id_to_token(id);
  const bool byte_token = last.size() == 6 && last.compare(0, 3, "<0x") == 0 && last[5] == '>';
  bool ready = text.size() > prefix_.size() && !ends_with_replacement(text) && !byte_token;
  if (pending > kMaxHeldTokens) ready = true;
  if (!ready) return "";
  // The window's decoding normally extends prefix_; if a decoder ever rewrites earlier text,
  // emit only what follows the common part (the invariant then holds approximately).
  const std::size_t keep = text.compare(0, prefix_.size(), prefix_) == 0 ? prefix_.size()
                                                                          : common_prefix(prefix_, text);
  std::string out = text.substr(std::min(keep, text.size()));
  const std::size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<long>(prefix_index_));
  prefix_ = tok_.decode(ids_, skip_);
  prefix_index_ = new_prefix_index;
  return out;
}

std::string IncrementalDetokenizer::flush() {
  const std::string text = tok_.decode(ids_, skip_);
  std::string out;
  if (text.size() > prefix_.size()) {
    const std::size_t keep = text.compare(0, prefix_.size(), prefix_) == 0 ? prefix_.size()
                                                                            : common_prefix(prefix_, text);
    out = text.substr(keep);
  }
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return out;
}

}  // namespace nemotron::text
