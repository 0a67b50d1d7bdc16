// libFuzzer target: the params.pt reader (zip directory, restricted unpickler, tensor views)
// must return a Status for any bytes, never crash, hang, leak or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "core/engine/formats/torch_state_dict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)lensd::engine::ReadTorchStateDict(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
