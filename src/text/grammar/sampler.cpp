#include "text/grammar/sampler.h"

#include <vector>

#include "text/grammar/automaton.h"
#include "text/grammar/grammar.h"

namespace nemotron::text::grammar {

std::optional<std::string> sample_text(const std::shared_ptr<const Grammar>& g, uint64_t seed, int64_t max_bytes,
                                       double stop_probability) {
  uint64_t s = seed;
  for (int i = 0; i < 2; ++i) {  // decorrelate nearby seeds
    s ^= s >> 33;
    s *= 0xFF51AFD7ED558CCDull;
    s ^= s >> 33;
    s *= 0xC4CEB9FE1A85EC53ull;
    s ^= s >> 33;
  }
  auto rnd = [&] {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  Matcher m(g);
  // The walk's work is bounded as a whole too (each byte is one matcher call): an ambiguous
  // grammar gives up (nullopt) instead of taking minutes.
  auto a = automaton_of(*g);
  auto work = [&] {
    std::lock_guard<std::mutex> lock(a->mutex);
    return a->work();
  };
  const uint64_t work_end = work() + 4 * Automaton::max_work_per_call();
  std::string out;
  const int64_t budget = std::max<int64_t>(max_bytes, m.min_completion());
  const int64_t hard = 4 * budget + 64;
  std::vector<unsigned> options;
  while (static_cast<int64_t>(out.size()) < hard) {
    if (work() > work_end) return std::nullopt;
    const bool can_end = m.can_end();
    if (can_end && (static_cast<double>(rnd() % 1000000) / 1e6 < stop_probability || m.done())) return out;
    const int64_t left = budget - static_cast<int64_t>(out.size()) - 1;
    options.clear();
    const ByteSet allowed = m.allowed_bytes();
    int64_t best = -1;
    unsigned best_b = 0;
    for (unsigned b = 0; b < 256; ++b) {
      if (!allowed.test(b)) continue;
      const int64_t need = m.min_completion_after(b);
      if (need < 0) continue;
      if (need <= left) options.push_back(b);
      if (best < 0 || need < best) {
        best = need;
        best_b = b;
      }
    }
    if (options.empty()) {
      if (can_end) return out;
      if (best < 0) return std::nullopt;  // (cannot happen: a live state has a way on)
      options.push_back(best_b);           // over budget: head for the shortest completion
    }
    const unsigned b = options[rnd() % options.size()];
    const char c = static_cast<char>(b);
    m.accept_bytes(std::string_view(&c, 1));
    out += c;
  }
  return std::nullopt;
}

}  // namespace nemotron::text::grammar
