#pragma once
// HF `models.BPE`: vocab + ranked merges, byte_fallback (<0xXX> tokens), unk_token with
// fuse_unk, ignore_merges, continuing_subword_prefix, end_of_word_suffix. Merging follows HF's
// word.rs: repeatedly apply the lowest-rank merge (leftmost on ties) via a priority queue,
// O(n log n) per word. Results for words up to kMaxCachedWordBytes are cached.
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/tokenizer/tokenizer_json.h"

namespace nemotron::text {

class BpeModel {
 public:
  // `j` is the tokenizer.json "model" object; throws SpecError naming `path`.
  BpeModel(const TokJson& j, const std::string& path);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  const std::string* id_to_token(int32_t id) const;   // nullptr when absent
  int32_t max_id() const { return max_id_; }

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  int32_t lookup(const std::string& s) const;

  struct StrHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>> vocab_;
  std::vector<const std::string*> vocab_r_;  // id -> token (nullptr for holes)
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  int32_t max_id_ = -1;
  std::string unk_token_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string prefix_, suffix_;
  int32_t byte_ids_[256];  // id of "<0xXX>" or -1

  static constexpr std::size_t kMaxCachedWordBytes = 256;
  static constexpr std::size_t kMaxCacheEntries = 1 << 17;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StrHash, std::equal_to<>> cache_;
};

}  // namespace nemotron::text
