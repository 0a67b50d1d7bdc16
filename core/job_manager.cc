#include "core/job_manager.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/durable_file.h"
#include "core/log_status.h"
#include "core/status_macros.h"

namespace lensd {

class JobManager::Context : public JobContext {
 public:
  Context(JobManager* manager, const JobRecord& job) : manager_(manager), job_(job) {}

  absl::Status KeepGoing() const override {
    absl::MutexLock lock(&manager_->mu_);
    const auto it = manager_->cancel_.find(job_.id);
    if (it != manager_->cancel_.end() && it->second) {
      return absl::CancelledError(absl::StrCat("job ", job_.id, " was cancelled"));
    }
    if (manager_->stopping_) {
      return absl::AbortedError("the server is shutting down; the job will resume");
    }
    return absl::OkStatus();
  }
  absl::Status Progress(int64_t step, const std::string& progress) override {
    LENSD_RETURN_IF_ERROR(manager_->store_->SetProgress(job_.id, step, progress));
    absl::MutexLock lock(&manager_->mu_);
    manager_->Bump(job_.id);
    return absl::OkStatus();
  }
  absl::Status Checkpointed(int64_t step, const std::string& path) override {
    LENSD_RETURN_IF_ERROR(manager_->store_->SetCheckpoint(job_.id, step, path));
    absl::MutexLock lock(&manager_->mu_);
    manager_->Bump(job_.id);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> CheckpointDir() override {
    if (manager_->options_.checkpoint_root.empty()) {
      return absl::FailedPreconditionError("this server keeps no checkpoints (no job folder)");
    }
    std::string dir =
        (std::filesystem::path(manager_->options_.checkpoint_root) / job_.id).string();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return ErrnoStatus(ec.value(), "create", dir);
    return dir;
  }

 private:
  JobManager* manager_;
  JobRecord job_;
};

JobManager::JobManager(JobStore* store, JobRunner* runner, JobManagerOptions options)
    : store_(store), runner_(runner), options_(std::move(options)) {}

JobManager::~JobManager() { Shutdown(); }

absl::Status JobManager::Start() {
  LENSD_ASSIGN_OR_RETURN(const std::vector<std::string> unfinished, store_->Recover());
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("the job manager is already started");
  started_ = true;
  for (const std::string& id : unfinished) {
    absl::StatusOr<JobRecord> job = store_->Get(id);
    if (!job.ok()) continue;
    if (job->cancel_requested) {
      LogIfError(store_->SetState(id, JobState::kCancelled, "cancelled while the server was down"),
                 "job store: recording a cancel");
      continue;
    }
    queue_.push_back(id);
  }
  const size_t workers = options_.devices.size() * static_cast<size_t>(options_.jobs_per_device);
  for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
  return absl::OkStatus();
}

void JobManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    changed_.SignalAll();
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

void JobManager::Bump(const std::string& id) {
  ++versions_[id];
  ++any_version_;
  changed_.SignalAll();
}

absl::StatusOr<JobRecord> JobManager::Submit(JobRecord job) {
  bool known = false;
  for (const std::string& d : options_.devices) known = known || d == job.device;
  if (!known) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: \"", job.device, "\" runs no jobs on this server"));
  }
  JobFilter filter;
  filter.tenant = job.tenant;
  filter.limit = 100000;
  LENSD_ASSIGN_OR_RETURN(const std::vector<JobRecord> mine, store_->List(filter));
  int unfinished = 0;
  for (const JobRecord& j : mine) unfinished += IsFinal(j.state) ? 0 : 1;
  if (unfinished >= options_.max_unfinished_per_tenant) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant ", job.tenant, " has ", unfinished, " unfinished jobs (the limit is ",
                     options_.max_unfinished_per_tenant, "); wait for one or cancel one"));
  }
  job.state = JobState::kQueued;
  if (job.created <= 0) job.created = absl::ToUnixMicros(absl::Now()) / 1e6;
  LENSD_RETURN_IF_ERROR(store_->Insert(job));
  absl::MutexLock lock(&mu_);
  queue_.push_back(job.id);
  Bump(job.id);
  return job;
}

absl::Status JobManager::Cancel(const std::string& id, const std::string& tenant, bool any_tenant) {
  LENSD_ASSIGN_OR_RETURN(const JobRecord job, store_->Get(id));
  if (!any_tenant && job.tenant != tenant) {
    return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  }
  if (IsFinal(job.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " already ", JobStateName(job.state)));
  }
  LENSD_RETURN_IF_ERROR(store_->RequestCancel(id));
  absl::MutexLock lock(&mu_);
  const auto queued = std::find(queue_.begin(), queue_.end(), id);
  if (queued != queue_.end()) {
    queue_.erase(queued);
    LENSD_RETURN_IF_ERROR(store_->SetState(id, JobState::kCancelled, "cancelled before it ran"));
  } else {
    cancel_[id] = true;
  }
  Bump(id);
  return absl::OkStatus();
}

absl::StatusOr<JobRecord> JobManager::Get(const std::string& id) const { return store_->Get(id); }

absl::StatusOr<std::vector<JobRecord>> JobManager::List(const JobFilter& filter) const {
  return store_->List(filter);
}

int64_t JobManager::Version(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  const auto it = versions_.find(id);
  return it == versions_.end() ? 0 : it->second;
}

int64_t JobManager::WaitForChange(const std::string& id, int64_t seen, absl::Time deadline,
                                  const std::function<bool()>& stop) const {
  absl::MutexLock lock(&mu_);
  const auto version = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto it = versions_.find(id);
    return it == versions_.end() ? int64_t{0} : it->second;
  };
  while (version() <= seen && absl::Now() < deadline && !stopping_ && !(stop && stop())) {
    // Short waits, so that `stop` (a client gone) is noticed without a wake-up of its own.
    changed_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + absl::Milliseconds(100)));
  }
  return version();
}

int64_t JobManager::AnyVersion() const {
  absl::MutexLock lock(&mu_);
  return any_version_;
}

int64_t JobManager::WaitForAnyChange(int64_t seen, absl::Time deadline,
                                     const std::function<bool()>& stop) const {
  absl::MutexLock lock(&mu_);
  while (any_version_ <= seen && absl::Now() < deadline && !stopping_ && !(stop && stop())) {
    changed_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + absl::Milliseconds(100)));
  }
  return any_version_;
}

bool JobManager::NextJob(JobRecord* job) {
  // Round robin over tenants: the oldest job of the first tenant after the one served last.
  std::map<std::string, size_t> first_of_tenant;
  std::vector<std::string> stale;
  for (size_t i = 0; i < queue_.size(); ++i) {
    absl::StatusOr<JobRecord> j = store_->Get(queue_[i]);
    if (!j.ok()) {
      stale.push_back(queue_[i]);
      continue;
    }
    if (running_per_device_[j->device] >= options_.jobs_per_device) continue;
    first_of_tenant.emplace(j->tenant, i);
  }
  for (const std::string& id : stale) queue_.erase(std::find(queue_.begin(), queue_.end(), id));
  if (first_of_tenant.empty()) return false;
  auto it = first_of_tenant.upper_bound(last_tenant_);
  if (it == first_of_tenant.end()) it = first_of_tenant.begin();
  const std::string id = queue_[it->second];
  absl::StatusOr<JobRecord> j = store_->Get(id);
  if (!j.ok()) return false;
  queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(it->second));
  last_tenant_ = it->first;
  *job = *std::move(j);
  return true;
}

void JobManager::Work() {
  while (true) {
    JobRecord job;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && !NextJob(&job)) {
        changed_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
      }
      if (stopping_) return;
      ++running_per_device_[job.device];
      ++running_;
      cancel_[job.id] = false;
    }
    RunOne(job);
    absl::MutexLock lock(&mu_);
    --running_per_device_[job.device];
    --running_;
    cancel_.erase(job.id);
    Bump(job.id);
  }
}

void JobManager::RunOne(const JobRecord& queued) {
  if (!store_->SetState(queued.id, JobState::kRunning, "").ok()) return;
  {
    absl::MutexLock lock(&mu_);
    Bump(queued.id);
  }
  // The record as stored now (its checkpoint may be newer than the queued copy).
  const JobRecord job = store_->Get(queued.id).value_or(queued);
  Context context(this, job);
  const absl::StatusOr<std::string> result = runner_->Run(job, context);
  if (result.ok()) {
    LogIfError(store_->SetResult(job.id, *result), "job store: recording a job's result");
    LogIfError(store_->SetState(job.id, JobState::kSucceeded, ""), "job store: recording success");
    return;
  }
  const absl::Status& s = result.status();
  bool cancelled = false;
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    cancelled = cancel_[job.id];
    stopping = stopping_;
  }
  if (cancelled) {
    LogIfError(store_->SetState(job.id, JobState::kCancelled, "cancelled while running"),
               "job store: recording a cancel");
  } else if (stopping && absl::IsAborted(s)) {
    LogIfError(store_->SetState(job.id, JobState::kQueued, std::string(s.message())),
               "job store: requeueing a job");
  } else {
    LogIfError(store_->SetState(job.id, JobState::kFailed, std::string(s.message())),
               "job store: recording a failure");
  }
}

}  // namespace lensd
