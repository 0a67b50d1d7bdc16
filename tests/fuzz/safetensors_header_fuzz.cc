// libFuzzer target: the safetensors header parser must return a Status for any bytes, never
// crash, hang or read out of bounds (run under AddressSanitizer).
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "core/engine/formats/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The parser sees the file's prefix; test both the whole input and a claimed larger file.
  (void)lensd::engine::ParseSafetensorsHeader(bytes, size);
  (void)lensd::engine::ParseSafetensorsHeader(bytes, size + 64);
  return 0;
}
