// libFuzzer target: the restricted unpickler alone (torch_state_dict_fuzz rarely gets past the
// zip CRC check to the pickle). Every call is answered with an empty dict.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "core/engine/formats/pickle_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lensd::engine::PickleArena arena;
  const lensd::engine::PickleCall call =
      [](absl::string_view, const lensd::engine::PickleValue&,
         lensd::engine::PickleArena* a) -> absl::StatusOr<const lensd::engine::PickleValue*> {
    return a->New(lensd::engine::PickleValue::Kind::kDict);
  };
  (void)lensd::engine::Unpickle(absl::string_view(reinterpret_cast<const char*>(data), size), call,
                                &arena);
  return 0;
}
