// A read-only, private memory mapping of a whole file (torch-free).
// Thread-safe: immutable after Open; the mapping lives as long as the object.
#ifndef LENSD_CORE_ENGINE_FORMATS_MAPPED_FILE_H_
#define LENSD_CORE_ENGINE_FORMATS_MAPPED_FILE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd::engine {

class MappedFile {
 public:
  // NOT_FOUND if the file does not exist; INVALID_ARGUMENT (naming it) if it cannot be mapped.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  absl::string_view bytes() const { return absl::string_view(data_, size_); }
  // Drops the pages holding bytes [begin, end) from this process (rounded outward; the mapping
  // is read-only, so a page still needed is read again from the page cache).
  void Release(uint64_t begin, uint64_t end) const;

 private:
  MappedFile() = default;

  std::string path_;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_MAPPED_FILE_H_
