// Tokenizer throughput on one core with the demo tokenizer (Nemotron 3 structure: Tekken
// split regex + byte-level BPE, 4096 tokens): encode MB/s of English text (a fixed prose
// paragraph mixed with the chat template as code-like text, and the license texts of
// /usr/share/common-licenses), decode MB/s, and incremental (streaming) decode MB/s.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>
#include <vector>

#include "text/tokenizer/tokenizer.h"
#include "util/json.h"

namespace {

using nemotron::text::Tokenizer;

const Tokenizer& demo() {
  static const Tokenizer tok = Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo");
  return tok;
}

// ~1 MB of English text: a fixed prose paragraph and the chat template (code-like), repeated
// with a counter so that not every word is a cache hit.
const std::string& english() {
  static const std::string text = [] {
    const std::string para =
        "The quick brown fox jumps over the lazy dog. This License applies to any program or other "
        "work which contains a notice placed by the copyright holder saying it may be distributed "
        "under the terms of this General Public License. Each licensee is addressed as \"you\". "
        "Activities other than copying, distribution and modification are not covered by this "
        "License; they are outside its scope.\n\n";
    const std::string code = demo().chat_template();
    std::string out;
    for (int i = 0; out.size() < (1u << 20); ++i) {
      out += para;
      out += "Section " + std::to_string(i) + ": ";
      if (i % 8 == 0) out += code.substr(0, 2000);
    }
    return out;
  }();
  return text;
}

void BM_Encode(benchmark::State& state) {
  const Tokenizer& tok = demo();
  const std::string& text = english();
  std::size_t n = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n);
}
BENCHMARK(BM_Encode)->Unit(benchmark::kMillisecond);

// Real, non-repeated English prose: the GPL/Apache/... texts of /usr/share/common-licenses
// (Debian's base-files), ~260 KB. The merge cache is warm after the first iteration, as in a
// long-running server.
void BM_EncodeLicenses(benchmark::State& state) {
  std::string text;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/usr/share/common-licenses", ec))
    if (e.is_regular_file()) text += nemotron::read_file(e.path().string());
  if (text.empty()) {
    state.SkipWithError("/usr/share/common-licenses not found");
    return;
  }
  const Tokenizer tok = Tokenizer::load(NEMOTRON_SOURCE_DIR "/models/demo");  // fresh cache
  for (auto _ : state) {
    auto ids = tok.encode(text);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeLicenses)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& state) {
  const Tokenizer& tok = demo();
  const std::vector<int32_t> ids = tok.encode(english());
  for (auto _ : state) {
    auto s = tok.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * english().size()));
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_IncrementalDecode(benchmark::State& state) {
  const Tokenizer& tok = demo();
  const std::string text = english().substr(0, 64 * 1024);
  const std::vector<int32_t> ids = tok.encode(text);
  for (auto _ : state) {
    nemotron::text::IncrementalDetokenizer detok(tok);
    std::size_t total = 0;
    for (int32_t id : ids) total += detok.push(id).size();
    total += detok.flush().size();
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_IncrementalDecode)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
