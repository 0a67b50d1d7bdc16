// Runs jobs from the durable store: a server takes (claims) a job when one of its devices has a
// free slot (at most `jobs_per_device` running per device, so that jobs leave the device to
// interactive requests), the tenant with the fewest running jobs first; a per-tenant cap on
// unfinished jobs; cancellation that reaches the running job from any server sharing the store
// (within a heartbeat); watchers woken on every change, other servers' changes included (polled
// from a shared store); and recovery after a restart or a crash (a job resumes from its last
// checkpoint, here or on another server once its lease ran out). What a job does is the
// JobRunner's business (the engine's).
// Thread-safe.
#ifndef LENSD_CORE_JOBS_JOB_MANAGER_H_
#define LENSD_CORE_JOBS_JOB_MANAGER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/jobs/job_store.h"

namespace lensd {

// What a running job may ask of the manager.
class JobContext {
 public:
  virtual ~JobContext() = default;
  // OK while the job should go on; CANCELLED once a user cancelled it, ABORTED when the server is
  // shutting down (the job is requeued and resumes from its checkpoint).
  virtual absl::Status KeepGoing() const = 0;
  // Records progress (step and a JSON object) and wakes watchers.
  virtual absl::Status Progress(int64_t step, const std::string& progress) = 0;
  // Records that a checkpoint for `step` is complete at `path` (after it is durably written).
  virtual absl::Status Checkpointed(int64_t step, const std::string& path) = 0;
  // A folder of this job's own for checkpoints (created on first use).
  virtual absl::StatusOr<std::string> CheckpointDir() = 0;
};

class JobRunner {
 public:
  virtual ~JobRunner() = default;
  // Runs `job` (its spec, and its checkpoint if it has one) to the end; returns the result JSON.
  // A failure's message becomes the job's reason.
  virtual absl::StatusOr<std::string> Run(const JobRecord& job, JobContext& context) = 0;
};

struct JobManagerOptions {
  std::vector<std::string> devices = {"cpu"};  // jobs name one of these
  int jobs_per_device = 1;
  int max_unfinished_per_tenant = 8;
  // <root>/<job id>/ holds a job's checkpoints; servers sharing a store must see one root (the
  // same path on shared storage) to resume each other's jobs.
  std::string checkpoint_root;
  std::string owner = "lensd";  // this server, unique among those sharing the store
  absl::Duration lease = absl::Seconds(30);
  absl::Duration heartbeat = absl::Milliseconds(250);  // lease renewal, cancel marks, polling
  // The models this server serves now; jobs of other models are left to other servers. Only
  // consulted for a shared store (a server alone runs, or fails, every job submitted to it).
  std::function<std::vector<std::string>()> served_models;
  // Shared store: called (on the heartbeat thread; keep it short) for a job another server
  // finished, once, when this server first sees it final (to load a lens it trained, say).
  std::function<void(const JobRecord&)> finished_elsewhere;
  // The nice value of the threads that run jobs (and of the compute threads they start): above
  // 0, jobs yield the CPU to serving when both want it (0 leaves them as the process is).
  int worker_nice = 0;
};

class JobManager {
 public:
  JobManager(JobStore* store, JobRunner* runner, JobManagerOptions options);
  ~JobManager();  // Shutdown()

  // Requeues jobs this server left running before it stopped and starts dispatching.
  absl::Status Start();
  // Stops dispatching, asks running jobs to stop (they go back to the queue at their last
  // checkpoint), and waits for them.
  void Shutdown();

  // Queues a job (id, tenant, kind, model, device, spec, num_steps set by the caller).
  // RESOURCE_EXHAUSTED when the tenant has too many unfinished jobs; INVALID_ARGUMENT for a
  // device not in the options. Returns the job as queued: the reply to a submit says QUEUED even
  // when a worker has already picked the job up.
  absl::StatusOr<JobRecord> Submit(JobRecord job);
  // Cancels a queued job at once and a running one at its next check (within a second, on
  // whichever server runs it).
  // NOT_FOUND for an unknown id (or one of another tenant unless `any_tenant`);
  // FAILED_PRECONDITION for a finished job.
  absl::Status Cancel(const std::string& id, const std::string& tenant, bool any_tenant);
  absl::StatusOr<JobRecord> Get(const std::string& id) const;
  absl::StatusOr<std::vector<JobRecord>> List(const JobFilter& filter) const;
  // Every tenant's jobs counted by state.
  absl::StatusOr<std::map<JobState, int64_t>> CountByState() const;

  // The job's change counter: bumped on every state, progress or checkpoint change.
  int64_t Version(const std::string& id) const;
  // Waits until the job's version exceeds `seen`, the deadline passes, or `stop()` says so;
  // returns the version then.
  int64_t WaitForChange(const std::string& id, int64_t seen, absl::Time deadline,
                        const std::function<bool()>& stop) const;
  // A counter bumped with every job's version (a change to any job), and the wait for it to
  // exceed `seen` (or the deadline, or shutdown, or `stop()`); returns the counter then.
  int64_t AnyVersion() const;
  int64_t WaitForAnyChange(int64_t seen, absl::Time deadline,
                           const std::function<bool()>& stop) const;

 private:
  class Context;
  void Work();
  // Claims a job for a free slot; false when none was claimable (or the store failed).
  bool ClaimOne(JobRecord* job);
  void RunOne(const JobRecord& job);
  // Renews the leases of the jobs running here, picks up cancel marks, notices jobs another
  // server took over, and (shared store) turns other servers' changes into versions.
  void Heartbeat();
  void RenewLeases();
  void PollChanges();
  void Bump(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> FreeDevices() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a run in the store, logging a write that failed.
  void Finish(const JobRecord& job, JobState state, const std::string& reason,
              const std::string& result);

  JobStore* store_;
  JobRunner* runner_;
  JobManagerOptions options_;
  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;  // signalled by Bump, submissions and shutdown
  absl::Mutex claim_mu_;           // one claim at a time, so that no device gets more jobs
  absl::Time last_claim_error_ ABSL_GUARDED_BY(claim_mu_) = absl::InfinitePast();
  std::map<std::string, int> running_per_device_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> cancel_ ABSL_GUARDED_BY(mu_);  // running ids -> cancel requested
  std::set<std::string> lost_ ABSL_GUARDED_BY(mu_);          // running ids another server took over
  std::map<std::string, int64_t> versions_ ABSL_GUARDED_BY(mu_);
  int64_t any_version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t submissions_ ABSL_GUARDED_BY(mu_) = 0;  // wakes idle workers at once
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  // Shared store: the newest change seen, and the change each recently changed job was at.
  int64_t last_change_ = 0;                      // heartbeat thread only
  std::map<std::string, int64_t> changes_seen_;  // heartbeat thread only
  std::vector<std::thread> workers_;
  std::thread heartbeat_;
};

}  // namespace lensd

#endif  // LENSD_CORE_JOBS_JOB_MANAGER_H_
