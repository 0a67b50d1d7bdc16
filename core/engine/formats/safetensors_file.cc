#include "core/engine/formats/safetensors_file.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace lensd::engine {

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  LENSD_ASSIGN_OR_RETURN(file->file_, MappedFile::Open(path));
  const absl::string_view bytes = file->file_->bytes();
  auto header = ParseSafetensorsHeader(bytes, bytes.size());
  if (!header.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", header.status().message()));
  }
  file->header_ = *std::move(header);
  return file;
}

absl::string_view SafetensorsFile::Bytes(const TensorEntry& entry) const {
  return file_->bytes().substr(header_.data_start + entry.begin, entry.end - entry.begin);
}

void SafetensorsFile::Release(uint64_t begin, uint64_t end) const {
  file_->Release(header_.data_start + begin, header_.data_start + end);
}

}  // namespace lensd::engine
