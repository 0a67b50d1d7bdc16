// The durable record of training and evaluation jobs: one SQLite database (WAL journal, full
// sync), so that jobs, their specs, states, progress, checkpoints and results survive a crash or a
// restart. A schema version in PRAGMA user_version lets later versions migrate it.
// Thread-safe (one connection, serialised by a mutex).
#ifndef LENSD_CORE_JOB_STORE_H_
#define LENSD_CORE_JOB_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct sqlite3;

namespace lensd {

enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* JobStateName(JobState state);  // "queued", "running", ...
bool IsFinal(JobState state);

struct JobRecord {
  std::string id;
  std::string tenant;
  std::string kind;  // "train" or "eval"
  std::string model;
  std::string device;
  std::string spec;  // the job's parameters (JSON), fixed at submission
  JobState state = JobState::kQueued;
  std::string reason;  // why it failed or was cancelled
  int64_t step = 0;
  int64_t num_steps = 0;
  std::string progress;    // JSON: the latest per-layer losses, tokens/s, ETA
  std::string checkpoint;  // the latest checkpoint file ("" before the first)
  std::string result;      // JSON: the lens written, or the evaluation's metrics
  bool cancel_requested = false;
  double created = 0;  // Unix seconds
  double started = 0;
  double finished = 0;
};

struct JobFilter {
  std::string tenant;  // empty: every tenant
  std::optional<JobState> state;
  int64_t limit = 100;
};

class JobStore {
 public:
  // Opens or creates the database at `path`. UNAVAILABLE naming the file when it cannot be
  // opened, is not a lensd job database, or has a newer schema than this lensd knows.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);
  ~JobStore();

  // ALREADY_EXISTS for a used id.
  absl::Status Insert(const JobRecord& job);
  // NOT_FOUND for an unknown id.
  absl::StatusOr<JobRecord> Get(const std::string& id) const;
  // Newest first.
  absl::StatusOr<std::vector<JobRecord>> List(const JobFilter& filter) const;

  // State changes stamp `started` (running) and `finished` (a final state).
  absl::Status SetState(const std::string& id, JobState state, const std::string& reason);
  absl::Status SetProgress(const std::string& id, int64_t step, const std::string& progress);
  absl::Status SetCheckpoint(const std::string& id, int64_t step, const std::string& checkpoint);
  absl::Status SetResult(const std::string& id, const std::string& result);
  absl::Status RequestCancel(const std::string& id);

  // Jobs that were running when the server stopped go back to queued (they resume from their
  // checkpoint); returns the ids of every unfinished job, oldest first.
  absl::StatusOr<std::vector<std::string>> Recover();

 private:
  explicit JobStore(sqlite3* db) : db_(db) {}
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd

#endif  // LENSD_CORE_JOB_STORE_H_
