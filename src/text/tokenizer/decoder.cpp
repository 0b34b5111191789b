#include "text/tokenizer/decoder.h"

#include <cctype>

#include "text/tokenizer/normalizer.h"
#include "text/tokenizer/pre_tokenizer.h"
#include "text/tokenizer/regex.h"
#include "text/tokenizer/tokenizer_json.h"
#include "text/utf8.h"

namespace nemotron::text {
namespace {

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";

// ByteLevel: maps each character back through GPT-2's byte table; a token with a character
// outside the table contributes its own UTF-8 bytes. All tokens become one lossy string.
class ByteLevel : public Decoder {
 public:
  ByteLevel() {
    const std::string* alpha = byte_level_alphabet();
    for (int& v : table_) v = -1;
    for (int b = 0; b < 256; ++b) {
      std::size_t len;
      table_[utf8_decode(alpha[b], 0, len)] = b;
    }
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      const std::size_t mark = bytes.size();
      bool ok = true;
      for (std::size_t i = 0; i < t.size() && ok;) {
        std::size_t len;
        const int32_t cp = utf8_decode(t, i, len);
        if (cp < 0 || cp >= kTableSize || table_[cp] < 0) ok = false;
        else bytes += static_cast<char>(table_[cp]);
        i += len;
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_sanitize(bytes));
  }
  void raw_token(std::string& t) const override {
    std::string bytes;
    for (std::size_t i = 0; i < t.size();) {
      std::size_t len;
      const int32_t cp = utf8_decode(t, i, len);
      if (cp < 0 || cp >= kTableSize || table_[cp] < 0) return;  // not byte-level: kept as is
      bytes += static_cast<char>(table_[cp]);
      i += len;
    }
    t = std::move(bytes);
  }

 private:
  static constexpr int kTableSize = 0x144;
  int table_[kTableSize];
};

// ByteFallback: runs of "<0xXX>" tokens become the string they encode, or one U+FFFD per
// byte when those bytes are not valid UTF-8.
class ByteFallback : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    std::size_t nbytes = 0;
    auto flush = [&] {
      if (nbytes == 0) return;
      if (utf8_valid(bytes)) {
        out.push_back(bytes);
      } else {
        for (std::size_t k = 0; k < nbytes; ++k) out.push_back(kReplacementChar);
      }
      bytes.clear();
      nbytes = 0;
    };
    for (std::string& t : tokens) {
      int v = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4])))
        v = std::stoi(t.substr(3, 2), nullptr, 16);
      if (v >= 0) {
        bytes += static_cast<char>(v);
        ++nbytes;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
  void raw_token(std::string& t) const override {
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
        std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4])))
      t = std::string(1, static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
  }
};

class Fuse : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Strip: removes up to `left` leading and `right` trailing copies of `content` per token.
class Strip : public Decoder {
 public:
  Strip(std::string content, std::size_t left, std::size_t right) : c_(std::move(content)), left_(left), right_(right) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      std::size_t b = 0, e = t.size();
      for (std::size_t k = 0; k < left_ && e - b >= c_.size() && t.compare(b, c_.size(), c_) == 0; ++k) b += c_.size();
      for (std::size_t k = 0; k < right_ && e - b >= c_.size() && t.compare(e - c_.size(), c_.size(), c_) == 0; ++k)
        e -= c_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string c_;
  std::size_t left_, right_;
};

class Replace : public Decoder {
 public:
  Replace(std::unique_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) t = re_->replace_all(t, content_);
  }
  void raw_token(std::string& t) const override { t = re_->replace_all(t, content_); }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

// Metaspace: the replacement character becomes a space; in the first token it is dropped
// altogether unless prepend_scheme is "never" (HF behaviour).
class Metaspace : public Decoder {
 public:
  Metaspace(std::string rep, bool strip_first) : rep_(std::move(rep)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      std::string out;
      for (std::size_t k = 0; k < t.size();) {
        if (t.compare(k, rep_.size(), rep_) == 0) {
          if (!(i == 0 && strip_first_)) out += ' ';
          k += rep_.size();
        } else {
          out += t[k++];
        }
      }
      t = std::move(out);
    }
  }
  void raw_token(std::string& t) const override {
    std::string out;
    for (std::size_t k = 0; k < t.size();) {
      if (t.compare(k, rep_.size(), rep_) == 0) {
        out += ' ';
        k += rep_.size();
      } else {
        out += t[k++];
      }
    }
    t = std::move(out);
  }

 private:
  std::string rep_;
  bool strip_first_;
};

class Sequence : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }
  void raw_token(std::string& t) const override {
    for (const auto& p : parts_) p->raw_token(t);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const TokJson& j, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, path);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") {
    const long long l = json_int(j, "start", path, 0), r = json_int(j, "stop", path, 0);
    if (l < 0 || r < 0) throw SpecError(path, "start/stop must be non-negative");
    // HF's content is one character; an empty one would match forever (start/stop up to 2^63).
    std::string content = json_string(j, "content", path, " ");
    if (content.empty()) throw SpecError(json_child(path, "content"), "must not be empty");
    return std::make_unique<Strip>(std::move(content), static_cast<std::size_t>(l),
                                   static_cast<std::size_t>(r));
  }
  if (type == "Replace") {
    auto it = j.find("pattern");
    if (it == j.end()) throw SpecError(json_child(path, "pattern"), "missing");
    return std::make_unique<Replace>(make_pattern(*it, json_child(path, "pattern")),
                                     json_string(j, "content", path, "", true));
  }
  if (type == "Metaspace") {
    const std::string ps = json_string(j, "prepend_scheme", path);
    bool strip = json_bool(j, "add_prefix_space", path, true);
    if (!ps.empty()) strip = ps != "never";
    return std::make_unique<Metaspace>(json_string(j, "replacement", path, "\xE2\x96\x81"), strip);
  }
  if (type == "Sequence") {
    const TokJson& arr = json_array(j, "decoders", path);
    std::vector<std::unique_ptr<Decoder>> parts;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      auto d = make_decoder(arr[i], json_index(json_child(path, "decoders"), i));
      if (d) parts.push_back(std::move(d));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw SpecError(json_child(path, "type"), "unsupported decoder type \"" + type + "\"");
}

}  // namespace nemotron::text
