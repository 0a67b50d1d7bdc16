#include "core/tokenizer/unicode.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

namespace lensd::tokenizer {
namespace {

// Returns the code point at `pos` and its length, or length 0 for an invalid sequence.
std::pair<char32_t, size_t> DecodeOne(absl::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(pos);
  size_t length = 0;
  char32_t value = 0;
  char32_t min = 0;
  if (lead < 0x80) return {lead, 1};
  if ((lead & 0xE0) == 0xC0) {
    length = 2, value = lead & 0x1F, min = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, value = lead & 0x0F, min = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, value = lead & 0x07, min = 0x10000;
  } else {
    return {0, 0};
  }
  if (pos + length > s.size()) return {0, 0};
  for (size_t i = 1; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return {0, 0};
    value = (value << 6) | (byte(pos + i) & 0x3F);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return {0, 0};
  return {value, length};
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = DecodeOne(text, pos).second;
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

std::vector<CodePoint> DecodeUtf8(absl::string_view text) {
  std::vector<CodePoint> out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    auto [value, length] = DecodeOne(text, pos);
    if (length == 0) length = 1;  // callers validate first; never loop forever
    out.push_back({value, pos, length});
    pos += length;
  }
  return out;
}

size_t Utf8Length(char32_t c) {
  if (c < 0x80) return 1;
  if (c < 0x800) return 2;
  if (c < 0x10000) return 3;
  return 4;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string EncodeUtf8(char32_t c) {
  std::string out;
  AppendUtf8(c, &out);
  return out;
}

size_t CountCodePoints(absl::string_view text) {
  size_t count = 0;
  for (const char ch : text) {
    if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) ++count;
  }
  return count;
}

std::string Utf8Lossy(absl::string_view bytes) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    const size_t length = DecodeOne(bytes, pos).second;
    if (length > 0) {
      out.append(bytes.data() + pos, length);
      pos += length;
      continue;
    }
    // One U+FFFD per maximal subpart of an ill-formed sequence (Rust's from_utf8_lossy).
    const unsigned char lead = byte(pos);
    size_t want = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      want = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      want = 3, lo = lead == 0xE0 ? 0xA0 : 0x80, hi = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      want = 4, lo = lead == 0xF0 ? 0x90 : 0x80, hi = lead == 0xF4 ? 0x8F : 0xBF;
    }
    size_t taken = 1;
    if (want > 0 && pos + 1 < bytes.size() && byte(pos + 1) >= lo && byte(pos + 1) <= hi) {
      taken = 2;
      while (taken < want && pos + taken < bytes.size() && (byte(pos + taken) & 0xC0) == 0x80) {
        ++taken;
      }
    }
    out.append("\xEF\xBF\xBD");
    pos += taken;
  }
  return out;
}

bool IsWhitespace(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)) != 0; }

std::vector<char32_t> ToLowercase(char32_t c) {
  icu::UnicodeString s(static_cast<UChar32>(c));
  s.toLower(icu::Locale::getRoot());
  std::vector<char32_t> out;
  for (int32_t i = 0; i < s.length();) {
    const UChar32 cp = s.char32At(i);
    out.push_back(static_cast<char32_t>(cp));
    i += U16_LENGTH(cp);
  }
  return out;
}

}  // namespace lensd::tokenizer
