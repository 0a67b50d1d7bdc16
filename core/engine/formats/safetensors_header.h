// Parsing and validation of a .safetensors header (torch-free, so the fuzz target links it alone).
//
// Format: 8 bytes little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data region. Offsets are relative
// to the data region. Every tensor's byte range must lie inside the file and match its shape and
// dtype. Pure functions; thread-safe.
#ifndef LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_HEADER_H_
#define LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_HEADER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd::engine {

enum class FileDtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// One tensor to write to a file: contiguous little-endian bytes of `shape` in `dtype`.
struct TensorToWrite {
  std::string key;
  FileDtype dtype;
  std::vector<int64_t> shape;
  std::string data;
};

struct TensorEntry {
  FileDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin;  // byte offsets into the data region
  uint64_t end;
};

struct SafetensorsHeader {
  uint64_t data_start;  // 8 + header length
  std::map<std::string, TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
};

// `prefix` holds at least the first min(file_size, 8 + N) bytes of the file; `file_size` is its
// full size. INVALID_ARGUMENT (naming the tensor or field) for anything malformed.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view prefix,
                                                         uint64_t file_size);

// Size in bytes of one element, and the name used in the format ("F32", "BF16", ...).
size_t ElementSize(FileDtype dtype);
const char* DtypeName(FileDtype dtype);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_HEADER_H_
