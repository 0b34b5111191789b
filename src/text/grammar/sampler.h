#pragma once
// Random texts FROM a grammar (tests): a walk over the byte automaton choosing uniformly among
// the bytes that keep a match within the length budget, stopping at random once the text can
// end. Every text returned is accepted by the grammar (can_end() at its end).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "text/grammar/ir.h"

namespace nemotron::text::grammar {

// A random text of at most about `max_bytes` bytes (more only when the grammar's shortest
// text is longer); std::nullopt when the grammar cannot end within 4 * max_bytes or the walk
// needs more than 4 * Automaton::max_work_per_call() units of matching work in all (a
// matcher call's own "too ambiguous" Error propagates).
// `stop_probability`: chance of stopping at each point where the text can end.
std::optional<std::string> sample_text(const std::shared_ptr<const Grammar>& g, uint64_t seed, int64_t max_bytes = 256,
                                       double stop_probability = 0.1);

}  // namespace nemotron::text::grammar
