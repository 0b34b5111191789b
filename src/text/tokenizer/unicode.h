#pragma once
// Unicode normalization (NFC, NFD, NFKC, NFKD) and per-character lowercasing, as the HF
// `tokenizers` normalizers do them. Data: unicode_tables.cpp (Unicode 14.0). Input must be
// valid UTF-8 (the tokenizer sanitizes its input first); invalid bytes are copied through.
#include <cstdint>
#include <string>
#include <string_view>

namespace nemotron::text {

enum class NormForm { NFC, NFD, NFKC, NFKD };

std::string unicode_normalize(std::string_view s, NormForm form);

// Rust's char::to_lowercase applied to each character (full mappings such as U+0130 ->
// "i\u0307", no context-sensitive rules such as final sigma).
std::string unicode_lowercase(std::string_view s);

// Rust's char::is_whitespace (the White_Space property).
bool unicode_is_whitespace(uint32_t cp);

}  // namespace nemotron::text
