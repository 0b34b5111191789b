#include "text/tokenizer/unicode.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "text/tokenizer/unicode_tables.h"
#include "text/utf8.h"

namespace nemotron::text {
namespace {

using namespace unicode_data;

// Hangul syllable constants (Unicode ch. 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t ccc_of(uint32_t cp) {
  if (cp < 0x300) return 0;
  const uint32_t* end = kCcc + kCcc_size;
  const uint32_t* it = std::lower_bound(kCcc, end, cp << 8);
  if (it != end && (*it >> 8) == cp) return static_cast<uint8_t>(*it & 0xFF);
  return 0;
}

// Row index in kDecomp, or -1.
long decomp_row(uint32_t cp) {
  if (cp < 0xA0) return -1;
  std::size_t lo = 0, hi = kDecomp_size / 3;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (kDecomp[mid * 3] < cp) lo = mid + 1;
    else hi = mid;
  }
  if (lo < kDecomp_size / 3 && kDecomp[lo * 3] == cp) return static_cast<long>(lo);
  return -1;
}

void decompose_one(uint32_t cp, bool compat, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const long row = decomp_row(cp);
  if (row >= 0) {
    const uint32_t packed = kDecomp[static_cast<std::size_t>(row) * 3 + (compat ? 2 : 1)];
    if (packed) {
      const uint32_t off = packed >> 8, len = packed & 0xFF;
      out.insert(out.end(), kDecompPool + off, kDecompPool + off + len);
      return;
    }
  }
  out.push_back(cp);
}

// Composite of (a, b), or 0.
uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  std::size_t lo = 0, hi = kCompose_size / 3;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    const uint32_t f = kCompose[mid * 3], s = kCompose[mid * 3 + 1];
    if (f < a || (f == a && s < b)) lo = mid + 1;
    else hi = mid;
  }
  if (lo < kCompose_size / 3 && kCompose[lo * 3] == a && kCompose[lo * 3 + 1] == b)
    return kCompose[lo * 3 + 2];
  return 0;
}

// Canonical ordering: stable sort of each run of non-starters by combining class.
void reorder(std::vector<uint32_t>& cps) {
  std::size_t i = 0;
  while (i < cps.size()) {
    if (ccc_of(cps[i]) == 0) { ++i; continue; }
    std::size_t j = i;
    while (j < cps.size() && ccc_of(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<long>(i), cps.begin() + static_cast<long>(j),
                     [](uint32_t x, uint32_t y) { return ccc_of(x) < ccc_of(y); });
    i = j;
  }
}

// Canonical composition (UAX #15 algorithm) in place. `last_class` is the combining class
// of the last character kept; 256 means "no starter yet" (everything blocked).
void compose(std::vector<uint32_t>& cps) {
  if (cps.empty()) return;
  std::size_t starter = 0;
  int last_class = ccc_of(cps[0]) == 0 ? 0 : 256;
  std::size_t out = 1;
  for (std::size_t i = 1; i < cps.size(); ++i) {
    const uint32_t c = cps[i];
    const int cc = ccc_of(c);
    if (last_class < cc || last_class == 0) {
      const uint32_t comp = compose_pair(cps[starter], c);
      if (comp) { cps[starter] = comp; continue; }
    }
    if (cc == 0) starter = out;
    last_class = cc;
    cps[out++] = c;
  }
  cps.resize(out);
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

}  // namespace

std::string unicode_normalize(std::string_view s, NormForm form) {
  if (is_ascii(s)) return std::string(s);
  const bool compat = form == NormForm::NFKC || form == NormForm::NFKD;
  const bool comp = form == NormForm::NFC || form == NormForm::NFKC;
  std::string out;
  out.reserve(s.size());
  std::vector<uint32_t> cps;
  // Process in segments ending before each ASCII starter so that memory stays bounded;
  // an ASCII character is a starter that never composes with a preceding character.
  std::size_t i = 0;
  while (i < s.size()) {
    cps.clear();
    std::size_t j = i;
    while (j < s.size()) {
      std::size_t len;
      const int32_t cp = utf8_decode(s, j, len);
      if (cp < 0) {  // invalid byte: flush and copy it through untouched
        break;
      }
      // An ASCII character is a starter that never composes with what precedes it, so a
      // segment may end right before one.
      if (cp < 0x80 && !cps.empty()) break;
      decompose_one(static_cast<uint32_t>(cp), compat, cps);
      j += len;
    }
    reorder(cps);
    if (comp) compose(cps);
    for (uint32_t c : cps) utf8_append(out, c);
    if (j < s.size()) {
      std::size_t len;
      if (utf8_decode(s, j, len) < 0) { out += s[j]; j += 1; }
    }
    i = j;
  }
  return out;
}

std::string unicode_lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out += static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
      ++i;
      continue;
    }
    std::size_t len;
    const int32_t cp = utf8_decode(s, i, len);
    if (cp < 0) { out += s[i]; ++i; continue; }
    const auto ucp = static_cast<uint32_t>(cp);
    std::size_t lo = 0, hi = kLower_size / 2;
    while (lo < hi) {
      const std::size_t mid = (lo + hi) / 2;
      if (kLower[mid * 2] < ucp) lo = mid + 1;
      else hi = mid;
    }
    if (lo < kLower_size / 2 && kLower[lo * 2] == ucp) {
      const uint32_t packed = kLower[lo * 2 + 1];
      for (uint32_t k = 0; k < (packed & 0xFF); ++k) utf8_append(out, kLowerPool[(packed >> 8) + k]);
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

bool unicode_is_whitespace(uint32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace nemotron::text
