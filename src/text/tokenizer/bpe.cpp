#include "text/tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "text/tokenizer/tokenizer_json.h"
#include "text/utf8.h"

namespace nemotron::text {
namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
  int32_t id;
  int32_t prev, next;  // indices, -1 at the ends
  bool alive;
};

struct Candidate {
  int32_t rank, pos, new_id;
  // priority_queue pops the "largest": make that the lowest rank, then the lowest position.
  bool operator<(const Candidate& o) const {
    if (rank != o.rank) return rank > o.rank;
    return pos > o.pos;
  }
};

}  // namespace

BpeModel::BpeModel(const TokJson& j, const std::string& path) {
  const std::string type = json_string(j, "type", path, "BPE");
  if (type != "BPE") throw SpecError(json_child(path, "type"), "unsupported model type \"" + type + "\" (only BPE)");
  if (j.contains("dropout") && !j["dropout"].is_null() && j["dropout"].is_number() && j["dropout"].get<double>() > 0)
    throw SpecError(json_child(path, "dropout"), "BPE dropout is not supported");
  auto vit = j.find("vocab");
  if (vit == j.end() || !vit->is_object()) throw SpecError(json_child(path, "vocab"), "missing or not an object");
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    const int32_t id = json_token_id(it.value(), json_child(path, "vocab") + "[\"" + it.key() + "\"]");
    vocab_[it.key()] = id;
    max_id_ = std::max(max_id_, id);
  }
  vocab_r_.assign(static_cast<std::size_t>(max_id_ + 1), nullptr);
  for (const auto& [tok, id] : vocab_) vocab_r_[static_cast<std::size_t>(id)] = &tok;

  unk_token_ = json_string(j, "unk_token", path);
  if (!unk_token_.empty()) unk_id_ = lookup(unk_token_);
  fuse_unk_ = json_bool(j, "fuse_unk", path, false);
  byte_fallback_ = json_bool(j, "byte_fallback", path, false);
  ignore_merges_ = json_bool(j, "ignore_merges", path, false);
  prefix_ = json_string(j, "continuing_subword_prefix", path);
  suffix_ = json_string(j, "end_of_word_suffix", path);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = lookup(name);
  }

  const std::string mpath = json_child(path, "merges");
  const TokJson& merges = json_array(j, "merges", path);
  merges_.reserve(merges.size() * 2);
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const TokJson& m = merges[r];
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const std::size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw SpecError(json_index(mpath, r), "merge \"" + s + "\" is not two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      throw SpecError(json_index(mpath, r), "expected \"a b\" or [\"a\", \"b\"]");
    }
    const int32_t ia = lookup(a), ib = lookup(b);
    if (ia < 0 || ib < 0)
      throw SpecError(json_index(mpath, r), "merge part \"" + (ia < 0 ? a : b) + "\" is not in the vocab");
    // With a continuing-subword prefix the right part carries it; the merged token does not
    // repeat it (HF: a + b[prefix_len..]).
    std::string merged = a;
    if (!prefix_.empty() && b.compare(0, prefix_.size(), prefix_) == 0) merged += b.substr(prefix_.size());
    else merged += b;
    const int32_t im = lookup(merged);
    if (im < 0) throw SpecError(json_index(mpath, r), "merged token \"" + merged + "\" is not in the vocab");
    merges_.insert_or_assign(pair_key(ia, ib), std::make_pair(static_cast<int32_t>(r), im));  // HF: last wins
  }
}

int32_t BpeModel::lookup(const std::string& s) const {
  auto it = vocab_.find(s);
  return it == vocab_.end() ? -1 : it->second;
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || id > max_id_) return nullptr;
  return vocab_r_[static_cast<std::size_t>(id)];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) { out.push_back(it->second); return; }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t before = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::vector<int32_t> ids(out.begin() + static_cast<long>(before), out.end());
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(syms.size());
    if (n > 0) syms.back().next = n;
    syms.push_back({id, n - 1, -1, true});
  };
  int32_t pending_unk = -1;  // unk id waiting to be added (fuse_unk merges runs)
  std::string s;
  for (std::size_t i = 0; i < word.size();) {
    std::size_t len;
    if (utf8_decode(word, i, len) < 0) len = 1;
    s.assign(word.substr(i, len));
    if (i > 0 && !prefix_.empty()) s.insert(0, prefix_);
    if (i + len == word.size() && !suffix_.empty()) s += suffix_;
    i += len;
    if (auto it = vocab_.find(s); it != vocab_.end()) {
      if (pending_unk >= 0) { add(pending_unk); pending_unk = -1; }
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
      if (all) {
        for (unsigned char c : s) add(byte_ids_[c]);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = unk_id_;
    }
    // No unk token: the character is dropped, as HF does.
  }
  if (pending_unk >= 0) add(pending_unk);

  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t pos) {
    const Symbol& a = syms[static_cast<std::size_t>(pos)];
    if (a.next < 0) return;
    auto it = merges_.find(pair_key(a.id, syms[static_cast<std::size_t>(a.next)].id));
    if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (std::size_t k = 0; k + 1 < syms.size(); ++k) consider(static_cast<int32_t>(k));
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& a = syms[static_cast<std::size_t>(top.pos)];
    if (!a.alive || a.next < 0) continue;
    Symbol& b = syms[static_cast<std::size_t>(a.next)];
    auto it = merges_.find(pair_key(a.id, b.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    a.id = top.new_id;
    b.alive = false;
    a.next = b.next;
    if (b.next >= 0) syms[static_cast<std::size_t>(b.next)].prev = top.pos;
    if (a.prev >= 0) consider(a.prev);
    consider(top.pos);
  }
  for (const Symbol& sym : syms)
    if (sym.alive) out.push_back(sym.id);
}

}  // namespace nemotron::text
