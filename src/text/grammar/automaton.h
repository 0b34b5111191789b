#pragma once
// The pushdown matcher behind every grammar, determinized lazily.
//
// Matching state: a SET OF STACKS (llama.cpp's GBNF engine works the same way). A stack is a
// list of positions into Grammar::elems(), bottom first: the top is the byte-set element to
// match next, every frame below it the position its rule continues at after the rule above
// returns. Calls whose return position is the end of a sequence push nothing (tail calls),
// so right-recursive repetition (x*, JSON string bodies, array tails) keeps stacks flat. An
// empty stack means the text so far is a complete match.
//
// Advancing by one byte: every stack whose top set holds the byte moves one element on, then
// is closed: rule references are expanded into each alternative's first element, ends of
// sequences pop. The result is sorted and deduplicated, so a set of stacks has one canonical
// KEY (stacks in lexicographic order, each as [length, positions...]).
//
// Each distinct key is interned once as a STATE with a lazily filled 256-entry transition
// row, so advancing a state by a byte already seen is one array load: the automaton is a DFA
// built on demand over the stack sets. Token masks (mask.cpp) walk the vocabulary trie over
// these rows. State ids are valid within one `generation`: past kMaxStates states the
// automaton is cleared (generation + 1) and matchers re-intern their keys.
//
// Limits (documented behaviour, not errors): stacks deeper than kMaxDepth frames (nesting
// that deep) and stack sets larger than kMaxStacks are cut (the excess stacks are dropped),
// so a pathological grammar or text can only lose continuations, never overflow.
// Work is bounded per matcher call (Call): the closures of one call may build at most
// max_work_per_call() stack entries, past which the call throws nemotron::Error (an
// ambiguous bounded repetition such as (a|aa){5000} keeps one stack per way to split the
// text: thousands of stacks per state, seconds per token mask). The automaton stays
// consistent: the transition being computed is simply not recorded.
//
// Not thread-safe by itself: the owner (Grammar::Cache) guards it with `mutex`.
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "text/grammar/ir.h"

namespace nemotron::text::grammar {

class Vocabulary;
class MaskCache;

constexpr int32_t kDead = -1;

class Automaton {
 public:
  struct KeyHash {
    std::size_t operator()(const std::vector<int32_t>& k) const noexcept;
  };
  explicit Automaton(const Grammar& g);

  static constexpr std::size_t kMaxStates = 200000;
  // The reset threshold (kMaxStates; tests lower it to exercise resets).
  static void set_max_states(std::size_t n);
  static constexpr std::size_t kMaxDepth = 4096;
  static constexpr std::size_t kMaxStacks = 4096;
  // Interned key entries past which the automaton is cleared like past kMaxStates (memory).
  static constexpr std::size_t kMaxKeyInts = std::size_t{32} << 20;
  static constexpr uint64_t kMaxWorkPerCall = uint64_t{16} << 20;
  // The per-call bound (kMaxWorkPerCall; tests lower it).
  static void set_max_work_per_call(uint64_t n);
  static uint64_t max_work_per_call();

  // The lock plus the work bound of one matcher call.
  class Call {
   public:
    explicit Call(Automaton& a);
    ~Call();
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    std::lock_guard<std::mutex> lock_;
    Automaton& a_;
  };
  // Stack entries built so far (a work counter; never reset).
  uint64_t work() const { return work_; }

  std::mutex mutex;  // guards everything below (taken by Matcher / sampler calls)

  uint64_t generation() const { return generation_; }
  // Clears every state when over kMaxStates; call only when no state id is in flight.
  void maybe_reset();

  int32_t initial();
  int32_t intern(const std::vector<int32_t>& key);
  const std::vector<int32_t>& key(int32_t s) const { return states_[static_cast<std::size_t>(s)].key; }

  int32_t next(int32_t s, unsigned byte) {
    const int32_t* row = rows_[static_cast<std::size_t>(s)].get();
    if (row) {
      const int32_t v = row[byte];
      if (v != kUnknown) return v;
    }
    return next_slow(s, byte);
  }
  bool accepting(int32_t s) const { return states_[static_cast<std::size_t>(s)].accepting; }
  bool live(int32_t s) const { return states_[static_cast<std::size_t>(s)].live; }
  // Union of the byte sets at the tops of the stacks: the bytes worth trying.
  const ByteSet& first_bytes(int32_t s) const { return states_[static_cast<std::size_t>(s)].first; }
  // The MAIN step of state s (computed on first use): the largest set of bytes that all
  // lead to one same state, and that state. A trie subtree whose bytes lie in the main bytes
  // of every state along the chain s -> main target -> ... for its height is accepted whole
  // (mask.cpp): inside a JSON string the chain is a self-loop; in a string with maxLength it
  // counts down.
  struct Main {
    ByteSet bytes;
    int32_t target = kDead;
  };
  const Main& main_step(int32_t s);
  // Fewest bytes that complete a match from state s.
  int64_t min_completion(int32_t s) const { return states_[static_cast<std::size_t>(s)].min_completion; }
  std::size_t num_states() const { return states_.size(); }
  const Grammar& grammar() const { return g_; }

  // The mask cache for `vocab` (one per vocabulary, created on first use).
  MaskCache& masks(const std::shared_ptr<const Vocabulary>& vocab);

 private:
  static constexpr int32_t kUnknown = -2;
  struct State {
    std::vector<int32_t> key;
    ByteSet first;
    int64_t min_completion = 0;
    bool accepting = false, live = false;
    bool main_known = false;
    Main main;
  };
  int32_t next_slow(int32_t s, unsigned byte);
  // `seen`: the configurations already expanded in this closure (ends cycles of tail calls
  // through rules that can be empty).
  void closure(std::vector<int32_t>& stack, std::vector<std::vector<int32_t>>& out,
               std::unordered_set<std::vector<int32_t>, KeyHash>& seen);
  int32_t intern_stacks(std::vector<std::vector<int32_t>>& stacks);

  void add_work(std::size_t n);

  const Grammar& g_;
  uint64_t generation_ = 0;
  uint64_t work_ = 0;
  uint64_t work_limit_ = UINT64_MAX;
  std::size_t key_ints_ = 0;
  int32_t initial_ = -1;
  std::vector<State> states_;
  std::vector<std::unique_ptr<int32_t[]>> rows_;
  std::unordered_map<std::vector<int32_t>, int32_t, KeyHash> ids_;
  std::vector<std::pair<std::weak_ptr<const Vocabulary>, std::unique_ptr<MaskCache>>> masks_;
};

// Grammar's lazily built automaton slot.
struct Grammar::Cache {
  std::mutex mu;
  std::shared_ptr<Automaton> automaton;
};

// The automaton of g (built on first use, shared by every matcher of g).
std::shared_ptr<Automaton> automaton_of(const Grammar& g);

}  // namespace nemotron::text::grammar
