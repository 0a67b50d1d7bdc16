#include "core/jobs/job_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/jobs/job_store_sql.h"
#include "core/jobs/postgres_job_store.h"
#include "core/jobs/sqlite_job_store.h"

namespace lensd {

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

bool IsFinal(JobState state) {
  return state == JobState::kSucceeded || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& where) {
  if (absl::StartsWith(where, "postgres://") || absl::StartsWith(where, "postgresql://")) {
    return PostgresJobStore::Open(where);
  }
  return SqliteJobStore::Open(where);
}

absl::Status NotHeldError(const std::string& id, const std::string& owner,
                          const std::string& holder, JobState state) {
  if (state != JobState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " is ", JobStateName(state), ", not running on ", owner));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("job ", id, " is held by ", holder, ", not ", owner,
                   " (its lease ran out and another server took it over)"));
}

}  // namespace lensd
