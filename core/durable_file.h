// Files that are either wholly written or not there at all, for results and checkpoints that must
// survive a crash: write to a temporary name in the same folder, fsync, rename over the target,
// fsync the folder. Errors name the path and say what the system said: RESOURCE_EXHAUSTED for a
// full disk or quota, PERMISSION_DENIED for an unwritable place, NOT_FOUND for a missing folder.
// Thread-safe (distinct paths).
#ifndef LENSD_CORE_DURABLE_FILE_H_
#define LENSD_CORE_DURABLE_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace lensd {

// Replaces `path` with `bytes` atomically (readers see the old file or the new one).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes);

// Renames the folder `from` to `to` (which must not exist: ALREADY_EXISTS) and fsyncs the parent,
// for folders assembled under a temporary name.
absl::Status PublishFolder(const std::string& from, const std::string& to);

// The Status for errno `error` of `what` on `path` ("write", "open", ...).
absl::Status ErrnoStatus(int error, absl::string_view what, const std::string& path);

}  // namespace lensd

#endif  // LENSD_CORE_DURABLE_FILE_H_
