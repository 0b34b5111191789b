// IncrementalDetokenizer (declared in tokenizer.h), HF DecodeStream's method.
//
// State: ids_ is a window of recent ids, prefix_ = decode(ids_[0, prefix_index_)) (the ids up
// to the last emission) and ids_[prefix_index_, end) are the pending ids. Each push appends
// the id and decodes the whole window; what follows prefix_ is new text. After emitting it,
// the window drops the ids that preceded the last emission (keeping the last emission's ids
// as context for position-dependent decoders such as Metaspace and Strip), and prefix_ is
// recomputed for the new window.
//
// New text is held back while it ends in U+FFFD (a partial character) or the last id is a
// byte-fallback token ("<0xXX>", whose run decodes as a whole: all U+FFFD when any byte of it
// is invalid), up to kMaxHeldTokens pending ids. Past that bound (force()):
//   - if some pending id ends on a character boundary of the pending ids' raw bytes and not
//     inside a byte-fallback run, the window is decoded up to the last such id and that is
//     emitted (exact: the same text decode() gives); the rest stays pending;
//   - otherwise (a run of byte tokens longer than the bound, or characters split at every
//     token boundary) the detokenizer goes on from raw bytes: each id adds the bytes it
//     contributes mid-text (Tokenizer::token_bytes), and the bytes up to the last character
//     boundary are emitted, invalid sequences as U+FFFD (one per maximal invalid subpart),
//     so at most 3 bytes (a character's beginning) are held. The first id that ends on a
//     boundary and is not a byte token becomes the context of a new window.
// So a valid character is never split and nothing is lost or held without bound. Where the
// raw-byte mode can differ from decode(all ids): ByteFallback replaces a whole run that holds
// an invalid byte with U+FFFD (one per byte), while the stream keeps the run's valid
// characters; and a stream that starts with a long byte run gets no start-of-text edit
// (Strip of a leading space) on its first byte.
#include <algorithm>
#include <cctype>

#include "text/tokenizer/tokenizer.h"
#include "text/utf8.h"

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

bool IncrementalDetokenizer::byte_fallback(int32_t id) const {
  const std::string t = tok_.id_to_token(id);
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
}

std::string IncrementalDetokenizer::raw_bytes(int32_t id) const {
  if (skip_ && tok_.is_special(id)) return std::string();
  return tok_.token_bytes(id);
}

std::string IncrementalDetokenizer::push(int32_t id) {
  if (raw_) return push_raw(id);
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_, skip_);
  const bool ready = text.size() > prefix_.size() && !ends_with_replacement(text) && !byte_fallback(id);
  if (ready) return emit(text, ids_.size());
  if (ids_.size() - prefix_index_ > kMaxHeldTokens) return force();
  return "";
}

std::string IncrementalDetokenizer::emit(const std::string& text, std::size_t end) {
  // The window's decoding normally extends prefix_; if a decoder ever rewrites earlier text,
  // emit only what follows the common part (the invariant then holds approximately).
  const std::size_t keep = text.compare(0, prefix_.size(), prefix_) == 0 ? prefix_.size()
                                                                          : common_prefix(prefix_, text);
  std::string out = text.substr(std::min(keep, text.size()));
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<long>(prefix_index_));
  prefix_index_ = end - prefix_index_;
  prefix_ = tok_.decode(std::vector<int32_t>(ids_.begin(), ids_.begin() + static_cast<long>(prefix_index_)), skip_);
  return out;
}

std::string IncrementalDetokenizer::force() {
  const std::size_t p = prefix_index_, n = ids_.size();
  std::string bytes;  // raw bytes of the pending ids
  std::size_t cut = 0;
  for (std::size_t k = 1; k <= n - p; ++k) {
    bytes += raw_bytes(ids_[p + k - 1]);
    const bool boundary = utf8_complete_prefix(bytes) == bytes.size();
    // A byte run continues past this id (or may: it is the last one): no cut inside it.
    const bool in_run = byte_fallback(ids_[p + k - 1]) && (p + k == n || byte_fallback(ids_[p + k]));
    if (boundary && !in_run) cut = k;
  }
  if (cut > 0) {
    const std::vector<int32_t> head(ids_.begin(), ids_.begin() + static_cast<long>(p + cut));
    return emit(tok_.decode(head, skip_), p + cut);
  }
  raw_ = true;
  bytes_ = std::move(bytes);
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return take_bytes();
}

std::string IncrementalDetokenizer::push_raw(int32_t id) {
  bytes_ += raw_bytes(id);
  if (byte_fallback(id) || utf8_complete_prefix(bytes_) != bytes_.size()) return take_bytes();
  // This id ends on a character boundary outside a byte run: back to decoding windows, with
  // it as the context (decode(context + later ids) extends decode(context) as mid-text).
  std::string out = take_bytes();
  raw_ = false;
  ids_.assign(1, id);
  prefix_ = tok_.decode(ids_, skip_);
  prefix_index_ = 1;
  return out;
}

std::string IncrementalDetokenizer::take_bytes() {
  const std::size_t n = utf8_complete_prefix(bytes_);
  std::string out = utf8_sanitize(std::string_view(bytes_).substr(0, n));
  bytes_.erase(0, n);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out;
  if (raw_) {
    out = utf8_sanitize(bytes_);  // a character never completed
  } else {
    const std::string text = tok_.decode(ids_, skip_);
    if (text.size() > prefix_.size()) {
      const std::size_t keep = text.compare(0, prefix_.size(), prefix_) == 0 ? prefix_.size()
                                                                              : common_prefix(prefix_, text);
      out = text.substr(keep);
    }
  }
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  raw_ = false;
  bytes_.clear();
  return out;
}

}  // namespace nemotron::text
