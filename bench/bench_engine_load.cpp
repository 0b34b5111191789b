// The engine under a server's load, without a GPU: a closed loop of C clients (each submits a
// request of P prompt tokens and N generated tokens, waits for its last token, submits the
// next) against runtime::Engine with a backend whose steps take the time a step-time table
// gives (measured on a GPU: `nemotron bench --batch ... --mixed-prompt ...`) and compute
// nothing. Prints tok/s, TTFT and ITL percentiles as bench/load.py does through `serve`.
//
// What it answers: how much of a server's throughput and latency the scheduler and the
// engine loop account for, given the device's step times (a serve run far below this has
// lost its time outside the steps' modeled cost: the step log, `serve --step-log`, says
// where); and how scheduler settings (--max-step-tokens, --prefill-step-tokens) trade
// throughput against ITL p99, in seconds of CPU time instead of GPU time.
//
// Step time model (ms): a step with B decode rows and P prompt rows takes decode(B) + mixed(P)
// (both piecewise linear in their tables); a step without decode rows takes
// max(1.5, P / prefill_rate). Defaults: Nano NVFP4 on an H100 (bench/RESULTS.md, twenty-first
// session: decode steps at B = 1 / 8 / 16 / 32 / 64 and the mixed steps 64 + P). The prompt
// rows' extra time does not depend on B here; measured, 512 rows cost 1.2x more beside 8 decode
// rows than beside 64, so the model is optimistic for steps of few decodes.
//
//   build/bench/bench_engine_load [--concurrency 64] [--requests 128] [--prompt-tokens 128]
//       [--max-tokens 128] [--max-step-tokens 512] [--prefill-step-tokens 2048]
//       [--decode-ms "1:1.95,8:5.33,..."] [--mixed-ms "128:9.3,..."] [--prefill-tok-s 30400]
//       [--from-bench bench.json] [--step-log FILE]
// --from-bench takes the tables from `nemotron bench --json` output: decode steps from its
// "batch" entries, the prompt rows' extra time from its "mixed" entries of the largest B
// (mixed_step_ms - decode_step_ms by prompt rows), the prefill rate from its largest "prefill".
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "model/backend.h"
#include "runtime/engine.h"
#include "util/error.h"
#include "util/json.h"

using namespace nemotron;
using Clock = std::chrono::steady_clock;

namespace {

using Table = std::vector<std::pair<double, double>>;  // (x, ms), x ascending

// Points (x, ms) -> a table: ascending x (else an Error naming `what`), (0, 0) first when absent.
Table make_table(Table t, const std::string& what) {
  for (std::size_t i = 1; i < t.size(); ++i)
    if (t[i].first <= t[i - 1].first) throw Error(what + ": x must ascend");
  if (t.empty() || t.front().first > 0) t.insert(t.begin(), {0.0, 0.0});
  return t;
}

// "x:ms,x:ms,..." -> a table.
Table parse_table(const std::string& s, const std::string& flag) {
  Table t;
  for (std::size_t at = 0; at < s.size();) {
    const std::size_t end = std::min(s.find(',', at), s.size());
    const std::string item = s.substr(at, end - at);
    const std::size_t colon = item.find(':');
    const auto bad = [&] { return Error(flag + ": '" + item + "' is not x:ms"); };
    if (colon == std::string::npos) throw bad();
    try {
      t.emplace_back(std::stod(item.substr(0, colon)), std::stod(item.substr(colon + 1)));
    } catch (const std::exception&) {
      throw bad();
    }
    at = end + 1;
  }
  return make_table(std::move(t), flag);
}

// `nemotron bench --json` output -> the step-time tables and the prefill rate (see the top).
// Mixed entries of the same prompt rows: the one over the most sequences (a server's step).
void tables_from_bench(const std::string& path, Table& decode, Table& mixed, double& prefill_tok_s) {
  const Json j = Json::parse(read_file(path));
  const std::string what = "--from-bench " + path;
  Table d;
  for (const Json& b : j.value("batch", Json::array()))
    d.emplace_back(b.at("batch").get<double>(), b.at("step_ms").get<double>());
  if (d.empty()) throw Error(what + ": no \"batch\" entries (run bench with --batch)");
  decode = make_table(std::move(d), what);
  const Json steps = j.value("mixed", Json::array());
  int64_t largest = 0;
  for (const Json& x : steps) largest = std::max(largest, x.at("batch").get<int64_t>());
  std::map<int64_t, std::pair<int64_t, double>> extra;  // prompt rows -> (sequences, extra ms)
  for (const Json& x : steps) {
    if (x.at("batch").get<int64_t>() != largest) continue;
    const int64_t rows = x.at("prompt_rows").get<int64_t>(), seqs = x.value("prompt_sequences", int64_t{1});
    const double ms = x.at("mixed_step_ms").get<double>() - x.at("decode_step_ms").get<double>();
    auto it = extra.find(rows);
    if (it == extra.end() || seqs > it->second.first) extra[rows] = {seqs, ms};
  }
  if (!extra.empty()) {
    Table m;
    for (const auto& [rows, e] : extra) m.emplace_back(static_cast<double>(rows), e.second);
    mixed = make_table(std::move(m), what);
  }
  int64_t tokens = 0;
  for (const Json& p : j.value("prefill", Json::array()))
    if (p.at("tokens").get<int64_t>() > tokens) {
      tokens = p.at("tokens").get<int64_t>();
      prefill_tok_s = p.at("tok_s").get<double>();
    }
}

// Piecewise linear; beyond the last point, the last segment's slope.
double lookup(const Table& t, double x) {
  for (std::size_t i = 1; i < t.size(); ++i)
    if (x <= t[i].first || i + 1 == t.size()) {
      const double f = (x - t[i - 1].first) / (t[i].first - t[i - 1].first);
      return t[i - 1].second + f * (t[i].second - t[i - 1].second);
    }
  return t.back().second;
}

// A backend whose steps sleep for the modeled time; every sampled row draws token 5. A chunk
// of one row for a slot past its first token is a decode row, any other row a prompt row.
class TimedBackend final : public model::Backend {
 public:
  TimedBackend(const model::Model& m, int slots, Table decode, Table mixed, double prefill_tok_s)
      : model_(m), pos_(static_cast<std::size_t>(slots), -1), decode_(std::move(decode)), mixed_(std::move(mixed)),
        prefill_tok_s_(prefill_tok_s) {}
  const model::Model& model() const override { return model_; }
  const char* device() const override { return "timed"; }
  int slots() const override { return static_cast<int>(pos_.size()); }
  int acquire_slot() override {
    for (std::size_t i = 0; i < pos_.size(); ++i)
      if (pos_[i] < 0) {
        pos_[i] = 0;
        return static_cast<int>(i);
      }
    throw Error("timed backend: every slot is in use");
  }
  void release_slot(int slot) override { pos_.at(static_cast<std::size_t>(slot)) = -1; }
  int64_t position(int slot) const override { return pos_.at(static_cast<std::size_t>(slot)); }
  void begin_step(const std::vector<model::StepChunk>& chunks) override {
    chunks_ = chunks;
    int64_t B = 0, P = 0;
    for (const auto& c : chunks) {
      int64_t& pos = pos_.at(static_cast<std::size_t>(c.slot));
      (c.T == 1 && pos > 0 ? B : P) += c.T;
      pos += c.T;
    }
    const double ms = B > 0 ? lookup(decode_, static_cast<double>(B)) + lookup(mixed_, static_cast<double>(P))
                            : std::max(1.5, 1e3 * static_cast<double>(P) / prefill_tok_s_);
    end_ = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(ms * 1e3));
  }
  std::vector<model::StepOutput> finish_step() override {
    std::this_thread::sleep_until(end_);
    std::vector<model::StepOutput> out(chunks_.size());
    for (std::size_t i = 0; i < out.size(); ++i)
      if (chunks_[i].sample) {
        out[i].sample.token = 5;
        out[i].samples.push_back(out[i].sample);
      }
    return out;
  }
  std::vector<float> last_hidden() const override { return {}; }
  bool can_roll_back() const override { return false; }
  void roll_back(int, int64_t) override { throw Error("timed backend: no roll-back"); }
  void mtp_roll_back(int, int64_t) override { throw Error("timed backend: no roll-back"); }
  bool can_snapshot() const override { return false; }
  int64_t snapshot_bytes(int64_t) const override { return 0; }
  void save_snapshot(int, uint64_t) override { throw Error("timed backend: no snapshots"); }
  void load_snapshot(uint64_t, int) override { throw Error("timed backend: no snapshots"); }
  void drop_snapshot(uint64_t) override {}
  std::vector<uint8_t> export_snapshot(uint64_t) const override { throw Error("timed backend: no snapshots"); }
  void import_snapshot(uint64_t, const std::vector<uint8_t>&) override { throw Error("timed backend: no snapshots"); }
  void observe_prompt(int, const int32_t*, int64_t) override {}
  std::vector<float> mtp_forward(int, const int32_t*, const float*, int64_t, bool) override {
    throw Error("timed backend: no MTP head");
  }
  int64_t mtp_position(int) const override { return 0; }
  void record_routing(bool) override {}
  std::vector<std::vector<int32_t>> routing() const override { return {}; }

 private:
  const model::Model& model_;
  std::vector<int64_t> pos_;  // -1: free
  Table decode_, mixed_;
  double prefill_tok_s_;
  std::vector<model::StepChunk> chunks_;
  Clock::time_point end_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(static_cast<double>(v.size() - 1) * p / 100.0)];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The engine under a closed-loop load, with modeled step times (no GPU)"};
  int concurrency = 64, requests = 128;
  int64_t prompt_tokens = 128, max_tokens = 128, max_step = 512, prefill_step = 2048;
  std::string decode_ms = "1:1.95,8:5.33,16:8.3,32:11.3,64:16.1";
  std::string mixed_ms = "128:9.3,256:12.2,512:20.6,1024:32.7";
  double prefill_tok_s = 30400;
  std::string step_log, from_bench, model_dir = std::string(NEMOTRON_SOURCE_DIR) + "/models/demo";
  app.add_option("--concurrency", concurrency)->check(CLI::Range(1, 4096));
  app.add_option("--requests", requests)->check(CLI::PositiveNumber);
  app.add_option("--prompt-tokens", prompt_tokens)->check(CLI::PositiveNumber);
  app.add_option("--max-tokens", max_tokens)->check(CLI::PositiveNumber);
  app.add_option("--max-step-tokens", max_step)->check(CLI::PositiveNumber);
  app.add_option("--prefill-step-tokens", prefill_step)->check(CLI::NonNegativeNumber);
  app.add_option("--decode-ms", decode_ms, "Decode step ms by batch size, B:ms,...");
  app.add_option("--mixed-ms", mixed_ms, "ms a step's prompt rows add beside decode rows, P:ms,...");
  app.add_option("--prefill-tok-s", prefill_tok_s, "Prompt tokens/s of steps without decode rows")
      ->check(CLI::PositiveNumber);
  app.add_option("--from-bench", from_bench, "Take the tables from `nemotron bench --json` output (overrides the three above)");
  app.add_option("--step-log", step_log, "The engine's step log (bench/step_log.py sums it)");
  app.add_option("--model", model_dir, "A model directory for the engine's config (default: the demo model)");
  CLI11_PARSE(app, argc, argv);
  try {
    Table decode = parse_table(decode_ms, "--decode-ms"), mixed = parse_table(mixed_ms, "--mixed-ms");
    if (!from_bench.empty()) tables_from_bench(from_bench, decode, mixed, prefill_tok_s);
    const model::Model model = model::Model::load(model_dir);
    runtime::EngineOptions o;
    o.limits.max_num_seqs = concurrency;
    o.limits.max_step_tokens = max_step;
    o.limits.prefill_step_tokens = prefill_step;
    o.limits.kv_token_capacity = int64_t{concurrency} * (prompt_tokens + max_tokens);
    o.max_model_len = prompt_tokens + max_tokens;
    o.step_log = step_log;
    runtime::Engine engine(std::make_unique<TimedBackend>(model, concurrency, std::move(decode), std::move(mixed),
                                                          prefill_tok_s),
                           o);
    std::atomic<int> next{0};
    std::mutex mu;
    std::vector<double> ttft, itl, queue, prefill;  // ms
    const auto t0 = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < concurrency; ++c)
      clients.emplace_back([&] {
        for (int i = next++; i < requests; i = next++) {
          runtime::GenerationRequest r;
          r.prompt.assign(static_cast<std::size_t>(prompt_tokens), 7 + i % 50);
          r.max_tokens = max_tokens;
          r.sampling.temperature = 0;
          std::mutex m;
          std::condition_variable cv;
          bool done = false;
          const auto sent = Clock::now();
          Clock::time_point last{};
          std::vector<double> gaps;
          double first = 0, queued = 0, prefilled = 0;
          engine.submit(r, [&](const runtime::TokenEvent& ev) {
            const auto now = Clock::now();
            if (ev.token >= 0) {
              if (last == Clock::time_point{}) {
                first = std::chrono::duration<double, std::milli>(now - sent).count();
                queued = 1e3 * ev.queue_seconds;
                prefilled = 1e3 * ev.prefill_seconds;
              }
              else gaps.push_back(std::chrono::duration<double, std::milli>(now - last).count());
              last = now;
            }
            if (ev.finished) {
              std::lock_guard<std::mutex> lock(m);
              done = true;
              cv.notify_all();
            }
          });
          std::unique_lock<std::mutex> lock(m);
          cv.wait(lock, [&] { return done; });
          std::lock_guard<std::mutex> g(mu);
          ttft.push_back(first);
          queue.push_back(queued);
          prefill.push_back(prefilled);
          itl.insert(itl.end(), gaps.begin(), gaps.end());
        }
      });
    for (auto& t : clients) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    const double p50 = percentile(itl, 50), p99 = percentile(itl, 99);
    std::printf("concurrency %d, %d requests of %lld + %lld tokens, --max-step-tokens %lld --prefill-step-tokens %lld\n",
                concurrency, requests, static_cast<long long>(prompt_tokens), static_cast<long long>(max_tokens),
                static_cast<long long>(max_step), static_cast<long long>(prefill_step));
    std::printf("%.1f tok/s, TTFT p50 / p99 %.1f / %.1f ms, ITL p50 / p99 %.2f / %.2f ms (p99 / p50 %.2f), %.3f s\n",
                static_cast<double>(requests) * static_cast<double>(max_tokens) / wall, percentile(ttft, 50),
                percentile(ttft, 99), p50, p99, p50 > 0 ? p99 / p50 : 0.0, wall);
    std::printf("TTFT parts: queue (submit to the first step) p50 %.1f ms, prefill (first step to token) p50 %.1f ms\n",
                percentile(queue, 50), percentile(prefill, 50));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
