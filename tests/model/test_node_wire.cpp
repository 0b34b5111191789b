// The leader's call messages (model/nodes/node_wire.h): a step's chunks (ids, sampling
// params with and without a seed, masks of the sampled rows, logits modes, kept states) and
// draft inputs come back as they were sent; a message cut short or holding a count beyond its
// bytes is an Error, never a read out of bounds.
#include <gtest/gtest.h>

#include "model/nodes/node_wire.h"
#include "util/error.h"

using namespace nemotron;
using namespace nemotron::model;
using namespace nemotron::model::nodes;

namespace {

constexpr int64_t kVocab = 70;  // 3 mask words per row

TEST(NodeWire, ChunksComeBackAsSent) {
  const std::vector<int32_t> ids0 = {5, 6, 7, 8}, ids1 = {9};
  SamplingParams p{.temperature = 0.7f, .top_p = 0.9f, .top_k = 5, .min_p = 0.1f, .presence_penalty = 0.5f,
                   .frequency_penalty = -0.25f, .repetition_penalty = 1.1f, .seed = 42, .logprobs = 3};
  const std::vector<uint32_t> mask = {1, 2, 3, 4, 5, 6};  // 2 sampled rows x 3 words
  std::vector<StepChunk> chunks = {
      {.slot = 3, .ids = ids0.data(), .T = 4, .sampling = &p, .sample = true, .sample_rows = 2, .seed = 11,
       .draw = 12, .logits = LogitsOut::All, .keep_states = true, .allowed = mask.data()},
      {.slot = 1, .ids = ids1.data(), .T = 1, .logits = LogitsOut::Last},
  };
  ByteWriter w;
  encode_chunks(w, chunks, kVocab);
  ByteReader r(w.bytes());
  const DecodedChunks d = decode_chunks(r, kVocab);
  EXPECT_TRUE(r.done());
  ASSERT_EQ(d.chunks.size(), 2u);
  const StepChunk& a = d.chunks[0];
  EXPECT_EQ(a.slot, 3);
  EXPECT_EQ(std::vector<int32_t>(a.ids, a.ids + a.T), ids0);
  ASSERT_NE(a.sampling, nullptr);
  EXPECT_EQ(a.sampling->temperature, 0.7f);
  EXPECT_EQ(a.sampling->top_k, 5);
  EXPECT_EQ(a.sampling->frequency_penalty, -0.25f);
  EXPECT_EQ(a.sampling->repetition_penalty, 1.1f);
  EXPECT_EQ(a.sampling->seed, std::optional<uint64_t>(42));
  EXPECT_EQ(a.sampling->logprobs, 3);
  EXPECT_TRUE(a.sample);
  EXPECT_EQ(a.sample_rows, 2);
  EXPECT_EQ(a.seed, 11u);
  EXPECT_EQ(a.draw, 12u);
  EXPECT_EQ(a.logits, LogitsOut::All);
  EXPECT_TRUE(a.keep_states);
  ASSERT_NE(a.allowed, nullptr);
  EXPECT_EQ(std::vector<uint32_t>(a.allowed, a.allowed + 6), mask);
  const StepChunk& b = d.chunks[1];
  EXPECT_EQ(b.slot, 1);
  EXPECT_EQ(b.T, 1);
  EXPECT_EQ(b.ids[0], 9);
  EXPECT_EQ(b.sampling, nullptr);
  EXPECT_FALSE(b.sample);
  EXPECT_FALSE(b.keep_states);
  EXPECT_EQ(b.allowed, nullptr);
  EXPECT_EQ(b.logits, LogitsOut::Last);

  p.seed.reset();  // no seed stays no seed
  ByteWriter w2;
  encode_chunks(w2, {chunks[0]}, kVocab);
  ByteReader r2(w2.bytes());
  EXPECT_FALSE(decode_chunks(r2, kVocab).chunks[0].sampling->seed.has_value());
}

TEST(NodeWire, DraftInputsComeBackAsSent) {
  const int64_t H = 3;
  const std::vector<int32_t> ids = {4, 5};
  const std::vector<float> hidden = {1, 2, 3, 4, 5, 6};
  ByteWriter w;
  encode_drafts(w, {{.slot = 2, .next_ids = ids.data(), .hidden = hidden.data(), .T = 2}}, H);
  ByteReader r(w.bytes());
  const DecodedDrafts d = decode_drafts(r, H);
  ASSERT_EQ(d.inputs.size(), 1u);
  EXPECT_EQ(d.inputs[0].slot, 2);
  EXPECT_EQ(d.inputs[0].T, 2);
  EXPECT_EQ(std::vector<int32_t>(d.inputs[0].next_ids, d.inputs[0].next_ids + 2), ids);
  EXPECT_EQ(std::vector<float>(d.inputs[0].hidden, d.inputs[0].hidden + 6), hidden);
  // Hidden rows of another width: an Error.
  ByteReader r2(w.bytes());
  EXPECT_THROW(decode_drafts(r2, H + 1), Error);
}

TEST(NodeWire, ShortOrOverlongMessagesAreErrors) {
  const std::vector<int32_t> ids = {1, 2, 3};
  ByteWriter w;
  encode_chunks(w, {{.slot = 0, .ids = ids.data(), .T = 3}}, kVocab);
  for (std::size_t n = 0; n < w.bytes().size(); ++n) {
    const std::vector<uint8_t> cut(w.bytes().begin(), w.bytes().begin() + static_cast<std::ptrdiff_t>(n));
    ByteReader r(cut);
    EXPECT_THROW(decode_chunks(r, kVocab), Error) << n << " bytes";
  }
  ByteWriter huge;
  huge.pod(int64_t{1});         // one chunk
  huge.pod(int32_t{0});         // slot
  huge.pod(int64_t{1} << 40);   // ids: far more than the message holds
  ByteReader r(huge.bytes());
  EXPECT_THROW(decode_chunks(r, kVocab), Error);
}

}  // namespace
