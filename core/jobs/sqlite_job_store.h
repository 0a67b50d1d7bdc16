// The embedded job store: one SQLite file (WAL journal, full sync) that one server owns. Leases
// work as in the shared store, so the job manager runs the same way on both; Recover hands every
// running job back, since no other server can hold one. A schema version in PRAGMA user_version
// migrates older files (version 1 had no leases).
// Thread-safe (one connection, serialised by a mutex).
#ifndef LENSD_CORE_JOBS_SQLITE_JOB_STORE_H_
#define LENSD_CORE_JOBS_SQLITE_JOB_STORE_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/jobs/job_store.h"

struct sqlite3;

namespace lensd {

class SqliteJobStore : public JobStore {
 public:
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);
  ~SqliteJobStore() override;

  bool shared() const override { return false; }
  std::string Describe() const override { return "SQLite file " + path_; }

  absl::Status Insert(const JobRecord& job) override;
  absl::StatusOr<JobRecord> Get(const std::string& id) const override;
  absl::StatusOr<std::vector<JobRecord>> List(const JobFilter& filter) const override;
  absl::StatusOr<std::map<JobState, int64_t>> CountByState() const override;
  absl::Status SetState(const std::string& id, JobState state, const std::string& reason) override;
  absl::Status RequestCancel(const std::string& id) override;
  absl::StatusOr<bool> CancelIfQueued(const std::string& id, const std::string& reason) override;
  absl::StatusOr<std::optional<JobRecord>> Claim(const ClaimOptions& options) override;
  absl::StatusOr<std::vector<HeldJob>> Renew(const std::string& owner,
                                             absl::Duration lease) override;
  absl::Status SetProgress(const std::string& id, const std::string& owner, int64_t step,
                           const std::string& progress) override;
  absl::Status SetCheckpoint(const std::string& id, const std::string& owner, int64_t step,
                             const std::string& checkpoint) override;
  absl::Status Finish(const std::string& id, const std::string& owner, JobState state,
                      const std::string& reason, const std::string& result) override;
  absl::StatusOr<std::vector<std::string>> Recover(const std::string& owner) override;
  absl::StatusOr<int64_t> LastChange() const override;
  absl::StatusOr<std::vector<JobChange>> ChangedSince(int64_t since) const override;

 private:
  SqliteJobStore(sqlite3* db, std::string path) : path_(std::move(path)), db_(db) {}
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NOT_FOUND for an unknown id, FAILED_PRECONDITION naming the holder when `owner` does not
  // hold it: the answer to a holder's write that changed nothing.
  absl::Status NotHeld(const std::string& id, const std::string& owner) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t NextChange() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ++last_change_; }

  const std::string path_;
  mutable absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  int64_t last_change_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace lensd

#endif  // LENSD_CORE_JOBS_SQLITE_JOB_STORE_H_
