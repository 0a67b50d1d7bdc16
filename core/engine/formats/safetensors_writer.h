// Writes the safetensors format (torch-free): an 8-byte little-endian header length, a JSON
// header ({"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}}, padded with
// spaces to a multiple of 8 bytes) and the tensors' bytes in the order given. Read by
// safetensors.torch/numpy.load_file and by SafetensorsFile.
// Pure functions; thread-safe.
#ifndef LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_WRITER_H_
#define LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_WRITER_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/formats/safetensors_header.h"

namespace lensd::engine {

// INVALID_ARGUMENT for a repeated or empty name, a name "__metadata__", or data whose size does
// not match its shape and dtype.
absl::StatusOr<std::string> SafetensorsBytes(const std::vector<TensorToWrite>& tensors,
                                             const std::map<std::string, std::string>& metadata);

// The FileDtype of a lensd.v1 dtype name ("float32", "bfloat16", "int64", ...); nullopt for
// others.
std::optional<FileDtype> DtypeFromName(const std::string& name);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_WRITER_H_
