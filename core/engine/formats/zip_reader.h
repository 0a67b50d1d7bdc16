// The central directory of a zip archive held in memory, for torch.save files (torch-free).
// Only stored (uncompressed) entries are readable, which is what torch.save writes; zip64 sizes
// and offsets are understood. Pure functions; thread-safe.
#ifndef LENSD_CORE_ENGINE_FORMATS_ZIP_READER_H_
#define LENSD_CORE_ENGINE_FORMATS_ZIP_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd::engine {

struct ZipEntry {
  std::string name;
  uint64_t data_offset;  // where the entry's bytes start in the archive
  uint64_t size;
  uint32_t crc32;
  bool stored;  // false for a compressed entry (unreadable here)
};

// INVALID_ARGUMENT describing the first structural problem (not a zip, truncated directory,
// entry outside the archive).
absl::StatusOr<std::vector<ZipEntry>> ReadZipDirectory(absl::string_view archive);

// The entry's bytes, after checking that it is stored and that its CRC-32 matches.
absl::StatusOr<absl::string_view> ZipEntryBytes(absl::string_view archive, const ZipEntry& entry);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_ZIP_READER_H_
