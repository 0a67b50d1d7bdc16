// Writes a dict of tensors in torch.save's zip format (torch-free), as tuned-lens's params.pt and
// the training checkpoints: `torch.load` reads it back as a collections.OrderedDict of contiguous
// CPU tensors, and so does ReadTorchStateDict. Entries are stored (not compressed) and every
// storage starts on a 64-byte boundary, as torch.save lays them out.
// Pure functions; thread-safe.
#ifndef LENSD_CORE_ENGINE_FORMATS_TORCH_STATE_DICT_WRITER_H_
#define LENSD_CORE_ENGINE_FORMATS_TORCH_STATE_DICT_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/formats/safetensors_header.h"

namespace lensd::engine {

// The whole file's bytes; `archive_name` is the folder inside the zip (torch.save uses the file's
// stem, e.g. "params"). INVALID_ARGUMENT for a dtype torch.save has no storage for, a data size
// that does not match the shape, or a repeated key.
absl::StatusOr<std::string> WriteTorchStateDict(const std::vector<TensorToWrite>& tensors,
                                                const std::string& archive_name);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_TORCH_STATE_DICT_WRITER_H_
