#include "core/engine/formats/zip_reader.h"

#include <zlib.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lensd::engine {
namespace {

constexpr uint32_t kEndOfDirectory = 0x06054b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint32_t kZip64End = 0x06064b50;
constexpr uint32_t kDirectoryEntry = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;

// Little-endian reads that fail (return false) instead of running off the end.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}
  bool Seek(uint64_t pos) {
    if (pos > bytes_.size()) return false;
    pos_ = pos;
    return true;
  }
  bool Skip(uint64_t n) {
    if (n > bytes_.size() - pos_) return false;
    pos_ += n;
    return true;
  }
  template <typename T>
  bool Read(T* out) {
    if (bytes_.size() - pos_ < sizeof(T)) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes_[pos_ + i])) << (8 * i);
    }
    *out = static_cast<T>(v);
    pos_ += sizeof(T);
    return true;
  }
  bool ReadString(size_t n, std::string* out) {
    if (bytes_.size() - pos_ < n) return false;
    out->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  uint64_t pos() const { return pos_; }

 private:
  absl::string_view bytes_;
  uint64_t pos_ = 0;
};

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("not a readable zip archive: ", what));
}

// Where the central directory starts and how many entries it has.
absl::StatusOr<std::pair<uint64_t, uint64_t>> FindDirectory(absl::string_view archive) {
  if (archive.size() < 22) return Bad("shorter than an end-of-directory record");
  const uint64_t lowest = archive.size() > 22 + 65535 ? archive.size() - 22 - 65535 : 0;
  for (uint64_t pos = archive.size() - 22;; --pos) {
    Reader r(archive);
    uint32_t signature = 0;
    if (r.Seek(pos) && r.Read(&signature) && signature == kEndOfDirectory) {
      uint16_t disk = 0, directory_disk = 0, entries_here = 0, entries = 0;
      uint32_t directory_size = 0, directory_offset = 0;
      r.Read(&disk), r.Read(&directory_disk), r.Read(&entries_here), r.Read(&entries);
      r.Read(&directory_size), r.Read(&directory_offset);
      if (entries != 0xFFFF && directory_offset != 0xFFFFFFFF) {
        return std::make_pair(static_cast<uint64_t>(directory_offset),
                              static_cast<uint64_t>(entries));
      }
      // Zip64: the locator sits just before the end record.
      Reader z(archive);
      uint32_t locator = 0, z64_disk = 0, end = 0;
      uint64_t z64_offset = 0, z64_entries = 0, z64_dir_size = 0, z64_dir_offset = 0;
      if (pos < 20 || !z.Seek(pos - 20) || !z.Read(&locator) || locator != kZip64Locator ||
          !z.Read(&z64_disk) || !z.Read(&z64_offset) || !z.Seek(z64_offset) || !z.Read(&end) ||
          end != kZip64End || !z.Skip(8 + 2 + 2 + 4 + 4 + 8) || !z.Read(&z64_entries) ||
          !z.Read(&z64_dir_size) || !z.Read(&z64_dir_offset)) {
        return Bad("zip64 end-of-directory record missing or truncated");
      }
      return std::make_pair(z64_dir_offset, z64_entries);
    }
    if (pos == lowest) break;
  }
  return Bad("no end-of-directory record (truncated file?)");
}

}  // namespace

absl::StatusOr<std::vector<ZipEntry>> ReadZipDirectory(absl::string_view archive) {
  auto directory = FindDirectory(archive);
  if (!directory.ok()) return directory.status();
  const auto [offset, count] = *directory;
  if (count > archive.size() / 46) return Bad("more directory entries than the file can hold");
  Reader r(archive);
  if (!r.Seek(offset)) return Bad("central directory outside the file");
  std::vector<ZipEntry> entries;
  entries.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t signature = 0, crc = 0, compressed32 = 0, size32 = 0, local32 = 0;
    uint16_t method = 0, name_length = 0, extra_length = 0, comment_length = 0;
    if (!r.Read(&signature) || signature != kDirectoryEntry || !r.Skip(6) || !r.Read(&method) ||
        !r.Skip(4) || !r.Read(&crc) || !r.Read(&compressed32) || !r.Read(&size32) ||
        !r.Read(&name_length) || !r.Read(&extra_length) || !r.Read(&comment_length) || !r.Skip(8) ||
        !r.Read(&local32)) {
      return Bad(absl::StrCat("directory entry ", i, " is truncated"));
    }
    ZipEntry entry;
    entry.crc32 = crc;
    entry.stored = method == 0;
    if (!r.ReadString(name_length, &entry.name)) return Bad("entry name runs off the file");
    uint64_t size = size32, compressed = compressed32, local = local32;
    const uint64_t extra_end = r.pos() + extra_length;
    while (r.pos() + 4 <= extra_end) {  // zip64 extra field: the fields saturated above
      uint16_t id = 0, length = 0;
      if (!r.Read(&id) || !r.Read(&length)) break;
      const uint64_t next = r.pos() + length;
      if (id == 0x0001) {
        if (size32 == 0xFFFFFFFF && !r.Read(&size)) break;
        if (compressed32 == 0xFFFFFFFF && !r.Read(&compressed)) break;
        if (local32 == 0xFFFFFFFF && !r.Read(&local)) break;
      }
      if (!r.Seek(next)) break;
    }
    if (!r.Seek(extra_end) || !r.Skip(comment_length))
      return Bad("directory entry runs off the file");
    if (entry.stored && compressed != size)
      return Bad(absl::StrCat(entry.name, ": sizes disagree"));
    // The local header repeats the name and has its own extra field before the data.
    Reader l(archive);
    uint32_t local_signature = 0;
    uint16_t local_name = 0, local_extra = 0;
    if (!l.Seek(local) || !l.Read(&local_signature) || local_signature != kLocalHeader ||
        !l.Skip(22) || !l.Read(&local_name) || !l.Read(&local_extra) ||
        !l.Skip(static_cast<uint64_t>(local_name) + local_extra)) {
      return Bad(absl::StrCat(entry.name, ": local header missing or truncated"));
    }
    entry.data_offset = l.pos();
    entry.size = compressed;
    if (entry.data_offset > archive.size() || archive.size() - entry.data_offset < entry.size) {
      return Bad(absl::StrCat(entry.name, ": data runs off the file (truncated?)"));
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

absl::StatusOr<absl::string_view> ZipEntryBytes(absl::string_view archive, const ZipEntry& entry) {
  if (!entry.stored) {
    return absl::InvalidArgumentError(
        absl::StrCat(entry.name, " is compressed; torch.save archives store entries uncompressed"));
  }
  const absl::string_view bytes = archive.substr(entry.data_offset, entry.size);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t done = 0; done < bytes.size();) {  // zlib takes at most 4 GiB per call
    const size_t n = std::min<size_t>(bytes.size() - done, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), static_cast<uInt>(n));
    done += n;
  }
  if (static_cast<uint32_t>(crc) != entry.crc32) {
    return absl::InvalidArgumentError(absl::StrCat(entry.name, ": CRC-32 mismatch (corrupt file)"));
  }
  return bytes;
}

}  // namespace lensd::engine
