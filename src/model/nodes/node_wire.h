#pragma once
// The messages node 0 (the leader) sends its followers (node_backend.h): one message per
// Backend call, a Call byte then the call's arguments, little-endian as in memory (every node
// is the same architecture and build: the hello compares them). ByteWriter / ByteReader build
// and read them; a reader past the end, or a count beyond what the message can hold, is an
// Error (a corrupt or foreign message never reads out of bounds).
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <type_traits>
#include <vector>

#include "model/backend.h"
#include "util/error.h"

namespace nemotron::model::nodes {

enum class Call : uint8_t {
  Hello = 1,       // leader -> follower: the run's identity and BackendOptions (node_backend.cpp)
  Bye,             // the leader's backend is gone: the follower returns
  Acquire,         // int32 slot the leader got (the follower's must be the same)
  Release,         // int32 slot
  Step,            // chunks (encode_chunks): begin_step + finish_step
  MtpForward,      // int32 slot, bool all_logits, one draft input
  MtpDraft,        // int32 K, draft inputs
  MtpFeed,         // draft inputs
  RollBack,        // int32 slot, int64 pos
  MtpRollBack,     // int32 slot, int64 pos
  SaveSnapshot,    // int32 slot, uint64 id
  LoadSnapshot,    // uint64 id, int32 slot
  DropSnapshot,    // uint64 id
  ExportSnapshot,  // uint64 id; the follower answers with a Reply holding its bytes
  ImportSnapshot,  // uint64 id, bytes; the follower answers with a Reply
  ObservePrompt,   // int32 slot, ids
  RecordRouting,   // bool on
};

class ByteWriter {
 public:
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    raw(&v, sizeof v);
  }
  void raw(const void* p, std::size_t n) {
    if (n == 0) return;
    const std::size_t at = bytes_.size();
    bytes_.resize(at + n);
    std::memcpy(bytes_.data() + at, p, n);
  }
  template <class T>
  void array(const T* p, int64_t n) {  // int64 count, then the elements
    pod(n);
    if (n > 0) raw(p, static_cast<std::size_t>(n) * sizeof(T));
  }
  void text(const std::string& s) { array(s.data(), static_cast<int64_t>(s.size())); }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(const std::vector<uint8_t>& bytes) : b_(bytes) {}
  template <class T>
  T pod() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    raw(&v, sizeof v);
    return v;
  }
  void raw(void* p, std::size_t n) {
    if (n > b_.size() - at_) throw Error("node message ends early (" + std::to_string(b_.size()) + " bytes)");
    std::memcpy(p, b_.data() + at_, n);
    at_ += n;
  }
  template <class T>
  std::vector<T> array() {
    const auto n = pod<int64_t>();
    if (n < 0 || static_cast<uint64_t>(n) > (b_.size() - at_) / sizeof(T))
      throw Error("node message: a count of " + std::to_string(n) + " beyond its " + std::to_string(b_.size()) +
                  " bytes");
    std::vector<T> v(static_cast<std::size_t>(n));
    if (n > 0) raw(v.data(), v.size() * sizeof(T));
    return v;
  }
  std::string text() {
    const std::vector<char> c = array<char>();
    return {c.begin(), c.end()};
  }
  bool done() const { return at_ == b_.size(); }

 private:
  const std::vector<uint8_t>& b_;
  std::size_t at_ = 0;
};

// A step's chunks as the follower rebuilds them: the chunks point into the owned ids,
// sampling params and masks (deques: the addresses stay put as they grow).
struct DecodedChunks {
  std::vector<StepChunk> chunks;
  std::deque<std::vector<int32_t>> ids;
  std::deque<SamplingParams> params;
  std::deque<std::vector<uint32_t>> allowed;
};
void encode_chunks(ByteWriter& w, const std::vector<StepChunk>& chunks, int64_t vocab_size);
DecodedChunks decode_chunks(ByteReader& r, int64_t vocab_size);

// Draft inputs (Backend::DraftInput) with their ids and hidden rows ([T, hidden] fp32).
struct DecodedDrafts {
  std::vector<Backend::DraftInput> inputs;
  std::deque<std::vector<int32_t>> ids;
  std::deque<std::vector<float>> hidden;
};
void encode_drafts(ByteWriter& w, const std::vector<Backend::DraftInput>& inputs, int64_t hidden_size);
DecodedDrafts decode_drafts(ByteReader& r, int64_t hidden_size);

}  // namespace nemotron::model::nodes
