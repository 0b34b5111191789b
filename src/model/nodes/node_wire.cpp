#include "model/nodes/node_wire.h"

namespace nemotron::model::nodes {
namespace {

void encode_params(ByteWriter& w, const SamplingParams& p) {
  w.pod(p.temperature);
  w.pod(p.top_p);
  w.pod(p.top_k);
  w.pod(p.min_p);
  w.pod(p.presence_penalty);
  w.pod(p.frequency_penalty);
  w.pod(p.repetition_penalty);
  w.pod(static_cast<uint8_t>(p.seed.has_value()));
  w.pod(p.seed.value_or(0));
  w.pod(p.logprobs);
}

SamplingParams decode_params(ByteReader& r) {
  SamplingParams p;
  p.temperature = r.pod<float>();
  p.top_p = r.pod<float>();
  p.top_k = r.pod<int32_t>();
  p.min_p = r.pod<float>();
  p.presence_penalty = r.pod<float>();
  p.frequency_penalty = r.pod<float>();
  p.repetition_penalty = r.pod<float>();
  const bool has_seed = r.pod<uint8_t>() != 0;
  const auto seed = r.pod<uint64_t>();
  if (has_seed) p.seed = seed;
  p.logprobs = r.pod<int32_t>();
  return p;
}

}  // namespace

// Per chunk: slot, T, ids[T], flags (sampling, sample, keep_states, allowed), logits mode,
// sample_rows, seed, draw, [params], [sample_rows * ceil(V / 32) mask words].
void encode_chunks(ByteWriter& w, const std::vector<StepChunk>& chunks, int64_t vocab_size) {
  const int64_t words = (vocab_size + 31) / 32;
  w.pod(static_cast<int64_t>(chunks.size()));
  for (const StepChunk& c : chunks) {
    w.pod(static_cast<int32_t>(c.slot));
    w.array(c.ids, c.ids ? c.T : 0);
    const uint8_t flags = (c.sampling ? 1 : 0) | (c.sample ? 2 : 0) | (c.keep_states ? 4 : 0) | (c.allowed ? 8 : 0);
    w.pod(flags);
    w.pod(static_cast<uint8_t>(c.logits));
    w.pod(c.sample_rows);
    w.pod(c.seed);
    w.pod(c.draw);
    if (c.sampling) encode_params(w, *c.sampling);
    // A mask covers the sampled rows (a chunk that samples none has no mask rows to send).
    if (c.allowed) w.array(c.allowed, (c.sample ? c.sample_rows : 0) * words);
  }
}

DecodedChunks decode_chunks(ByteReader& r, int64_t vocab_size) {
  DecodedChunks d;
  const auto n = r.pod<int64_t>();
  if (n < 0 || n > (1 << 20)) throw Error("node message: " + std::to_string(n) + " chunks");
  const int64_t words = (vocab_size + 31) / 32;
  for (int64_t i = 0; i < n; ++i) {
    StepChunk c;
    c.slot = r.pod<int32_t>();
    d.ids.push_back(r.array<int32_t>());
    c.ids = d.ids.back().empty() ? nullptr : d.ids.back().data();
    c.T = static_cast<int64_t>(d.ids.back().size());
    const auto flags = r.pod<uint8_t>();
    const auto logits = r.pod<uint8_t>();
    if (logits > static_cast<uint8_t>(LogitsOut::All)) throw Error("node message: logits mode " + std::to_string(logits));
    c.logits = static_cast<LogitsOut>(logits);
    c.sample_rows = r.pod<int64_t>();
    c.seed = r.pod<uint64_t>();
    c.draw = r.pod<uint64_t>();
    c.sample = (flags & 2) != 0;
    c.keep_states = (flags & 4) != 0;
    if (flags & 1) {
      d.params.push_back(decode_params(r));
      c.sampling = &d.params.back();
    }
    if (flags & 8) {
      d.allowed.push_back(r.array<uint32_t>());
      if (static_cast<int64_t>(d.allowed.back().size()) != (c.sample ? c.sample_rows : 0) * words)
        throw Error("node message: a mask of " + std::to_string(d.allowed.back().size()) + " words");
      c.allowed = d.allowed.back().data();
    }
    d.chunks.push_back(c);
  }
  return d;
}

void encode_drafts(ByteWriter& w, const std::vector<Backend::DraftInput>& inputs, int64_t hidden_size) {
  w.pod(static_cast<int64_t>(inputs.size()));
  for (const Backend::DraftInput& in : inputs) {
    w.pod(static_cast<int32_t>(in.slot));
    const int64_t T = in.next_ids && in.hidden ? in.T : 0;  // the backend refuses T < 1 on every node
    w.array(in.next_ids, T);
    w.array(in.hidden, T * hidden_size);
  }
}

DecodedDrafts decode_drafts(ByteReader& r, int64_t hidden_size) {
  DecodedDrafts d;
  const auto n = r.pod<int64_t>();
  if (n < 0 || n > (1 << 20)) throw Error("node message: " + std::to_string(n) + " draft inputs");
  for (int64_t i = 0; i < n; ++i) {
    Backend::DraftInput in;
    in.slot = r.pod<int32_t>();
    d.ids.push_back(r.array<int32_t>());
    d.hidden.push_back(r.array<float>());
    in.T = static_cast<int64_t>(d.ids.back().size());
    if (static_cast<int64_t>(d.hidden.back().size()) != in.T * hidden_size)
      throw Error("node message: a draft input of " + std::to_string(in.T) + " ids and " +
                  std::to_string(d.hidden.back().size()) + " hidden values");
    in.next_ids = in.T > 0 ? d.ids.back().data() : nullptr;
    in.hidden = in.T > 0 ? d.hidden.back().data() : nullptr;
    d.inputs.push_back(in);
  }
  return d;
}

}  // namespace nemotron::model::nodes
