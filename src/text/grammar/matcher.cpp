#include "text/grammar/automaton.h"
#include "text/grammar/grammar.h"
#include "text/grammar/mask.h"
#include "util/error.h"

#include <cstring>

namespace nemotron::text::grammar {

Matcher::Matcher(std::shared_ptr<const Grammar> g, std::shared_ptr<const Vocabulary> v, std::vector<int32_t> end_ids)
    : g_(std::move(g)), v_(std::move(v)), end_ids_(std::move(end_ids)) {
  if (!g_) throw Error("grammar::Matcher: no grammar");
  for (int32_t e : end_ids_)
    if (v_ && (e < 0 || e >= v_->size())) throw Error("grammar::Matcher: end id " + std::to_string(e) + " is outside the vocabulary");
  a_ = automaton_of(*g_);
  Automaton::Call call(*a_);
  a_->maybe_reset();
  const int32_t s = a_->initial();
  history_.push_back({a_->key(s), false});
  cached_id_ = s;
  cached_gen_ = a_->generation();
}

Matcher::Matcher(std::shared_ptr<const Grammar> g) : Matcher(std::move(g), nullptr, {}) {}
Matcher::~Matcher() = default;
Matcher::Matcher(Matcher&&) noexcept = default;

int32_t Matcher::state_locked() const {
  if (cached_id_ < 0 || cached_gen_ != a_->generation()) {
    cached_id_ = a_->intern(history_.back().key);
    cached_gen_ = a_->generation();
  }
  return cached_id_;
}

void Matcher::fill_mask(uint32_t* bits) const {
  if (!v_) throw Error("grammar::Matcher::fill_mask: this matcher has no vocabulary");
  const std::size_t words = v_->mask_words();
  bool accepting, live;
  {
    Automaton::Call call(*a_);
    a_->maybe_reset();
    const int32_t s = state_locked();
    accepting = a_->accepting(s);
    live = a_->live(s);
    if (live && !history_.back().ended) std::memcpy(bits, a_->masks(v_).get(*a_, s), words * sizeof(uint32_t));
    else std::memset(bits, 0, words * sizeof(uint32_t));
  }
  for (int32_t e : end_ids_) bits[e >> 5] &= ~(uint32_t{1} << (e & 31));
  if (accepting && !history_.back().ended)
    for (int32_t e : end_ids_) bits[e >> 5] |= uint32_t{1} << (e & 31);
}

bool Matcher::accept(int32_t token) {
  if (!v_) throw Error("grammar::Matcher::accept: this matcher has no vocabulary");
  if (token < 0 || token >= v_->size() || history_.back().ended) return false;
  for (int32_t e : end_ids_)
    if (e == token) {
      if (!can_end()) return false;
      Step st = history_.back();
      st.ended = true;
      history_.push_back(std::move(st));
      return true;
    }
  const std::string& b = v_->token_bytes(token);
  if (b.empty()) return false;
  return accept_bytes(b);
}

bool Matcher::accept_bytes(std::string_view bytes) {
  if (history_.back().ended) return false;
  Automaton::Call call(*a_);
  a_->maybe_reset();
  int32_t s = state_locked();
  for (char c : bytes) {
    s = a_->next(s, static_cast<unsigned char>(c));
    if (s == kDead) return false;
  }
  history_.push_back({a_->key(s), false});
  cached_id_ = s;
  return true;
}

bool Matcher::can_end() const {
  if (history_.back().ended) return false;
  Automaton::Call call(*a_);
  return a_->accepting(state_locked());
}

bool Matcher::done() const {
  if (history_.back().ended) return true;
  Automaton::Call call(*a_);
  return !a_->live(state_locked());
}

void Matcher::rollback(int tokens) {
  for (int i = 0; i < tokens && history_.size() > 1; ++i) history_.pop_back();
  cached_id_ = -1;
}

ByteSet Matcher::allowed_bytes() const {
  if (history_.back().ended) return {};
  Automaton::Call call(*a_);
  const int32_t s = state_locked();
  ByteSet out;
  const ByteSet first = a_->first_bytes(s);
  for (unsigned b = 0; b < 256; ++b)
    if (first.test(b) && a_->next(s, b) != kDead) out.set(b);
  return out;
}

int64_t Matcher::min_completion() const {
  Automaton::Call call(*a_);
  return a_->min_completion(state_locked());
}

int64_t Matcher::min_completion_after(unsigned byte) const {
  if (history_.back().ended) return -1;
  Automaton::Call call(*a_);
  const int32_t n = a_->next(state_locked(), byte);
  return n == kDead ? -1 : a_->min_completion(n);
}

}  // namespace nemotron::text::grammar
