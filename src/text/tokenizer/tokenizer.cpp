#include "text/tokenizer/tokenizer.h"

#include <filesystem>

#include "text/tokenizer/tokenizer_impl.h"
#include "text/tokenizer/tokenizer_json.h"
#include "text/utf8.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::text {
namespace {

std::vector<AddedToken> parse_added_tokens(const TokJson& root) {
  std::vector<AddedToken> out;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return out;
  if (!it->is_array()) throw SpecError("added_tokens", "expected an array");
  for (std::size_t i = 0; i < it->size(); ++i) {
    const TokJson& t = (*it)[i];
    const std::string path = json_index("added_tokens", i);
    if (!t.is_object()) throw SpecError(path, "expected an object");
    AddedToken a;
    auto id = t.find("id");
    if (id == t.end() || id->is_null()) throw SpecError(json_child(path, "id"), "missing");
    a.id = json_token_id(*id, json_child(path, "id"));
    a.content = json_string(t, "content", path, "", true);
    if (a.content.empty()) throw SpecError(json_child(path, "content"), "empty");
    if (!utf8_valid(a.content)) throw SpecError(json_child(path, "content"), "not valid UTF-8");
    a.special = json_bool(t, "special", path, false);
    a.single_word = json_bool(t, "single_word", path, false);
    a.lstrip = json_bool(t, "lstrip", path, false);
    a.rstrip = json_bool(t, "rstrip", path, false);
    a.normalized = json_bool(t, "normalized", path, !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

const TokJson& member_or_null(const TokJson& root, const char* key) {
  static const TokJson null_json;
  auto it = root.find(key);
  return it == root.end() ? null_json : *it;
}

std::shared_ptr<TokenizerImpl> build(const TokJson& root) {
  if (!root.is_object()) throw SpecError("(root)", "expected an object");
  auto impl = std::make_shared<TokenizerImpl>();
  auto mit = root.find("model");
  if (mit == root.end() || !mit->is_object()) throw SpecError("model", "missing or not an object");
  impl->model = std::make_unique<BpeModel>(*mit, "model");
  impl->normalizer = make_normalizer(member_or_null(root, "normalizer"), "normalizer");
  impl->pre_tokenizer = make_pre_tokenizer(member_or_null(root, "pre_tokenizer"), "pre_tokenizer");
  impl->post_processor = make_post_processor(member_or_null(root, "post_processor"), "post_processor");
  impl->decoder = make_decoder(member_or_null(root, "decoder"), "decoder");
  std::vector<AddedToken> added = parse_added_tokens(root);
  int32_t max_id = impl->model->max_id();
  for (const AddedToken& a : added) max_id = std::max(max_id, a.id);
  impl->vocab_size = max_id + 1;
  const Normalizer* norm = impl->normalizer.get();
  impl->added.build(std::move(added), [norm](const std::string& s) {
    std::string t = s;
    if (norm) norm->normalize(t);
    return t;
  });
  return impl;
}

}  // namespace

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& source) {
  TokJson root;
  try {
    root = TokJson::parse(json_text);
  } catch (const TokJson::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
  Tokenizer t;
  try {
    t.impl_ = build(root);
  } catch (const SpecError& e) {
    throw Error(source + ": " + e.path() + ": " + e.what());
  } catch (const TokJson::exception& e) {
    throw Error(source + ": " + e.what());
  }
  return t;
}

Tokenizer Tokenizer::load(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool is_dir = fs::is_directory(dir_or_file, ec);
  const std::string file = is_dir ? (fs::path(dir_or_file) / "tokenizer.json").string() : dir_or_file;
  Tokenizer t = from_json(read_file(file), file);
  auto impl = std::const_pointer_cast<TokenizerImpl>(t.impl_);
  load_tokenizer_config(fs::path(file).parent_path().string(), *impl);
  return t;
}

const TokenizerImpl& Tokenizer::impl() const {
  if (!impl_) throw Error("tokenizer used before Tokenizer::load");
  return *impl_;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens, bool parse_special) const {
  const TokenizerImpl& m = impl();
  std::vector<Segment> segs;
  if (!text.empty()) {
    segs.push_back({utf8_valid(text) ? std::string(text) : utf8_sanitize(text), -1, true});
  }
  m.added.split_raw(segs, !parse_special);
  if (m.normalizer)
    for (Segment& s : segs)
      if (s.id < 0) m.normalizer->normalize(s.text);
  m.added.split_normalized(segs, !parse_special);

  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Piece> pieces;
  for (Segment& s : segs) {
    if (s.id >= 0) { ids.push_back(s.id); continue; }
    if (s.text.empty()) continue;
    pieces.clear();
    pieces.push_back({std::move(s.text), s.at_start});
    if (m.pre_tokenizer) m.pre_tokenizer->split(pieces);
    for (const Piece& p : pieces) m.model->tokenize(p.text, ids);
  }
  if (add_special_tokens && m.post_processor) m.post_processor->process(ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const TokenizerImpl& m = impl();
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const AddedToken* a = m.added.find(id)) {
      if (skip_special_tokens && a->special) continue;
      tokens.push_back(a->display);
    } else if (const std::string* s = m.model->id_to_token(id)) {
      // A model token whose text is also a special added token counts as special (HF checks
      // by content).
      if (skip_special_tokens) {
        const int32_t aid = m.added.find(*s);
        if (aid >= 0 && m.added.find(aid)->special) continue;
      }
      tokens.push_back(*s);
    }
    // Unknown ids are dropped, as HF does.
  }
  if (!m.decoder) {
    std::string out;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  m.decoder->decode_chain(tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  const TokenizerImpl& m = impl();
  if (const AddedToken* a = m.added.find(id)) return a->display;
  const std::string* s = m.model->id_to_token(id);
  if (!s) return std::string();
  std::string t = *s;
  if (m.decoder) m.decoder->raw_token(t);
  return t;
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  const int32_t a = impl().added.find(token);
  return a >= 0 ? a : impl().model->token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* a = impl().added.find(id)) return a->display;
  const std::string* s = impl().model->id_to_token(id);
  return s ? *s : std::string();
}

int32_t Tokenizer::vocab_size() const { return impl().vocab_size; }

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* a = impl().added.find(id);
  return a && a->special;
}

const std::string& Tokenizer::chat_template() const { return impl().chat_template; }
const std::string& Tokenizer::bos_token() const { return impl().bos_token; }
const std::string& Tokenizer::eos_token() const { return impl().eos_token; }
const std::string& Tokenizer::pad_token() const { return impl().pad_token; }

}  // namespace nemotron::text
