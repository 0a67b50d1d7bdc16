// A memory-mapped .safetensors file with a validated header (torch-free).
// Thread-safe: immutable after Open; the mapping lives as long as the object.
#ifndef LENSD_CORE_ENGINE_SAFETENSORS_FILE_H_
#define LENSD_CORE_ENGINE_SAFETENSORS_FILE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/engine/safetensors_header.h"

namespace lensd::engine {

class SafetensorsFile {
 public:
  // NOT_FOUND if the file is missing; INVALID_ARGUMENT (naming the file and tensor) if the
  // header is malformed or a tensor lies outside the file.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  // The tensor's bytes in the mapping.
  absl::string_view Bytes(const TensorEntry& entry) const;
  // Tells the kernel that the pages holding data-region bytes [begin, end) are no longer
  // needed, so copied-out weights do not stay resident twice (the page cache keeps the file;
  // this process stops holding it).
  void Release(uint64_t begin, uint64_t end) const;

 private:
  SafetensorsFile() = default;

  std::string path_;
  const char* data_ = nullptr;
  size_t size_ = 0;
  SafetensorsHeader header_;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_SAFETENSORS_FILE_H_
