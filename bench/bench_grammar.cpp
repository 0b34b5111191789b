// Constrained decoding cost per generated token on the host: Matcher::fill_mask (the
// allowed-token bitmask) and Matcher::accept, over a 131,072-token byte-level vocabulary
// (Vocabulary::synthetic: realistic BPE-like tokens, UTF-8 pieces included), while "generating"
// typical JSON: documents tokenized greedily (longest match) with that vocabulary and fed token
// by token. Prints p50 / p99 / max per token for:
//   - json_object and a realistic nested schema, COLD (a fresh grammar: the first document
//     meets every state for the first time) and WARM (the grammar's shared automaton and mask
//     cache have seen earlier documents, as in a server after a few requests);
//   - the uncached worst case: the trie walk alone (compute_mask, no cache) at every distinct
//     state of the documents, with the automaton's transitions already known, and the first
//     visit of a state on a cold automaton;
//   - a string with maxLength 200 (every character a new state) against a plain string.
// Plain timing (steady_clock per call); run: build/bench/bench_grammar [documents].
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "text/grammar/automaton.h"
#include "text/grammar/grammar.h"
#include "text/grammar/mask.h"
#include "util/json.h"

using namespace nemotron;
using namespace nemotron::text::grammar;
using Clock = std::chrono::steady_clock;

namespace {

double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

// Longest-match tokenization with the vocabulary's trie.
std::vector<int32_t> tokenize(const Vocabulary& v, const std::string& text) {
  std::vector<int32_t> ids;
  const auto& nodes = v.nodes();
  const auto& toks = v.node_tokens();
  std::size_t i = 0;
  while (i < text.size()) {
    uint32_t n = 0;
    int32_t best = -1;
    std::size_t best_len = 0;
    for (std::size_t k = i; k < text.size(); ++k) {
      const auto b = static_cast<uint8_t>(text[k]);
      const auto& nd = nodes[n];
      uint32_t next = UINT32_MAX;
      for (uint32_t c = nd.first_child; c < nd.first_child + nd.num_children; ++c)
        if (nodes[c].byte == b) next = c;
      if (next == UINT32_MAX) break;
      n = next;
      if (nodes[n].tok_end > nodes[n].tok_begin) {
        best = toks[nodes[n].tok_begin];
        best_len = k - i + 1;
      }
    }
    if (best < 0) {
      std::fprintf(stderr, "no token for byte %d\n", static_cast<uint8_t>(text[i]));
      std::exit(1);
    }
    ids.push_back(best);
    i += best_len;
  }
  return ids;
}

const char* kWords[] = {"alpha", "bravo", "city", "delta", "echo", "forest", "garden", "harbor", "island", "jungle",
                        "Zoë", "München", "東京", "data", "value", "river", "stone", "north", "south", "light"};

// A record as a model would write it (pretty-printed or compact), valid for kSchema.
std::string record(std::mt19937& rng, bool pretty) {
  auto word = [&] { return std::string(kWords[rng() % std::size(kWords)]); };
  Json r;
  r["id"] = rng() % 100000;
  r["name"] = word() + " " + word();
  r["email"] = std::string(kWords[rng() % 10]) + "." + std::to_string(rng() % 100) + "@example.com";  // ASCII
  Json tags = Json::array();
  for (unsigned i = 0, n = rng() % 5; i < n; ++i) tags.push_back(word());
  r["tags"] = tags;
  r["address"] = Json{{"city", word() + " " + word()}, {"zip", std::to_string(10000 + rng() % 89999)}};
  r["score"] = static_cast<double>(rng() % 10000) / 100.0;
  r["active"] = (rng() % 2) == 0;
  r["notes"] = "The " + word() + " of " + word() + " is " + word() + ", said the " + word() + ".";
  return pretty ? r.dump(2) : r.dump();
}

const char* kSchema = R"({
  "type": "object",
  "properties": {
    "id": {"type": "integer", "minimum": 0},
    "name": {"type": "string"},
    "email": {"type": "string", "format": "email"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
    "address": {"type": "object", "properties": {"city": {"type": "string"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["city", "zip"]},
    "score": {"type": "number"},
    "active": {"type": "boolean"},
    "notes": {"type": "string"}
  },
  "required": ["id", "name", "email", "tags", "address", "score", "active"]
})";

struct Stats {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  double pct(double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
  }
  void print(const char* what) {
    const double p50 = pct(0.5), p99 = pct(0.99), mx = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
    std::printf("  %-44s %8zu tokens   p50 %8.2f us   p99 %8.2f us   max %9.2f us\n", what, v.size(), p50, p99, mx);
  }
};

// Feeds documents token by token through fresh matchers of g; times fill_mask and accept.
void run_docs(const std::shared_ptr<const Grammar>& g, const std::shared_ptr<const Vocabulary>& v,
              const std::vector<std::vector<int32_t>>& docs, Stats& mask, Stats& accept) {
  std::vector<uint32_t> bits(v->mask_words());
  for (const auto& doc : docs) {
    Matcher m(g, v, {0});
    for (int32_t t : doc) {
      auto t0 = Clock::now();
      m.fill_mask(bits.data());
      mask.add(us_since(t0));
      if (!((bits[static_cast<std::size_t>(t) >> 5] >> (t & 31)) & 1)) {
        std::fprintf(stderr, "token %d not allowed by the mask\n", t);
        std::exit(1);
      }
      t0 = Clock::now();
      const bool ok = m.accept(t);
      accept.add(us_since(t0));
      if (!ok) std::exit(1);
    }
    if (!m.can_end()) {
      std::fprintf(stderr, "document incomplete\n");
      std::exit(1);
    }
  }
}

void scenario(const char* name, const std::shared_ptr<const Grammar>& (*make)(), const std::shared_ptr<const Vocabulary>& v,
              int docs) {
  std::mt19937 rng(42);
  std::vector<std::vector<int32_t>> warmup, measured;
  for (int i = 0; i < docs; ++i) warmup.push_back(tokenize(*v, record(rng, i % 2 == 0)));
  for (int i = 0; i < docs; ++i) measured.push_back(tokenize(*v, record(rng, i % 2 == 0)));
  std::printf("%s\n", name);
  {
    Stats mask, acc;
    std::vector<std::vector<int32_t>> first(measured.begin(), measured.begin() + 1);
    run_docs(make(), v, first, mask, acc);
    mask.print("fill_mask, cold grammar (first document)");
  }
  auto g = make();
  {
    Stats mask, acc;
    run_docs(g, v, warmup, mask, acc);
    mask.print("fill_mask, cold grammar (all warm-up docs)");
  }
  Stats mask, acc;
  run_docs(g, v, measured, mask, acc);
  mask.print("fill_mask, warm (new documents)");
  acc.print("accept, warm");
  auto a = automaton_of(*g);
  const MaskCache& mc = a->masks(v);
  std::printf("  automaton states %zu, mask cache hits %llu misses %llu (all runs)\n", a->num_states(),
              static_cast<unsigned long long>(mc.hits()), static_cast<unsigned long long>(mc.misses()));
  // Uncached: the walk alone at every distinct state of the measured documents.
  std::set<int32_t> states;
  for (const auto& doc : measured) {
    int32_t s;
    {
      std::lock_guard<std::mutex> lock(a->mutex);
      s = a->initial();
    }
    states.insert(s);
    for (int32_t t : doc) {
      std::lock_guard<std::mutex> lock(a->mutex);
      for (char c : v->token_bytes(t)) s = a->next(s, static_cast<unsigned char>(c));
      states.insert(s);
    }
  }
  std::vector<uint32_t> bits(v->mask_words());
  Stats walk;
  for (int32_t s : states) {
    std::lock_guard<std::mutex> lock(a->mutex);
    auto t0 = Clock::now();
    compute_mask(*a, *v, s, bits.data());
    walk.add(us_since(t0));
  }
  walk.print("uncached mask walk per distinct state");
  // First visit on a cold automaton (transitions computed during the walk).
  Stats cold;
  for (int32_t s : states) {
    auto fresh = std::make_shared<Automaton>(*g);
    std::lock_guard<std::mutex> lock(fresh->mutex);
    const int32_t fs = fresh->intern(a->key(s));
    auto t0 = Clock::now();
    compute_mask(*fresh, *v, fs, bits.data());
    cold.add(us_since(t0));
  }
  cold.print("first visit, cold automaton, per state");
}

const std::shared_ptr<const Grammar>& make_object() {
  static std::shared_ptr<const Grammar> g;
  g = json_object();
  return g;
}
const std::shared_ptr<const Grammar>& make_schema() {
  static std::shared_ptr<const Grammar> g;
  g = from_json_schema(parse_json(kSchema, "bench schema"));
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  const int docs = argc > 1 ? std::atoi(argv[1]) : 20;
  auto t0 = Clock::now();
  auto v = Vocabulary::synthetic(131072, 1);
  std::printf("vocabulary: %lld tokens, %zu trie nodes, built in %.1f ms\n", static_cast<long long>(v->size()),
              v->nodes().size(), us_since(t0) / 1000);
  t0 = Clock::now();
  auto g = make_schema();
  std::printf("schema compiled in %.2f ms (%zu rules)\n", us_since(t0) / 1000, g->num_rules());
  scenario("json_object", make_object, v, docs);
  scenario("nested schema", make_schema, v, docs);
  // A bounded string: every character is a new state (a count-down), so nothing recurs.
  for (const char* sch : {R"({"type":"string","maxLength":200})", R"({"type":"string"})"}) {
    auto gs = from_json_schema(parse_json(sch, "bench schema"));
    auto a = automaton_of(*gs);
    std::vector<uint32_t> bits(v->mask_words());
    Stats first;
    std::lock_guard<std::mutex> lock(a->mutex);
    int32_t s = a->next(a->initial(), '"');
    for (int k = 0; k < 100; ++k) {
      const auto t1 = Clock::now();
      compute_mask(*a, *v, s, bits.data());
      first.add(us_since(t1));
      s = a->next(s, 'a');
    }
    std::printf("%s\n", sch);
    first.print("first visit per state, 100 characters");
  }
  return 0;
}
