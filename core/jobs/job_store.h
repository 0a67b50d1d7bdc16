// The durable record of jobs (training, evaluation, patching): their specs, states, progress,
// checkpoints and results survive a crash or a restart. Two kinds: an embedded SQLite file that
// one server owns (sqlite_job_store.h, the default), and a PostgreSQL database that several
// servers share (postgres_job_store.h): there a server runs a job only while it holds the job's
// lease, renews it while the job runs, and a job whose holder died is taken over by another
// server once its lease runs out, from its last checkpoint.
//
// Implementations are thread-safe.
#ifndef LENSD_CORE_JOBS_JOB_STORE_H_
#define LENSD_CORE_JOBS_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lensd {

// Stored as these numbers: do not reorder.
enum class JobState { kQueued = 0, kRunning = 1, kSucceeded = 2, kFailed = 3, kCancelled = 4 };
const char* JobStateName(JobState state);  // "queued", "running", ...
bool IsFinal(JobState state);

struct JobRecord {
  std::string id;
  std::string tenant;
  std::string kind;  // "train", "eval" or "patch"
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
  std::string owner;  // the server that holds (or last held) the job's lease; "" before
};

struct JobFilter {
  std::string tenant;  // empty: every tenant
  std::optional<JobState> state;
  int64_t limit = 100;
};

// What a server asks for when it has room for a job.
struct ClaimOptions {
  std::string owner;                 // this server (--replica_id)
  std::vector<std::string> devices;  // devices with a free job slot here
  std::vector<std::string> models;   // models this server serves; empty: any model
  absl::Duration lease = absl::Seconds(30);
};

// A running job its owner still holds, as Renew finds it.
struct HeldJob {
  std::string id;
  bool cancel_requested = false;
};

// A job and the number of its latest change.
struct JobChange {
  std::string id;
  int64_t change = 0;
};

class JobStore {
 public:
  // "postgres://..." or "postgresql://..." (a libpq connection URI; the password is best left to
  // $PGPASSWORD or ~/.pgpass) opens the shared PostgreSQL store; anything else is the path of a
  // SQLite file. UNAVAILABLE naming the file or server when it cannot be opened, is not a lensd
  // job store, or has a newer schema than this lensd knows.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& where);
  virtual ~JobStore() = default;

  // Whether other servers write to it too (their changes reach this server's watchers through
  // ChangedSince).
  virtual bool shared() const = 0;
  // Where it is, for logs and errors ("SQLite file /x/jobs.db", "PostgreSQL db on host"): never
  // a password.
  virtual std::string Describe() const = 0;

  // ALREADY_EXISTS for a used id.
  virtual absl::Status Insert(const JobRecord& job) = 0;
  // NOT_FOUND for an unknown id.
  virtual absl::StatusOr<JobRecord> Get(const std::string& id) const = 0;
  // Newest first.
  virtual absl::StatusOr<std::vector<JobRecord>> List(const JobFilter& filter) const = 0;
  // How many jobs are in each state (states with none are left out).
  virtual absl::StatusOr<std::map<JobState, int64_t>> CountByState() const = 0;

  // Sets the state whoever holds the job; `started` is stamped on running, `finished` on a final
  // state. For tests and tools: servers go through Claim and Finish.
  virtual absl::Status SetState(const std::string& id, JobState state,
                                const std::string& reason) = 0;
  // Marks the job for cancelling; its holder sees it at its next Renew.
  virtual absl::Status RequestCancel(const std::string& id) = 0;
  // A queued job becomes cancelled with `reason`; false (nothing changed) when it is not queued.
  virtual absl::StatusOr<bool> CancelIfQueued(const std::string& id, const std::string& reason) = 0;

  // Takes the next job this server can run, if any: a queued one, or a running one whose lease
  // ran out (its holder died), on one of `devices` and, when given, one of `models`; among them
  // the tenant with the fewest running jobs first, then the tenant served least recently (round
  // robin), then the oldest job. The job becomes running, held by `owner` for `lease`.
  virtual absl::StatusOr<std::optional<JobRecord>> Claim(const ClaimOptions& options) = 0;
  // Extends the lease of every job `owner` holds; returns them with their cancel marks. A job
  // missing from the answer is no longer this owner's (another server took it over).
  virtual absl::StatusOr<std::vector<HeldJob>> Renew(const std::string& owner,
                                                     absl::Duration lease) = 0;
  // The holder's writes. FAILED_PRECONDITION when `owner` no longer holds the job; NOT_FOUND for
  // an unknown id.
  virtual absl::Status SetProgress(const std::string& id, const std::string& owner, int64_t step,
                                   const std::string& progress) = 0;
  virtual absl::Status SetCheckpoint(const std::string& id, const std::string& owner, int64_t step,
                                     const std::string& checkpoint) = 0;
  // Ends the holder's run: a final state (with the result, "" for none), or kQueued to hand the
  // job back (it resumes from its checkpoint, here or elsewhere).
  virtual absl::Status Finish(const std::string& id, const std::string& owner, JobState state,
                              const std::string& reason, const std::string& result) = 0;

  // After a restart: the running jobs `owner` held (in a store no other server uses, every
  // running job) go back to the queue; returns the ids of every unfinished job, oldest first.
  virtual absl::StatusOr<std::vector<std::string>> Recover(const std::string& owner) = 0;

  // The newest change number (0 for an empty store).
  virtual absl::StatusOr<int64_t> LastChange() const = 0;
  // Every write a watcher sees stamps its job with the next change number. The jobs changed after
  // change `since`, in change order. In the shared store a write may commit a moment after a
  // later-numbered one: a reader that asks again from a little before its newest number sees it.
  virtual absl::StatusOr<std::vector<JobChange>> ChangedSince(int64_t since) const = 0;
};

}  // namespace lensd

#endif  // LENSD_CORE_JOBS_JOB_STORE_H_
