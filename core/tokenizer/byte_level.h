// GPT-2's byte-level alphabet: each byte maps to a printable code point (space -> U+0120 'Ġ',
// newline -> U+010A 'Ċ', ...), and the GPT-2 word-splitting regex.
#ifndef LENSD_CORE_TOKENIZER_BYTE_LEVEL_H_
#define LENSD_CORE_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <optional>

#include "core/tokenizer/pattern.h"

namespace lensd::tokenizer {

char32_t ByteToChar(uint8_t byte);
std::optional<uint8_t> CharToByte(char32_t c);

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
const Pattern& Gpt2SplitPattern();

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_BYTE_LEVEL_H_
