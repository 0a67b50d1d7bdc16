// Client-supplied text as errors and logs show it: bounded, so that a megabyte-long name is
// neither echoed to the client (gRPC refuses oversized trailers) nor written into a log line.
#ifndef LENSD_CORE_SHOWN_TEXT_H_
#define LENSD_CORE_SHOWN_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace lensd {

// At most `max` bytes of `text`, cut before a UTF-8 continuation byte, then "... (N bytes)".
inline std::string Truncated(absl::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(text.substr(0, cut), "... (", text.size(), " bytes)");
}

// A name (model, lens, SAE, hook, file) as an error shows it.
inline std::string ShownName(absl::string_view name) { return Truncated(name, 128); }

// The most an error message carries (TF Serving caps its messages at 1 KiB too).
inline constexpr size_t kMaxErrorMessageBytes = 1024;

}  // namespace lensd

#endif  // LENSD_CORE_SHOWN_TEXT_H_
