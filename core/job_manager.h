// Runs training and evaluation jobs from the durable store: a queue served round robin across
// tenants, at most `jobs_per_device` running per device (so that jobs leave the device to
// interactive requests), a per-tenant cap on unfinished jobs, cancellation that reaches the
// running job, watchers woken on every change, and recovery after a restart (running jobs resume
// from their last checkpoint). What a job does is the JobRunner's business (the engine's).
// Thread-safe.
#ifndef LENSD_CORE_JOB_MANAGER_H_
#define LENSD_CORE_JOB_MANAGER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/job_store.h"

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
  std::string checkpoint_root;  // <root>/<job id>/ holds a job's checkpoints
};

class JobManager {
 public:
  JobManager(JobStore* store, JobRunner* runner, JobManagerOptions options);
  ~JobManager();  // Shutdown()

  // Requeues jobs left running by an earlier process and starts dispatching.
  absl::Status Start();
  // Stops dispatching, asks running jobs to stop (they go back to queued), and waits for them.
  void Shutdown();

  // Queues a job (id, tenant, kind, model, device, spec, num_steps set by the caller).
  // RESOURCE_EXHAUSTED when the tenant has too many unfinished jobs; INVALID_ARGUMENT for a
  // device not in the options. Returns the job as queued: the reply to a submit says QUEUED even
  // when a worker has already picked the job up.
  absl::StatusOr<JobRecord> Submit(JobRecord job);
  // Cancels a queued job at once and a running one at its next check (within a second).
  // NOT_FOUND for an unknown id (or one of another tenant unless `any_tenant`);
  // FAILED_PRECONDITION for a finished job.
  absl::Status Cancel(const std::string& id, const std::string& tenant, bool any_tenant);
  absl::StatusOr<JobRecord> Get(const std::string& id) const;
  absl::StatusOr<std::vector<JobRecord>> List(const JobFilter& filter) const;

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
  void RunOne(const JobRecord& job);
  void Bump(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next queued job whose device has a free slot, round robin over tenants.
  bool NextJob(JobRecord* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  JobStore* store_;
  JobRunner* runner_;
  JobManagerOptions options_;
  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;                        // signalled by Bump
  std::vector<std::string> queue_ ABSL_GUARDED_BY(mu_);  // queued job ids, oldest first
  std::map<std::string, int> running_per_device_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> cancel_ ABSL_GUARDED_BY(mu_);  // running ids -> cancel requested
  std::map<std::string, int64_t> versions_ ABSL_GUARDED_BY(mu_);
  int64_t any_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_tenant_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> workers_;
};

}  // namespace lensd

#endif  // LENSD_CORE_JOB_MANAGER_H_
