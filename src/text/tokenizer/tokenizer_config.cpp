// tokenizer_config.json / special_tokens_map.json / chat_template.jinja next to
// tokenizer.json. Token fields are strings or AddedToken objects {"content": ...};
// chat_template is a string or a list of {"name", "template"} (the "default" one is used).
#include <filesystem>

#include "text/tokenizer/tokenizer_impl.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::text {
namespace {

std::string token_field(const Json& j, const char* key, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  throw Error(file + ": " + key + ": expected a string or {\"content\": ...}");
}

}  // namespace

void load_tokenizer_config(const std::string& dir, TokenizerImpl& impl) {
  namespace fs = std::filesystem;
  const fs::path base = dir.empty() ? fs::path(".") : fs::path(dir);
  std::error_code ec;
  const std::string map_file = (base / "special_tokens_map.json").string();
  if (fs::exists(map_file, ec)) {
    const Json j = read_json_file(map_file);
    if (!j.is_object()) throw Error(map_file + ": expected an object");
    impl.bos_token = token_field(j, "bos_token", map_file);
    impl.eos_token = token_field(j, "eos_token", map_file);
    impl.pad_token = token_field(j, "pad_token", map_file);
  }
  const std::string cfg_file = (base / "tokenizer_config.json").string();
  if (fs::exists(cfg_file, ec)) {
    const Json j = read_json_file(cfg_file);
    if (!j.is_object()) throw Error(cfg_file + ": expected an object");
    if (j.contains("bos_token")) impl.bos_token = token_field(j, "bos_token", cfg_file);
    if (j.contains("eos_token")) impl.eos_token = token_field(j, "eos_token", cfg_file);
    if (j.contains("pad_token")) impl.pad_token = token_field(j, "pad_token", cfg_file);
    auto ct = j.find("chat_template");
    if (ct != j.end() && !ct->is_null()) {
      if (ct->is_string()) {
        impl.chat_template = ct->get<std::string>();
      } else if (ct->is_array()) {
        for (std::size_t i = 0; i < ct->size(); ++i) {
          const Json& e = (*ct)[i];
          if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
              !e["template"].is_string())
            throw Error(cfg_file + ": chat_template[" + std::to_string(i) + "]: expected {\"name\", \"template\"}");
          if (e["name"] == "default") impl.chat_template = e["template"].get<std::string>();
        }
      } else {
        throw Error(cfg_file + ": chat_template: expected a string or a list");
      }
    }
  }
  const std::string jinja = (base / "chat_template.jinja").string();
  if (impl.chat_template.empty() && fs::exists(jinja, ec)) impl.chat_template = read_file(jinja);
}

}  // namespace nemotron::text
