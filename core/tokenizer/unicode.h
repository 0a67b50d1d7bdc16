// UTF-8 helpers and Unicode character properties (ICU), as the tokenizers need them.
// All functions are pure and thread-safe.
#ifndef LENSD_CORE_TOKENIZER_UNICODE_H_
#define LENSD_CORE_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace lensd::tokenizer {

// One decoded code point and where its bytes sit in the UTF-8 string.
struct CodePoint {
  char32_t value;
  size_t byte_offset;
  size_t byte_length;
};

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(absl::string_view text);

// Decodes well-formed UTF-8; the caller checks validity first.
std::vector<CodePoint> DecodeUtf8(absl::string_view text);

// Appends the UTF-8 encoding of `c` to `out`.
void AppendUtf8(char32_t c, std::string* out);
std::string EncodeUtf8(char32_t c);

// Length in bytes of the UTF-8 sequence starting with byte `lead`.
size_t Utf8Length(char32_t c);

// Number of code points in well-formed UTF-8.
size_t CountCodePoints(absl::string_view text);

// Replaces invalid sequences by U+FFFD, as Rust's String::from_utf8_lossy does.
std::string Utf8Lossy(absl::string_view bytes);

// Unicode White_Space (Rust's char::is_whitespace).
bool IsWhitespace(char32_t c);

// Rust's char::to_lowercase: the full, context-free lowercase mapping (one or more code points).
std::vector<char32_t> ToLowercase(char32_t c);

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_UNICODE_H_
