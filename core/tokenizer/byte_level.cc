#include "core/tokenizer/byte_level.h"

#include <array>

namespace lensd::tokenizer {
namespace {

// Printable bytes keep their code point; the other 68 take 256, 257, ... in byte order.
std::array<char32_t, 256> BuildByteTable() {
  std::array<char32_t, 256> table{};
  const auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    table[static_cast<size_t>(b)] = printable(b) ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

const std::array<char32_t, 256>& ByteTable() {
  static const std::array<char32_t, 256> table = BuildByteTable();
  return table;
}

}  // namespace

char32_t ByteToChar(uint8_t byte) { return ByteTable()[byte]; }

std::optional<uint8_t> CharToByte(char32_t c) {
  if (c < 256) {
    if (ByteTable()[c] == c) return static_cast<uint8_t>(c);
  }
  if (c >= 256 && c < 256 + 68) {
    for (int b = 0; b < 256; ++b) {
      if (ByteTable()[static_cast<size_t>(b)] == c) return static_cast<uint8_t>(b);
    }
  }
  return std::nullopt;
}

const Pattern& Gpt2SplitPattern() {
  static const Pattern* pattern = new Pattern(*Pattern::Regex(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"));
  return *pattern;
}

}  // namespace lensd::tokenizer
