#include "text/tokenizer/tokenizer_impl.h"
#include "text/tokenizer/tokenizer_json.h"

namespace nemotron::text {
namespace {

// Items of a TemplateProcessing "single" template: a sequence placeholder ($A) or the ids
// of a special token (from the "special_tokens" map).
class Template : public PostProcessor {
 public:
  explicit Template(std::vector<std::vector<int32_t>> items) : items_(std::move(items)) {}
  void process(std::vector<int32_t>& ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids.size() + items_.size());
    for (const auto& item : items_) {
      if (item.empty()) out.insert(out.end(), ids.begin(), ids.end());
      else out.insert(out.end(), item.begin(), item.end());
    }
    ids = std::move(out);
  }

 private:
  std::vector<std::vector<int32_t>> items_;  // empty vector = the sequence
};

class Identity : public PostProcessor {
 public:
  void process(std::vector<int32_t>&) const override {}
};

class Sequence : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void process(std::vector<int32_t>& ids) const override {
    for (const auto& p : parts_) p->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

// "cls"/"sep" of Roberta/BertProcessing: ["<s>", 0].
int32_t pair_id(const TokJson& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->size() != 2) throw SpecError(json_child(path, key), "expected [token, id]");
  return json_token_id((*it)[1], json_child(path, key) + "[1]");
}

std::unique_ptr<PostProcessor> make_template(const TokJson& j, const std::string& path) {
  const TokJson& single = json_array(j, "single", path);
  const std::string spath = json_child(path, "single");
  std::vector<std::vector<int32_t>> items;
  auto specials = j.find("special_tokens");
  for (std::size_t i = 0; i < single.size(); ++i) {
    const TokJson& item = single[i];
    const std::string ipath = json_index(spath, i);
    if (item.contains("Sequence")) {
      items.emplace_back();
    } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id") &&
               item["SpecialToken"]["id"].is_string()) {
      const std::string name = item["SpecialToken"]["id"].get<std::string>();
      if (specials == j.end() || !specials->is_object() || !specials->contains(name))
        throw SpecError(json_child(path, "special_tokens"), "no entry for \"" + name + "\" used in " + ipath);
      // find, not operator[]: a const operator[] on a missing key is undefined behaviour.
      const TokJson& entry = (*specials)[name];
      const std::string ids_path = json_child(json_child(path, "special_tokens"), name) + ".ids";
      const auto ids = entry.is_object() ? entry.find("ids") : entry.end();
      if (!entry.is_object() || ids == entry.end() || !ids->is_array() || ids->empty())
        throw SpecError(ids_path, "expected a non-empty array");
      std::vector<int32_t> v;
      for (std::size_t k = 0; k < ids->size(); ++k) v.push_back(json_token_id((*ids)[k], json_index(ids_path, k)));
      items.push_back(std::move(v));
    } else {
      throw SpecError(ipath, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  return std::make_unique<Template>(std::move(items));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const TokJson& j, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, path);
  if (type == "TemplateProcessing") return make_template(j, path);
  if (type == "ByteLevel") return std::make_unique<Identity>();
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    const int32_t cls = pair_id(j, "cls", path), sep = pair_id(j, "sep", path);
    return std::make_unique<Template>(std::vector<std::vector<int32_t>>{{cls}, {}, {sep}});
  }
  if (type == "Sequence") {
    const TokJson& arr = json_array(j, "processors", path);
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      auto p = make_post_processor(arr[i], json_index(json_child(path, "processors"), i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw SpecError(json_child(path, "type"), "unsupported post_processor type \"" + type + "\"");
}

}  // namespace nemotron::text
