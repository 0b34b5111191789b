// MTP draft acceptance on the CPU reference (protocol in evaluate.h).
#include <algorithm>

#include "model/cpu/cpu_forward.h"
#include "runtime/evaluate.h"
#include "util/error.h"
#include "util/parallel.h"

namespace nemotron::runtime {
namespace {

struct PromptRun {
  std::vector<int32_t> gen;                  // g_1..g_gen
  std::vector<std::vector<int32_t>> drafts;  // per step n: drafts 1..min(K, gen-1-n)
};

// One prompt: greedy trunk generation, then the MTP drafts of every step.
PromptRun run_prompt(const model::CpuModel& cpu, const int32_t* prompt, const MtpOptions& o) {
  const int64_t H = cpu.model().config.hidden_size, V = cpu.model().config.vocab_size;
  const int64_t L = o.prompt_len, G = o.gen;
  PromptRun r;
  // hidden rows h_0..h_{L+G-2} (post norm_f), trunk positions 0..L+G-2.
  std::vector<float> hidden;
  hidden.reserve(static_cast<std::size_t>((L + G) * H));
  auto state = cpu.new_state();
  auto out = cpu.forward(state, prompt, L, false);
  hidden.insert(hidden.end(), out.hidden.begin(), out.hidden.end());
  r.gen.push_back(model::argmax(out.logits.data(), V));
  for (int64_t n = 1; n < G; ++n) {
    out = cpu.forward(state, &r.gen.back(), 1, false);
    hidden.insert(hidden.end(), out.hidden.begin(), out.hidden.end());
    r.gen.push_back(model::argmax(out.logits.data(), V));
  }
  // MTP state over positions 0..L-2: (t_{i+1}, h_i).
  auto mtp = cpu.new_mtp_state();
  if (L >= 2) cpu.mtp_forward(mtp, prompt + 1, hidden.data(), L - 1, false);
  for (int64_t n = 0; n + 1 < G; ++n) {  // the last step has nothing to compare with
    const int64_t p = L - 1 + n, K = std::min<int64_t>(o.drafts, G - 1 - n);
    std::vector<int32_t> d;
    // Feeding (g_{n+1}, h_p) is both draft 1 and the state's advance with the true token.
    auto m = cpu.mtp_forward(mtp, &r.gen[n], hidden.data() + p * H, 1, false);
    d.push_back(model::argmax(m.logits.data(), V));
    if (K > 1) {
      auto chain = mtp;
      for (int64_t k = 2; k <= K; ++k) {
        const std::vector<float> prev = m.hidden;
        m = cpu.mtp_forward(chain, &d.back(), prev.data(), 1, false);
        d.push_back(model::argmax(m.logits.data(), V));
      }
    }
    r.drafts.push_back(std::move(d));
  }
  return r;
}

}  // namespace

MtpResult mtp_acceptance(const model::Model& m, const std::vector<int32_t>& ids, const MtpOptions& o) {
  if (!m.config.has_mtp()) throw Error(m.config.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  if (o.drafts < 1 || o.prompts < 1 || o.prompt_len < 1 || o.gen < 1)
    throw Error("MTP acceptance needs drafts, prompts, prompt length and gen of at least 1");
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= m.config.vocab_size)
      throw Error("token " + std::to_string(i) + " = " + std::to_string(ids[i]) + " is outside the vocabulary");
  MtpResult res;
  const int64_t n = static_cast<int64_t>(ids.size()), K = o.drafts;
  if (n < int64_t{o.prompt_len} + o.gen) {
    res.skipped = "the stream has " + std::to_string(n) + " tokens, fewer than prompt length + gen = " +
                  std::to_string(o.prompt_len + o.gen);
    return res;
  }
  res.stride = (n - o.prompt_len - o.gen) / std::max(o.prompts - 1, 1);
  const model::CpuModel cpu(m);
  std::vector<PromptRun> runs(static_cast<std::size_t>(o.prompts));
  parallel_for(runs.size(), [&](std::size_t j0, std::size_t j1) {
    for (std::size_t j = j0; j < j1; ++j)
      runs[j] = run_prompt(cpu, ids.data() + static_cast<int64_t>(j) * res.stride, o);
  });
  res.eligible.assign(K, 0);
  res.accepted.assign(K, 0);
  std::vector<int64_t>& given = res.given;
  given.assign(K, 0);
  for (const auto& r : runs) {
    for (std::size_t s = 0; s < r.drafts.size(); ++s) {
      bool ok = true;
      for (std::size_t k = 0; k < r.drafts[s].size(); ++k) {  // draft k+1 vs g_{s+2+k} = gen[s+1+k]
        ++res.eligible[k];
        if (ok) ++given[k];
        ok = ok && r.drafts[s][k] == r.gen[s + 1 + k];
        if (ok) ++res.accepted[k];
      }
    }
    res.generated.push_back(r.gen);
    res.drafts.push_back(r.drafts);
  }
  for (int64_t k = 0; k < K; ++k) {
    res.cumulative.push_back(res.eligible[k] ? static_cast<double>(res.accepted[k]) / res.eligible[k] : 0.0);
    res.conditional.push_back(given[k] ? static_cast<double>(res.accepted[k]) / given[k] : 0.0);
    res.tokens_per_step += res.cumulative.back();
  }
  res.ran = true;
  return res;
}

}  // namespace nemotron::runtime
