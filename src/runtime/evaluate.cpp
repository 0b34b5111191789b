// Perplexity and MTP acceptance (protocols in evaluate.h). On the CPU, windows and prompts
// are independent, so each thread of the pool takes whole windows / prompts (the kernels'
// own parallel_for runs serially inside a worker): no per-layer synchronisation.
#include "runtime/evaluate.h"

#include <algorithm>
#include <cmath>

#include "model/backend.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::runtime {

std::vector<std::pair<int64_t, int64_t>> perplexity_windows(int64_t n, int64_t context) {
  if (context < 2) throw Error("context must be at least 2 tokens, got " + std::to_string(context));
  std::vector<std::pair<int64_t, int64_t>> w;
  for (int64_t b = 0; b < n; b += context) {
    const int64_t e = std::min(n, b + context);
    if (e - b >= 2) w.emplace_back(b, e);
  }
  return w;
}

void accumulate_nll(const float* logits, int64_t rows, int64_t vocab, const int32_t* targets, double* sum) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* l = logits + r * vocab;
    const int32_t t = targets[r];
    if (t < 0 || t >= vocab) throw Error("target id " + std::to_string(t) + " outside the vocabulary");
    double m = l[0];
    for (int64_t i = 1; i < vocab; ++i) m = std::max(m, static_cast<double>(l[i]));
    double s = 0.0;
    for (int64_t i = 0; i < vocab; ++i) s += std::exp(static_cast<double>(l[i]) - m);
    *sum += (m + std::log(s)) - static_cast<double>(l[t]);
  }
}

namespace {

void check_ids(const model::Model& m, const std::vector<int32_t>& ids) {
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= m.config.vocab_size)
      throw Error("token " + std::to_string(i) + " = " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                  std::to_string(m.config.vocab_size) + ")");
}

PerplexityResult finish(const std::vector<int32_t>& ids, const std::vector<std::pair<int64_t, int64_t>>& w,
                        const std::vector<double>& per_window, const char* device) {
  PerplexityResult r;
  r.tokens = static_cast<int64_t>(ids.size());
  r.windows = static_cast<int64_t>(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    r.scored += w[i].second - w[i].first - 1;
    r.nll_sum += per_window[i];  // window order: deterministic
  }
  r.mean_nll = r.nll_sum / static_cast<double>(r.scored);
  r.ppl = std::exp(r.mean_nll);
  r.window_nll = per_window;
  r.device = device;
  return r;
}

std::vector<std::pair<int64_t, int64_t>> windows_or_throw(const std::vector<int32_t>& ids, int64_t context) {
  auto w = perplexity_windows(static_cast<int64_t>(ids.size()), context);
  if (w.empty())
    throw Error("perplexity needs at least 2 tokens, got " + std::to_string(ids.size()));
  return w;
}

}  // namespace

PerplexityResult perplexity(const model::Model& m, const std::vector<int32_t>& ids, int64_t context,
                            const std::string& device_request, const PerplexityOptions& opt) {
  check_ids(m, ids);
  if (opt.step_tokens < 0) throw Error("step tokens must be positive, got " + std::to_string(opt.step_tokens));
  const auto w = windows_or_throw(ids, context);
  const std::string device = model::resolve_device(device_request);
  const int64_t V = m.config.vocab_size;
  const int64_t per_step = opt.step_tokens > 0 ? std::min(opt.step_tokens, context) : context;
  std::vector<double> nll(w.size(), 0.0);
  // Windows i0..i1-1 together, each in steps of per_step tokens (the windows of a batch are
  // as long as each other but for the last).
  auto score = [&](model::Backend& b, std::size_t i0, std::size_t i1) {
    std::vector<int> slots;
    for (std::size_t i = i0; i < i1; ++i) slots.push_back(b.acquire_slot());
    for (int64_t at = 0;; at += per_step) {
      std::vector<model::StepChunk> chunks;
      std::vector<std::size_t> of;
      for (std::size_t i = i0; i < i1; ++i) {
        const auto [beg, end] = w[i];
        if (beg + at >= end) continue;
        chunks.push_back({.slot = slots[i - i0], .ids = ids.data() + beg + at, .T = std::min(per_step, end - beg - at),
                          .logits = model::LogitsOut::All});
        of.push_back(i);
      }
      if (chunks.empty()) break;
      const auto out = b.step(chunks);
      for (std::size_t c = 0; c < chunks.size(); ++c) {
        const int64_t s = w[of[c]].first + at, end = w[of[c]].second;
        const int64_t rows = std::min(chunks[c].T, end - 1 - s);  // the window's last row has no target
        if (rows > 0) accumulate_nll(out[c].logits.data(), rows, V, ids.data() + s + 1, &nll[of[c]]);
      }
    }
    for (int s : slots) b.release_slot(s);
  };
  model::BackendOptions o;
  o.device = device;
  o.max_spec_seqs = 0;  // scoring never rolls back
  o.ssm_state = opt.ssm_state;
  if (device == "cpu") {
    // Windows are independent: each pool thread takes whole windows on a backend of its own
    // (the kernels' own parallel_for runs serially inside a worker).
    o.max_step_tokens = per_step;
    parallel_for(w.size(), [&](std::size_t i0, std::size_t i1) {
      const auto b = model::make_backend(m, o);
      for (std::size_t i = i0; i < i1; ++i) score(*b, i, i + 1);
    });
  } else {
    // Batches of windows, one slot each; logits of a batch <= ~1 GiB on the host.
    const int64_t by_memory = std::max<int64_t>(1, (int64_t{1} << 28) / std::max<int64_t>(1, context * V));
    const int batch = static_cast<int>(std::min<int64_t>({8, by_memory, static_cast<int64_t>(w.size())}));
    o.max_seqs = batch;
    o.max_step_tokens = batch * per_step;
    o.kv_tokens = batch * ((context + 15) / 16 * 16);
    const auto b = model::make_backend(m, o);
    for (std::size_t i0 = 0; i0 < w.size(); i0 += static_cast<std::size_t>(batch))
      score(*b, i0, std::min(w.size(), i0 + static_cast<std::size_t>(batch)));
  }
  return finish(ids, w, nll, device.c_str());
}

}  // namespace nemotron::runtime
