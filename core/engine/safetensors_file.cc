#include "core/engine/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lensd::engine {

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const std::string reason = std::strerror(errno);
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open: ", reason));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* mapped = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
    }
    file->data_ = static_cast<const char*>(mapped);
  }
  ::close(fd);
  auto header = ParseSafetensorsHeader(absl::string_view(file->data_, file->size_), file->size_);
  if (!header.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", header.status().message()));
  }
  file->header_ = *std::move(header);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
}

absl::string_view SafetensorsFile::Bytes(const TensorEntry& entry) const {
  return absl::string_view(data_ + header_.data_start + entry.begin, entry.end - entry.begin);
}

void SafetensorsFile::Release(uint64_t begin_offset, uint64_t end_offset) const {
  // Offsets within the mapping, which starts on a page boundary. Rounded outward: the mapping is
  // read-only and private, so a dropped page that a neighbouring tensor still needs is simply
  // read again from the page cache.
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t first = (header_.data_start + begin_offset) / page * page;
  const uint64_t last =
      std::min<uint64_t>((header_.data_start + end_offset + page - 1) / page * page, size_);
  if (last > first) ::madvise(const_cast<char*>(data_) + first, last - first, MADV_DONTNEED);
}

}  // namespace lensd::engine
