// For the Statuses that nobody can be answered with (a job-store write after the job's client
// has gone, a progress update): they are logged, never dropped in silence.
#ifndef LENSD_CORE_LOG_STATUS_H_
#define LENSD_CORE_LOG_STATUS_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace lensd {

// Writes "lensd: <what>: <status>" to stderr unless `status` is OK.
inline void LogIfError(const absl::Status& status, absl::string_view what) {
  if (status.ok()) return;
  const std::string line = "lensd: " + std::string(what) + ": " +
                           status.ToString(absl::StatusToStringMode::kWithNoExtraData) + "\n";
  std::fputs(line.c_str(), stderr);
}

}  // namespace lensd

#endif  // LENSD_CORE_LOG_STATUS_H_
