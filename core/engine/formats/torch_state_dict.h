// Reads a torch.save file holding a dict of tensors (a state_dict such as tuned-lens's params.pt)
// without libtorch (torch-free): the zip archive, its pickle (restricted: only dicts, OrderedDict
// and tensor rebuilds are accepted, nothing runs) and the storages the tensors view.
// Pure functions; thread-safe.
#ifndef LENSD_CORE_ENGINE_FORMATS_TORCH_STATE_DICT_H_
#define LENSD_CORE_ENGINE_FORMATS_TORCH_STATE_DICT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/engine/formats/safetensors_header.h"

namespace lensd::engine {

// One tensor of the dict: a strided view of a storage's bytes (which stay in the archive).
struct StoredTensor {
  FileDtype dtype;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  int64_t storage_offset = 0;    // in elements
  absl::string_view storage;     // the whole storage's bytes, inside the archive
};

// Tensors by key, in the dict's order of keys sorted. INVALID_ARGUMENT naming what is wrong: not a
// zip (the legacy pre-1.6 format is refused as such), a corrupt entry (CRC), a pickle that calls
// anything else, a tensor that reaches outside its storage.
absl::StatusOr<std::map<std::string, StoredTensor>> ReadTorchStateDict(absl::string_view archive);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_TORCH_STATE_DICT_H_
