#pragma once
// UTF-8 helpers shared by the text layer. Invalid input never throws: decoders report
// the bytes they could not decode so callers can choose replacement or byte fallback.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nemotron::text {

// Decodes one code point starting at s[i]. On success returns the code point and sets
// `len` to its byte length (1-4). On an invalid or truncated sequence returns -1 and sets
// `len` to 1 (the offending byte).
int32_t utf8_decode(std::string_view s, std::size_t i, std::size_t& len);

// Appends the UTF-8 encoding of code point cp (cp must be <= 0x10FFFF).
void utf8_append(std::string& out, uint32_t cp);

// True when s is entirely valid UTF-8.
bool utf8_valid(std::string_view s);

// Length of the longest prefix of s that does not end inside an incomplete (but so far
// valid) multi-byte sequence. Used by streaming detokenizers to hold back a partial
// character until its remaining bytes arrive. Invalid bytes are not held back.
std::size_t utf8_complete_prefix(std::string_view s);

// Replaces each invalid byte with U+FFFD (what Python's bytes.decode(errors="replace")
// does for the sequences HF tokenizers produce).
std::string utf8_sanitize(std::string_view s);

}  // namespace nemotron::text
