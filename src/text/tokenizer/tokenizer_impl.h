#pragma once
// Internal state of a Tokenizer (shared, immutable after loading).
#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer/added_tokens.h"
#include "text/tokenizer/bpe.h"
#include "text/tokenizer/decoder.h"
#include "text/tokenizer/normalizer.h"
#include "text/tokenizer/pre_tokenizer.h"
#include "text/tokenizer/tokenizer_json.h"

namespace nemotron::text {

// HF post_processor: TemplateProcessing (single sequence), ByteLevel (ids untouched),
// RobertaProcessing / BertProcessing (cls + ids + sep), Sequence.
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(std::vector<int32_t>& ids) const = 0;
};
std::unique_ptr<PostProcessor> make_post_processor(const TokJson& j, const std::string& path);

struct TokenizerImpl {
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  AddedVocabulary added;
  int32_t vocab_size = 0;

  std::string chat_template, bos_token, eos_token, pad_token;
};

// Reads tokenizer_config.json / special_tokens_map.json / chat_template.jinja from `dir`
// when present (tokenizer_config.cpp).
void load_tokenizer_config(const std::string& dir, TokenizerImpl& impl);

}  // namespace nemotron::text
