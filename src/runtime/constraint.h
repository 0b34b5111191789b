#pragma once
// What constrains a request's tokens (constrained decoding: a JSON schema, a grammar, an
// enforced tool call). The engine asks it for the allowed-token mask before each draw and tells
// it each emitted token; the sampler then draws only allowed tokens (on the device the mask is
// applied to the logits). Implemented by the server over the text layer's grammar matcher
// (runtime does not depend on the text layer); one object per request, used only by the engine
// thread.
#include <cstdint>

namespace nemotron::runtime {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // bits[t / 32] bit t % 32 set when token t may be drawn next (vocab_size bits, words of 32).
  virtual void fill_mask(uint32_t* bits) = 0;
  // Advances by `token`; false (nothing changed) when it is not allowed.
  virtual bool accept(int32_t token) = 0;
  // Undoes the last `n` accepted tokens (speculative drafts that were checked, not kept).
  virtual void rollback(int n) = 0;
};

}  // namespace nemotron::runtime
