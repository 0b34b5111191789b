// Unicode normalization and lowercasing (expected values from the Unicode standard's
// examples: UAX #15 figures, SpecialCasing.txt).
#include <gtest/gtest.h>

#include "text/tokenizer/decoder.h"
#include "text/utf8.h"
#include "text/tokenizer/unicode.h"

using namespace nemotron::text;

TEST(Unicode, CanonicalForms) {
  const std::string composed = "\xC3\xA9";     // é
  const std::string decomposed = "e\xCC\x81";  // e + U+0301
  EXPECT_EQ(unicode_normalize(decomposed, NormForm::NFC), composed);
  EXPECT_EQ(unicode_normalize(composed, NormForm::NFD), decomposed);
  // Hangul: 한 <-> U+1112 U+1161 U+11AB (algorithmic).
  EXPECT_EQ(unicode_normalize("\xED\x95\x9C", NormForm::NFD), "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB");
  EXPECT_EQ(unicode_normalize("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB", NormForm::NFC), "\xED\x95\x9C");
  // Canonical reordering: q + dot above (230) + dot below (220) -> below first.
  EXPECT_EQ(unicode_normalize("q\xCC\x87\xCC\xA3", NormForm::NFC), "q\xCC\xA3\xCC\x87");
  // Ångström sign U+212B is a singleton -> Å U+00C5.
  EXPECT_EQ(unicode_normalize("\xE2\x84\xAB", NormForm::NFC), "\xC3\x85");
  EXPECT_EQ(unicode_normalize("plain ascii", NormForm::NFKC), "plain ascii");
}

TEST(Unicode, CompatibilityForms) {
  EXPECT_EQ(unicode_normalize("\xEF\xAC\x81", NormForm::NFKC), "fi");       // ﬁ ligature
  EXPECT_EQ(unicode_normalize("\xE2\x91\xA0", NormForm::NFKC), "1");        // ①
  EXPECT_EQ(unicode_normalize("\xEF\xBD\x86", NormForm::NFKC), "f");        // fullwidth f
  EXPECT_EQ(unicode_normalize("\xE1\xBA\x9B\xCC\xA3", NormForm::NFKC), "\xE1\xB9\xA9");  // ẛ̣ -> ṩ (UAX #15)
  EXPECT_EQ(unicode_normalize("\xE1\xBA\x9B\xCC\xA3", NormForm::NFKD), "s\xCC\xA3\xCC\x87");
  EXPECT_EQ(unicode_normalize("\xE1\xBA\x9B\xCC\xA3", NormForm::NFC), "\xE1\xBA\x9B\xCC\xA3");
}

TEST(Unicode, LowercaseIsPerCharacter) {
  EXPECT_EQ(unicode_lowercase("HeLLo"), "hello");
  EXPECT_EQ(unicode_lowercase("\xC4\xB0"), "i\xCC\x87");               // İ -> i + U+0307
  EXPECT_EQ(unicode_lowercase("\xCE\xA3\xCE\x91\xCE\xA3"), "\xCF\x83\xCE\xB1\xCF\x83");  // ΣΑΣ -> σασ (no final sigma)
  EXPECT_EQ(unicode_lowercase("\xE1\xBA\x9E"), "\xC3\x9F");            // ẞ -> ß
}

TEST(Unicode, LossyDecodingReplacesMaximalSubparts) {
  EXPECT_EQ(utf8_sanitize("a\xE2\x82z"), "a\xEF\xBF\xBDz");                       // truncated: one U+FFFD
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: three
  EXPECT_EQ(utf8_sanitize("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8_sanitize("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_sanitize("ok \xE2\x82\xAC"), "ok \xE2\x82\xAC");
}
