// The constrained-decoding compilers (text/grammar/): the input's first byte picks the
// front end, the rest is its text:
//   'j' JSON Schema (JSON text)     'r' regex              'e' EBNF / GBNF (root "root")
//   'o' json_object / json_value    't' tool_call_grammar (an OpenAI `tools` array)
// A grammar that compiles is matched over the demo model's vocabulary: a few mask steps,
// each accepting a token chosen from the mask (every chosen token must be accepted, a token
// outside the mask refused), then a rollback; a text sampled from the grammar must match it
// byte by byte (sampler.h's claim). Anything else must be a nemotron::Error (compiling, or a
// matcher call past its work bound).
#include <random>

#include "fuzz_common.h"
#include "server/grammar_constraint.h"
#include "text/grammar/automaton.h"
#include "text/grammar/grammar.h"
#include "text/grammar/sampler.h"
#include "text/tokenizer/tokenizer.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::text;

namespace {

struct Vocab {
  Tokenizer tok;
  std::shared_ptr<const grammar::Vocabulary> v;
  int32_t eos, open, close;
};

const Vocab& vocab() {
  static const Vocab v = [] {
    Vocab x{Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo"), nullptr, 0, 0, 0};
    x.v = grammar::Vocabulary::from_tokenizer(x.tok);
    x.eos = x.tok.token_to_id("<|im_end|>");
    x.open = x.tok.token_to_id("<tool_call>");
    x.close = x.tok.token_to_id("</tool_call>");
    return x;
  }();
  return v;
}

bool bit(const std::vector<uint32_t>& m, int32_t t) { return (m[static_cast<std::size_t>(t) / 32] >> (t % 32)) & 1u; }

void exercise(const std::shared_ptr<const grammar::Grammar>& g, uint64_t seed) {
  const Vocab& V = vocab();
  grammar::Matcher m(g, V.v, {V.eos});
  std::vector<uint32_t> mask(V.v->mask_words());
  std::mt19937_64 rng(seed);
  for (int step = 0; step < 6 && !m.done(); ++step) {
    m.fill_mask(mask.data());
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < V.v->size(); ++t)
      if (bit(mask, t)) allowed.push_back(t);
    // A refused token leaves the state unchanged.
    const int32_t other = static_cast<int32_t>(rng() % static_cast<uint64_t>(V.v->size()));
    if (!bit(mask, other)) FUZZ_CHECK(!m.accept(other), "token %d outside the mask was accepted", other);
    if (allowed.empty()) break;
    const int32_t t = allowed[rng() % allowed.size()];
    FUZZ_CHECK(m.accept(t), "token %d from the mask was refused", t);
    (void)m.allowed_bytes();
    (void)m.min_completion();
  }
  if (m.history_size() > 0) m.rollback(1);
  (void)m.can_end();

  // Sampled texts match byte by byte.
  if (auto text = grammar::sample_text(g, seed, 48)) {
    grammar::Matcher b(g);
    FUZZ_CHECK(b.accept_bytes(*text) && b.can_end(), "sampled text does not match its grammar");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The production bound (about half a second of matching per call) would let one input run
  // for a minute under the sanitizers: the fuzzer checks behaviour at the bound, not its size.
  static const bool bounded = (grammar::Automaton::set_max_work_per_call(uint64_t{1} << 18), true);
  (void)bounded;
  const char mode = static_cast<char>(data[0]);
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the input: the token choices
  for (std::size_t i = 0; i < size; ++i) seed = (seed ^ data[i]) * 1099511628211ull;
  std::shared_ptr<const grammar::Grammar> g;
  try {
    switch (mode) {
      case 'j': g = grammar::from_json_schema(parse_json(text, "schema")); break;
      case 'r': g = grammar::from_regex(text); break;
      case 'e': g = grammar::from_ebnf(text); break;
      case 'o': {
        grammar::JsonOptions o;
        o.max_indent = static_cast<int32_t>(seed % 5);
        g = seed & 8 ? grammar::json_object(o) : grammar::json_value(o);
        break;
      }
      case 't': {
        const Vocab& V = vocab();
        g = server::tool_call_grammar(parse_json(text, "tools"), seed & 1, V.open, V.close);
        break;
      }
      default: return 0;
    }
  } catch (const Error&) {
    return 0;
  }
  FUZZ_CHECK(g != nullptr);
  (void)g->dump();
  try {
    exercise(g, seed);
  } catch (const Error&) {
    // A grammar too ambiguous to match within the automaton's work bound (automaton.h).
  }
  return 0;
}
