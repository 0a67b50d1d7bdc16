#include "core/jobs/job_manager.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iterator>

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
    if (manager_->lost_.count(job_.id) > 0) {
      return absl::AbortedError(
          absl::StrCat("job ", job_.id, " was taken over by another server (its lease ran out)"));
    }
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
    return Held(manager_->store_->SetProgress(job_.id, manager_->options_.owner, step, progress));
  }
  absl::Status Checkpointed(int64_t step, const std::string& path) override {
    return Held(manager_->store_->SetCheckpoint(job_.id, manager_->options_.owner, step, path));
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
  // After a holder's write: a job another server took over stops here (KeepGoing says so).
  absl::Status Held(const absl::Status& written) {
    absl::MutexLock lock(&manager_->mu_);
    if (absl::IsFailedPrecondition(written)) manager_->lost_.insert(job_.id);
    if (written.ok()) manager_->Bump(job_.id);
    return written;
  }

  JobManager* manager_;
  JobRecord job_;
};

JobManager::JobManager(JobStore* store, JobRunner* runner, JobManagerOptions options)
    : store_(store), runner_(runner), options_(std::move(options)) {}

JobManager::~JobManager() { Shutdown(); }

absl::Status JobManager::Start() {
  LENSD_ASSIGN_OR_RETURN(const std::vector<std::string> unfinished,
                         store_->Recover(options_.owner));
  for (const std::string& id : unfinished) {
    absl::StatusOr<JobRecord> job = store_->Get(id);
    if (job.ok() && job->cancel_requested) {
      LogIfError(store_->CancelIfQueued(id, "cancelled while the server was down").status(),
                 "job store: recording a cancel");
    }
  }
  if (store_->shared()) {
    LENSD_ASSIGN_OR_RETURN(last_change_, store_->LastChange());
  }
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("the job manager is already started");
  started_ = true;
  const size_t workers = options_.devices.size() * static_cast<size_t>(options_.jobs_per_device);
  for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
  heartbeat_ = std::thread([this] { Heartbeat(); });
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
  if (heartbeat_.joinable()) heartbeat_.join();
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
  job.owner.clear();
  LENSD_RETURN_IF_ERROR(store_->Insert(job));
  absl::MutexLock lock(&mu_);
  ++submissions_;
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
  LENSD_ASSIGN_OR_RETURN(const bool was_queued,
                         store_->CancelIfQueued(id, "cancelled before it ran"));
  absl::MutexLock lock(&mu_);
  // Running here: it stops at its next check. Running elsewhere: its server sees the mark at
  // its next heartbeat.
  if (!was_queued && cancel_.count(id) > 0) cancel_[id] = true;
  Bump(id);
  return absl::OkStatus();
}

absl::StatusOr<JobRecord> JobManager::Get(const std::string& id) const { return store_->Get(id); }

absl::StatusOr<std::vector<JobRecord>> JobManager::List(const JobFilter& filter) const {
  return store_->List(filter);
}

absl::StatusOr<std::map<JobState, int64_t>> JobManager::CountByState() const {
  return store_->CountByState();
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

std::vector<std::string> JobManager::FreeDevices() const {
  std::vector<std::string> free;
  for (const std::string& d : options_.devices) {
    const auto it = running_per_device_.find(d);
    if (it == running_per_device_.end() || it->second < options_.jobs_per_device) {
      free.push_back(d);
    }
  }
  return free;
}

bool JobManager::ClaimOne(JobRecord* job) {
  absl::MutexLock claim(&claim_mu_);
  ClaimOptions o;
  o.owner = options_.owner;
  o.lease = options_.lease;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    o.devices = FreeDevices();
  }
  if (o.devices.empty()) return false;
  if (store_->shared() && options_.served_models) o.models = options_.served_models();
  absl::StatusOr<std::optional<JobRecord>> claimed = store_->Claim(o);
  if (!claimed.ok()) {
    // Every idle worker asks each heartbeat: say it once a minute while the store is down.
    if (absl::Now() - last_claim_error_ > absl::Minutes(1)) {
      last_claim_error_ = absl::Now();
      LogIfError(claimed.status(), "job store: claiming a job");
    }
    return false;
  }
  if (!claimed->has_value()) return false;
  *job = **std::move(claimed);
  absl::MutexLock lock(&mu_);
  ++running_per_device_[job->device];
  ++running_;
  cancel_[job->id] = job->cancel_requested;
  Bump(job->id);
  return true;
}

void JobManager::Work() {
  if (options_.worker_nice != 0) {
    // Linux nice values are per thread; the compute threads a job's work starts inherit it.
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    if (setpriority(PRIO_PROCESS, tid, options_.worker_nice) != 0) {
      LogIfError(absl::Status(absl::ErrnoToStatusCode(errno),
                              absl::StrCat("setpriority: ", std::strerror(errno))),
                 absl::StrCat("jobs: running jobs at nice ", options_.worker_nice));
    }
  }
  int64_t seen = 0;
  while (true) {
    JobRecord job;
    if (!ClaimOne(&job)) {
      // Nothing to run: look again after a submission here, or a heartbeat (other servers'
      // submissions, expired leases), or stop.
      absl::MutexLock lock(&mu_);
      const absl::Time until = absl::Now() + options_.heartbeat;
      while (!stopping_ && submissions_ == seen && absl::Now() < until) {
        changed_.WaitWithDeadline(&mu_, until);
      }
      if (stopping_) return;
      seen = submissions_;
      continue;
    }
    RunOne(job);
    absl::MutexLock lock(&mu_);
    --running_per_device_[job.device];
    --running_;
    cancel_.erase(job.id);
    lost_.erase(job.id);
    Bump(job.id);
  }
}

void JobManager::Finish(const JobRecord& job, JobState state, const std::string& reason,
                        const std::string& result) {
  LogIfError(store_->Finish(job.id, options_.owner, state, reason, result),
             absl::StrCat("job store: ending job ", job.id, " as ", JobStateName(state)));
}

void JobManager::RunOne(const JobRecord& job) {
  if (job.cancel_requested) {  // cancelled while its server was down, then taken over
    Finish(job, JobState::kCancelled, "cancelled while its server was down", "");
    return;
  }
  Context context(this, job);
  const absl::StatusOr<std::string> result = runner_->Run(job, context);
  bool cancelled = false;
  bool stopping = false;
  bool lost = false;
  {
    absl::MutexLock lock(&mu_);
    cancelled = cancel_[job.id];
    stopping = stopping_;
    lost = lost_.count(job.id) > 0;
  }
  if (lost) {
    LogIfError(absl::AbortedError(absl::StrCat("job ", job.id,
                                               " was taken over by another "
                                               "server; this run's end is not recorded")),
               "jobs");
    return;
  }
  if (result.ok()) {
    Finish(job, JobState::kSucceeded, "", *result);
    return;
  }
  const absl::Status& s = result.status();
  if (cancelled) {
    Finish(job, JobState::kCancelled, "cancelled while running", "");
  } else if (stopping && absl::IsAborted(s)) {
    Finish(job, JobState::kQueued, std::string(s.message()), "");
  } else {
    Finish(job, JobState::kFailed, std::string(s.message()), "");
  }
}

void JobManager::Heartbeat() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // While stopping, leases are still renewed until the running jobs have handed back.
      const absl::Time until = absl::Now() + options_.heartbeat;
      while (!(stopping_ && running_ == 0) && absl::Now() < until) {
        changed_.WaitWithDeadline(&mu_, until);
      }
      if (stopping_ && running_ == 0) return;
    }
    RenewLeases();
    if (store_->shared()) PollChanges();
  }
}

void JobManager::RenewLeases() {
  std::set<std::string> running;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, cancel] : cancel_) running.insert(id);
  }
  if (running.empty()) return;
  absl::StatusOr<std::vector<HeldJob>> held = store_->Renew(options_.owner, options_.lease);
  if (!held.ok()) {
    LogIfError(held.status(), "job store: renewing leases");
    return;  // the jobs go on; a write after the lease ran out finds out
  }
  absl::MutexLock lock(&mu_);
  for (const HeldJob& h : *held) {
    running.erase(h.id);
    const auto it = cancel_.find(h.id);
    if (h.cancel_requested && it != cancel_.end() && !it->second) {
      it->second = true;
      Bump(h.id);
    }
  }
  // Still running here but no longer held: another server took it over. (A job whose run ended
  // since the snapshot has left cancel_.)
  for (const std::string& id : running) {
    if (cancel_.count(id) > 0) lost_.insert(id);
  }
}

void JobManager::PollChanges() {
  // Ask again from a little before the newest change seen: a write may commit a moment after a
  // later-numbered one.
  constexpr int64_t kOverlap = 64;
  absl::StatusOr<std::vector<JobChange>> changes =
      store_->ChangedSince(std::max<int64_t>(0, last_change_ - kOverlap));
  if (!changes.ok()) {
    LogIfError(changes.status(), "job store: reading other servers' changes");
    return;
  }
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    for (const JobChange& c : *changes) {
      int64_t& seen = changes_seen_[c.id];
      if (c.change > seen) {
        seen = c.change;
        Bump(c.id);
        changed.push_back(c.id);
      }
      last_change_ = std::max(last_change_, c.change);
    }
    for (auto it = changes_seen_.begin(); it != changes_seen_.end();) {
      it = it->second <= last_change_ - kOverlap ? changes_seen_.erase(it) : std::next(it);
    }
  }
  if (!options_.finished_elsewhere) return;
  for (const std::string& id : changed) {
    absl::StatusOr<JobRecord> job = store_->Get(id);
    if (job.ok() && IsFinal(job->state) && job->owner != options_.owner && !job->owner.empty()) {
      options_.finished_elsewhere(*job);
    }
  }
}

}  // namespace lensd
