// A memory-mapped .safetensors file with a validated header (torch-free).
// Thread-safe: immutable after Open.
#ifndef LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_FILE_H_
#define LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_FILE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/engine/formats/mapped_file.h"
#include "core/engine/formats/safetensors_header.h"

namespace lensd::engine {

class SafetensorsFile {
 public:
  // NOT_FOUND if the file is missing; INVALID_ARGUMENT (naming the file and tensor) if the
  // header is malformed or a tensor lies outside the file.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  // The tensor's bytes in the mapping.
  absl::string_view Bytes(const TensorEntry& entry) const;
  // Drops the pages holding data-region bytes [begin, end) from this process, so copied-out
  // weights do not stay resident twice.
  void Release(uint64_t begin, uint64_t end) const;

 private:
  SafetensorsFile() = default;

  std::unique_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_SAFETENSORS_FILE_H_
