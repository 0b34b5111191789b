#include "text/grammar/vocabulary.h"

#include <algorithm>
#include <unordered_set>

#include "text/tokenizer/tokenizer.h"
#include "text/utf8.h"
#include "util/error.h"

namespace nemotron::text::grammar {

namespace {
bool has_reserved_byte(const std::string& s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0xF8) return true;
  return false;
}
}  // namespace

std::string Vocabulary::special_token_bytes(int32_t id) {
  if (id < 0 || id >= (1 << 28)) throw Error("grammar: special token id " + std::to_string(id) + " out of range");
  std::string s(1, static_cast<char>(0xF8));
  for (int shift = 21; shift >= 0; shift -= 7) s += static_cast<char>(0x80 | ((id >> shift) & 0x7F));
  return s;
}

std::shared_ptr<const Vocabulary> Vocabulary::from_tokenizer(const Tokenizer& tok) {
  std::vector<std::string> bytes(static_cast<std::size_t>(tok.vocab_size()));
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    std::string& b = bytes[static_cast<std::size_t>(id)];
    if (tok.is_special(id)) {
      b = special_token_bytes(id);
    } else {
      b = tok.token_bytes(id);
      if (has_reserved_byte(b)) b.clear();  // never text; must not spell a reserved string
    }
  }
  return from_token_bytes(std::move(bytes));
}

std::shared_ptr<const Vocabulary> Vocabulary::from_token_bytes(std::vector<std::string> token_bytes) {
  if (token_bytes.size() > (1u << 30)) throw Error("grammar vocabulary: too many tokens");
  auto v = std::shared_ptr<Vocabulary>(new Vocabulary());
  v->bytes_ = std::move(token_bytes);
  v->build_trie();
  return v;
}

// Builds the trie from the token strings in sorted order (children are then created in byte
// order, linked as first-child / next-sibling), then lays it out breadth-first so that each
// node's children are contiguous.
void Vocabulary::build_trie() {
  constexpr uint32_t kNone = UINT32_MAX;
  std::vector<int32_t> ids;
  for (std::size_t id = 0; id < bytes_.size(); ++id)
    if (!bytes_[id].empty()) ids.push_back(static_cast<int32_t>(id));
  std::sort(ids.begin(), ids.end(), [&](int32_t x, int32_t y) {
    const std::string& a = bytes_[static_cast<std::size_t>(x)];
    const std::string& b = bytes_[static_cast<std::size_t>(y)];
    return a != b ? a < b : x < y;
  });
  struct Tmp {
    uint32_t first_child = UINT32_MAX, last_child = UINT32_MAX, next_sibling = UINT32_MAX;
    uint8_t byte = 0;
  };
  std::vector<Tmp> tmp(1);
  std::vector<uint32_t> token_node(bytes_.size(), kNone);
  std::vector<uint32_t> path{0};  // path[d]: the node at depth d of the previous token
  const std::string* prev = nullptr;
  for (int32_t id : ids) {
    const std::string& t = bytes_[static_cast<std::size_t>(id)];
    std::size_t lcp = 0;
    if (prev)
      while (lcp < t.size() && lcp < prev->size() && t[lcp] == (*prev)[lcp]) ++lcp;
    path.resize(lcp + 1);
    for (std::size_t k = lcp; k < t.size(); ++k) {
      const auto n = static_cast<uint32_t>(tmp.size());
      tmp.emplace_back();
      tmp.back().byte = static_cast<uint8_t>(t[k]);
      Tmp& parent = tmp[path.back()];
      if (parent.first_child == kNone) parent.first_child = n;
      else tmp[parent.last_child].next_sibling = n;
      parent.last_child = n;
      path.push_back(n);
    }
    token_node[static_cast<std::size_t>(id)] = path.back();
    prev = &t;
  }
  // Breadth-first order.
  std::vector<uint32_t> order{0}, index(tmp.size(), 0);
  for (std::size_t i = 0; i < order.size(); ++i)
    for (uint32_t c = tmp[order[i]].first_child; c != kNone; c = tmp[c].next_sibling) {
      index[c] = static_cast<uint32_t>(order.size());
      order.push_back(c);
    }
  nodes_.assign(tmp.size(), Node{});
  std::vector<uint32_t> count(tmp.size(), 0);
  for (uint32_t n : token_node)
    if (n != kNone) ++count[index[n]];
  uint32_t at = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const Tmp& t = tmp[order[i]];
    Node& nd = nodes_[i];
    nd.byte = t.byte;
    nd.first_child = t.first_child == kNone ? 0 : index[t.first_child];
    for (uint32_t c = t.first_child; c != kNone; c = tmp[c].next_sibling) ++nd.num_children;
    nd.tok_begin = nd.tok_end = at;
    at += count[i];
  }
  node_tokens_.assign(at, 0);
  for (std::size_t id = 0; id < token_node.size(); ++id)
    if (token_node[id] != kNone) {
      Node& nd = nodes_[index[token_node[id]]];
      node_tokens_[nd.tok_end++] = static_cast<int32_t>(id);
    }
  // Depth-first: the tokens below each node, contiguous, and the byte summaries.
  subtree_tokens_.clear();
  summaries_.clear();
  struct Frame {
    uint32_t node;
    uint32_t next_child;
  };
  std::vector<Frame> stack{{0, 0}};
  nodes_[0].desc_begin = 0;
  while (!stack.empty()) {
    Frame& f = stack.back();
    Node& nd = nodes_[f.node];
    if (f.next_child < nd.num_children) {
      const uint32_t c = nd.first_child + f.next_child++;
      Node& ch = nodes_[c];
      subtree_tokens_.insert(subtree_tokens_.end(), node_tokens_.begin() + ch.tok_begin, node_tokens_.begin() + ch.tok_end);
      ch.desc_begin = static_cast<uint32_t>(subtree_tokens_.size());
      stack.push_back({c, 0});
      continue;
    }
    nd.desc_end = static_cast<uint32_t>(subtree_tokens_.size());
    const uint32_t done = f.node;
    stack.pop_back();
    Node& d = nodes_[done];
    for (uint32_t c = d.first_child; c < d.first_child + d.num_children; ++c)
      d.height = static_cast<uint16_t>(std::max<uint32_t>(d.height, std::min<uint32_t>(65535u, nodes_[c].height + 1u)));
    if (d.desc_end - d.desc_begin >= kSummaryMin) {
      // Bytes below `done`: its children's bytes and their summaries (or, for small children,
      // a walk of their subtrees).
      std::array<uint64_t, 4> sum{};
      std::vector<uint32_t> todo;
      for (uint32_t c = d.first_child; c < d.first_child + d.num_children; ++c) todo.push_back(c);
      while (!todo.empty()) {
        const uint32_t c = todo.back();
        todo.pop_back();
        const Node& ch = nodes_[c];
        sum[ch.byte >> 6] |= uint64_t{1} << (ch.byte & 63);
        if (ch.summary >= 0) {
          for (int w = 0; w < 4; ++w) sum[static_cast<std::size_t>(w)] |= summaries_[static_cast<std::size_t>(ch.summary)][static_cast<std::size_t>(w)];
        } else {
          for (uint32_t g = ch.first_child; g < ch.first_child + ch.num_children; ++g) todo.push_back(g);
        }
      }
      d.summary = static_cast<int32_t>(summaries_.size());
      summaries_.push_back(sum);
    }
  }
}

// ---- synthetic ----------------------------------------------------------------------------

namespace {

struct Rng {
  uint64_t s;
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

std::string utf8(uint32_t cp) {
  std::string s;
  utf8_append(s, cp);
  return s;
}

}  // namespace

// Composition (about, at 131,072): 16 special ids, 256 bytes, ~2,000 punctuation runs (every
// pair of 40 JSON/code punctuation characters, common longer runs such as `":"`, `"},{"`),
// ~400 whitespace runs (spaces, tabs, newline + indentation), 2,000 numbers with and without a
// leading space, ~9,000 UTF-8 tokens (Latin-1/Greek/Cyrillic letters and short words, 5,000 CJK
// characters and 2-character words, emoji, and their partial prefixes), and English-like words
// from syllables (1 to 4) in the forms "word", " word", " Word", "Word", " WORD" for the rest.
std::shared_ptr<const Vocabulary> Vocabulary::synthetic(int64_t size, uint64_t seed) {
  if (size < 512) throw Error("Vocabulary::synthetic: size must be at least 512");
  Rng rng{seed};
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  const auto target = static_cast<std::size_t>(size);
  auto add = [&](const std::string& s) {
    if (out.size() >= target || s.empty() || !seen.insert(s).second) return;
    out.push_back(s);
  };
  for (int i = 0; i < 16; ++i) out.emplace_back();  // special tokens: no bytes
  for (int b = 0; b < 256; ++b) {
    if (b >= 0xF8) out.emplace_back();  // never text (from_tokenizer clears these too)
    else add(std::string(1, static_cast<char>(b)));
  }
  const std::string punct = "\"{}[]:,.;()<>=+-*/\\_'!?#$%&@^|~`\n\t 0123";
  for (char a : punct)
    for (char b : punct) add(std::string{a, b});
  for (const char* s : {"\":", "\":\"", "\",", "\",\"", "\"},", "\"}", "{\"", "[{\"", "\"]", "},{", "\":[", "\":{\"",
                        "\"}]", "\n}", "\\n", "\\\"", "\\\\", " \"", " {", " [", "}}", "]]", "null", "true", "false",
                        " null", " true", " false", "\": \"", "\", \"", "\": ", "\": {", "\": [", "}\n", "},\n",
                        "\",\n", "\n\"", "();", "()", "{\n", "};\n", "->", "::", "==", "!=", "<=", ">=", "&&", "||",
                        "\"\n", "\"},{\"", "\"}}", "\":\"\"", "\\u00", "...", "\"\"", "://", "www", ".com"})
    add(s);
  for (int n = 1; n <= 32; ++n) add(std::string(static_cast<std::size_t>(n), ' '));
  for (int n = 1; n <= 8; ++n) add(std::string(static_cast<std::size_t>(n), '\t'));
  for (int n = 0; n <= 32; ++n) add("\n" + std::string(static_cast<std::size_t>(n), ' '));
  for (int n = 1; n <= 4; ++n) add(std::string(static_cast<std::size_t>(n), '\n'));
  for (int i = 0; i < 1000; ++i) {
    add(std::to_string(i));
    add(" " + std::to_string(i));
  }
  // UTF-8: 2-byte letters and words, CJK characters and pairs, emoji, partial characters.
  std::vector<std::string> cyr;
  for (uint32_t cp = 0xC0; cp <= 0x24F; ++cp) add(utf8(cp));
  for (uint32_t cp = 0x391; cp <= 0x3C9; ++cp) add(utf8(cp));
  for (uint32_t cp = 0x410; cp <= 0x44F; ++cp) cyr.push_back(utf8(cp)), add(utf8(cp));
  for (int i = 0; i < 1500; ++i) {
    std::string w = (i % 2) ? " " : "";
    for (std::size_t k = 0, n = 2 + rng.below(5); k < n; ++k) w += cyr[rng.below(cyr.size())];
    add(w);
  }
  for (uint32_t cp = 0x4E00; cp < 0x4E00 + 5000; ++cp) add(utf8(cp));
  for (int i = 0; i < 1500; ++i) add(utf8(0x4E00 + static_cast<uint32_t>(rng.below(3000))) + utf8(0x4E00 + static_cast<uint32_t>(rng.below(3000))));
  for (uint32_t cp = 0x1F600; cp < 0x1F650; ++cp) {
    const std::string e = utf8(cp);
    add(e);
    add(e.substr(0, 3));
    add(e.substr(0, 2));
  }
  for (uint32_t cp = 0x4E00; cp < 0x4E00 + 3000; cp += 7) add(utf8(cp).substr(0, 2));
  for (uint32_t cp = 0x4E00; cp < 0x4E00 + 3000; cp += 11) add(utf8(cp).substr(1));
  // English-like words.
  static const char* onsets[] = {"", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v",
                                 "w", "z", "th", "st", "str", "pr", "tr", "ch", "sh", "cl", "gr", "br", "pl", "sp", "qu"};
  static const char* vowels[] = {"a", "e", "i", "o", "u", "ea", "ou", "io", "ai", "y", "ee", "oo"};
  static const char* codas[] = {"", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rd", "x", "nt", "ss"};
  auto syllable = [&] {
    return std::string(onsets[rng.below(std::size(onsets))]) + vowels[rng.below(std::size(vowels))] +
           codas[rng.below(std::size(codas))];
  };
  for (int guard = 0; out.size() < target && guard < 50 * size; ++guard) {
    std::string w;
    const std::size_t r = rng.below(100);
    const std::size_t syl = r < 35 ? 1 : r < 75 ? 2 : r < 93 ? 3 : 4;
    for (std::size_t k = 0; k < syl; ++k) w += syllable();
    const std::size_t form = rng.below(100);
    if (form < 45) add(" " + w);
    else if (form < 70) add(w);
    else if (form < 85) add(" " + std::string(1, static_cast<char>(w[0] - 'a' + 'A')) + w.substr(1));
    else if (form < 95) add(std::string(1, static_cast<char>(w[0] - 'a' + 'A')) + w.substr(1));
    else {
      std::string u = " " + w;
      for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      add(u);
    }
  }
  while (out.size() < target) out.emplace_back();  // (not reached in practice)
  return from_token_bytes(std::move(out));
}

}  // namespace nemotron::text::grammar
