// The shared job store: a PostgreSQL database (libpq) that several lensd servers use at once, so
// that a job submitted through one is watched, cancelled or read through any other, and runs on
// whichever has room. A server claims a job with SELECT ... FOR UPDATE SKIP LOCKED (no two take
// the same one), holds it by a lease in the database's own clock that it renews while the job
// runs, and every write of the job's holder checks that it still holds the lease: a server that
// died or stalled past its lease loses the job to the next claim, which resumes it from its last
// checkpoint (on storage every server mounts). Tables: lensd_jobs, lensd_job_changes (a sequence
// numbering changes) and lensd_schema (the schema version), made at first open.
// Thread-safe (one connection, serialised by a mutex; a broken connection is re-made once per
// call).
#ifndef LENSD_CORE_JOBS_POSTGRES_JOB_STORE_H_
#define LENSD_CORE_JOBS_POSTGRES_JOB_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/jobs/job_store.h"

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace lensd {

class PostgresJobStore : public JobStore {
 public:
  // `uri`: a libpq connection URI (postgresql://user@host:port/db?...).
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& uri);
  ~PostgresJobStore() override;

  bool shared() const override { return true; }
  std::string Describe() const override { return description_; }

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
  class Result;
  PostgresJobStore(PGconn* conn, std::string description)
      : description_(std::move(description)), conn_(conn) {}
  // Runs one statement with text parameters; a broken connection is re-made and the statement
  // tried again once. UNAVAILABLE naming the server for a failure, ALREADY_EXISTS for a unique
  // key taken.
  absl::StatusOr<Result> Exec(const std::string& sql, const std::vector<std::string>& params) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The answer to a holder's write that changed no row.
  absl::Status NotHeld(const std::string& id, const std::string& owner) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs a holder's UPDATE (parameters $1 id, $2 owner, ...).
  absl::Status HolderWrite(const std::string& sql, const std::vector<std::string>& params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string description_;
  mutable absl::Mutex mu_;
  PGconn* conn_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd

#endif  // LENSD_CORE_JOBS_POSTGRES_JOB_STORE_H_
