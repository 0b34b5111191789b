#include "text/tokenizer/normalizer.h"

#include <vector>

#include "text/tokenizer/regex.h"
#include "text/tokenizer/tokenizer_json.h"
#include "text/tokenizer/unicode.h"
#include "text/utf8.h"

namespace nemotron::text {
namespace {

class UnicodeNorm : public Normalizer {
 public:
  explicit UnicodeNorm(NormForm f) : form_(f) {}
  void normalize(std::string& t) const override { t = unicode_normalize(t, form_); }

 private:
  NormForm form_;
};

class Lowercase : public Normalizer {
 public:
  void normalize(std::string& t) const override { t = unicode_lowercase(t); }
};

// Replace: every match of a literal string or a regex is replaced by `content`.
class Replace : public Normalizer {
 public:
  Replace(std::unique_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(std::string& t) const override { t = re_->replace_all(t, content_); }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : p_(std::move(p)) {}
  void normalize(std::string& t) const override {
    if (!t.empty()) t.insert(0, p_);
  }

 private:
  std::string p_;
};

// Strip: removes leading and/or trailing characters with the White_Space property.
class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& t) const override {
    std::size_t b = 0, e = t.size();
    if (left_) {
      while (b < e) {
        std::size_t len;
        const int32_t cp = utf8_decode(t, b, len);
        if (cp < 0 || !unicode_is_whitespace(static_cast<uint32_t>(cp))) break;
        b += len;
      }
    }
    if (right_) {
      while (e > b) {
        std::size_t s = e - 1;
        while (s > b && (static_cast<unsigned char>(t[s]) & 0xC0) == 0x80) --s;
        std::size_t len;
        const int32_t cp = utf8_decode(t, s, len);
        if (cp < 0 || !unicode_is_whitespace(static_cast<uint32_t>(cp))) break;
        e = s;
      }
    }
    t = t.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// StripAccents: removes combining marks (general category M: Mn, Mc, Me).
class StripAccents : public Normalizer {
 public:
  StripAccents() : mn_("\\p{M}") {}
  void normalize(std::string& t) const override {
    std::string out;
    std::size_t prev = 0;
    mn_.find_all(t, [&](std::size_t s, std::size_t e) {
      out.append(t, prev, s - prev);
      prev = e;
    });
    out.append(t, prev, std::string::npos);
    t = std::move(out);
  }

 private:
  Regex mn_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& t) const override {
    for (const auto& p : parts_) p->normalize(t);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

// A `pattern` object: {"String": "..."} or {"Regex": "..."}; compiled to a Regex either way.
std::unique_ptr<Regex> make_pattern(const TokJson& j, const std::string& path) {
  if (!j.is_object()) throw SpecError(path, "expected {\"String\": ...} or {\"Regex\": ...}");
  if (auto it = j.find("String"); it != j.end() && it->is_string()) {
    const std::string lit = it->get<std::string>();
    return std::make_unique<Regex>(lit.empty() ? std::string("(?!)") : Regex::escape(lit));
  }
  if (auto it = j.find("Regex"); it != j.end() && it->is_string()) {
    try {
      return std::make_unique<Regex>(Regex::from_oniguruma(it->get<std::string>()));
    } catch (const std::invalid_argument& e) {
      throw SpecError(json_child(path, "Regex"), e.what());
    }
  }
  throw SpecError(path, "expected {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<Normalizer> make_normalizer(const TokJson& j, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, path);
  if (type == "NFC") return std::make_unique<UnicodeNorm>(NormForm::NFC);
  if (type == "NFD") return std::make_unique<UnicodeNorm>(NormForm::NFD);
  if (type == "NFKC") return std::make_unique<UnicodeNorm>(NormForm::NFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNorm>(NormForm::NFKD);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Replace") {
    auto it = j.find("pattern");
    if (it == j.end()) throw SpecError(json_child(path, "pattern"), "missing");
    return std::make_unique<Replace>(make_pattern(*it, json_child(path, "pattern")),
                                     json_string(j, "content", path, "", true));
  }
  if (type == "Prepend") return std::make_unique<Prepend>(json_string(j, "prepend", path, "", true));
  if (type == "Strip")
    return std::make_unique<Strip>(json_bool(j, "strip_left", path, true), json_bool(j, "strip_right", path, true));
  if (type == "Sequence") {
    const TokJson& arr = json_array(j, "normalizers", path);
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      auto n = make_normalizer(arr[i], json_index(json_child(path, "normalizers"), i));
      if (n) parts.push_back(std::move(n));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw SpecError(json_child(path, "type"), "unsupported normalizer type \"" + type + "\"");
}

}  // namespace nemotron::text
