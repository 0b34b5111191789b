#pragma once
// Python str semantics on UTF-8 strings, for the Jinja interpreter: lengths and indices
// count code points; whitespace is Python's str.isspace() set; case mapping covers ASCII,
// Latin-1, Greek and Cyrillic (Python maps all of Unicode; other scripts are left as is).
// Invalid UTF-8 bytes count as one code point each and are kept.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nemotron::text::jinja {

// Code points (invalid bytes become 0xDC80+byte, Python's surrogateescape, and encode back
// to the original byte).
std::vector<uint32_t> to_code_points(std::string_view s);
std::string from_code_points(const std::vector<uint32_t>& cps, std::size_t begin, std::size_t end);
std::string from_code_points(const std::vector<uint32_t>& cps);
std::size_t py_len(std::string_view s);

bool py_isspace(uint32_t cp);
// str.strip/lstrip/rstrip. With chars == nullptr strips whitespace, else the code points
// in *chars.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);

std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_capitalize(std::string_view s);  // first upper, rest lower
std::string py_title(std::string_view s);       // str.title()

// str.split(sep, maxsplit) / str.rsplit; sep == nullptr splits on whitespace runs.
std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit,
                                  bool from_right);
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl,
                       int64_t count);
// str.find / str.count in code points; -1 when not found.
int64_t py_find(std::string_view s, std::string_view sub, bool reverse);
int64_t py_count(std::string_view s, std::string_view sub);

// repr() of a str: quotes chosen as Python does, non-printables escaped.
std::string py_repr_string(std::string_view s);

// Appends a JSON string literal (json.dumps with ensure_ascii=False).
void json_escape_append(std::string& out, std::string_view s);

// Python's html escape as Jinja's escape filter does it (& < > " ').
std::string html_escape(std::string_view s);

}  // namespace nemotron::text::jinja
