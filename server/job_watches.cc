#include "server/job_watches.h"

#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace lensd::server {
namespace {

v1::JobState ToProto(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return v1::JOB_STATE_QUEUED;
    case JobState::kRunning:
      return v1::JOB_STATE_RUNNING;
    case JobState::kSucceeded:
      return v1::JOB_STATE_SUCCEEDED;
    case JobState::kFailed:
      return v1::JOB_STATE_FAILED;
    case JobState::kCancelled:
      return v1::JOB_STATE_CANCELLED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

}  // namespace

void FillJob(const JobRecord& j, v1::Job* out) {
  out->Clear();
  out->set_id(j.id);
  out->set_tenant(j.tenant);
  out->set_kind(j.kind);
  out->set_model(j.model);
  out->set_state(ToProto(j.state));
  out->set_reason(j.reason);
  out->set_step(j.step);
  out->set_num_steps(j.num_steps);
  const nlohmann::json progress = nlohmann::json::parse(j.progress, nullptr, false);
  if (progress.is_object()) {
    for (const auto& loss : progress.value("layer_losses", nlohmann::json::array())) {
      out->add_layer_losses(loss.get<double>());
    }
    out->set_num_steps(progress.value("num_steps", j.num_steps));
    out->set_tokens_per_second(progress.value("tokens_per_second", 0.0));
    out->set_eta_seconds(progress.value("eta_seconds", 0.0));
  }
  out->set_result_json(j.result);
  out->set_spec_json(j.spec);
  out->set_created(j.created);
  out->set_started(j.started);
  out->set_finished(j.finished);
  out->set_server(j.owner);
}

JobWatches::JobWatches(JobManager* jobs, int64_t max_per_tenant)
    : jobs_(jobs), max_per_tenant_(max_per_tenant), thread_([this] { Loop(); }) {}

JobWatches::~JobWatches() {
  stopping_ = true;
  thread_.join();
  std::vector<StreamCall<v1::Job>*> calls;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [call, entry] : open_) calls.push_back(call);
  }
  for (auto* call : calls) {
    End(call, absl::UnavailableError("the server is shutting down; watch again"));
  }
}

int64_t JobWatches::open() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(open_.size());
}

void JobWatches::Watch(StreamCall<v1::Job>* call, const std::string& id,
                       const std::string& tenant) {
  if (stopping_) {
    call->Done(absl::UnavailableError("the server is shutting down; watch again"));
    return;
  }
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    const auto it = per_tenant_.find(tenant);
    if (it != per_tenant_.end() && it->second >= max_per_tenant_) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("tenant ", tenant, " has ", it->second, " watches open (the limit is ",
                       max_per_tenant_, ", --max_watches_per_tenant); close some"));
    } else {
      ++per_tenant_[tenant];  // counted from here; End gives it back
    }
  }
  if (!refused.ok()) {
    call->Done(refused);
    return;
  }
  // The hook first: once the watch is in open_, the loop may end it (and the call may be gone).
  // A client already gone runs the hook now, which finds nothing to end; the first write below
  // then fails CANCELLED and ends the watch.
  call->OnCancelled([this, call] {
    End(call, absl::Now() >= call->info().deadline()
                  ? absl::DeadlineExceededError("the watch's deadline passed")
                  : absl::CancelledError("the client cancelled the watch"));
  });
  absl::Status end;
  bool going = false;
  {
    absl::MutexLock lock(&mu_);
    Reads reads;
    going = Update(call, open_[call] = Entry{id, tenant, -1}, reads, &end);
  }
  if (!going) End(call, end);
}

bool JobWatches::Update(StreamCall<v1::Job>* call, Entry& entry, Reads& reads, absl::Status* end) {
  auto read = reads.find(entry.id);
  if (read == reads.end()) {
    // The version first: a change after it is seen in the next pass, never lost.
    const int64_t version = jobs_->Version(entry.id);
    read = reads.emplace(entry.id, std::make_pair(version, std::nullopt)).first;
  }
  const int64_t version = read->second.first;
  if (version <= entry.sent) return true;
  if (!read->second.second.has_value()) read->second.second = jobs_->Get(entry.id);
  const absl::StatusOr<JobRecord>& job = *read->second.second;
  if (!job.ok()) {
    *end = job.status();
    return false;
  }
  v1::Job message;
  FillJob(*job, &message);
  *end = call->Write(message);
  entry.sent = version;
  return end->ok() && !IsFinal(job->state);
}

void JobWatches::End(StreamCall<v1::Job>* call, const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    const auto it = open_.find(call);
    if (it == open_.end()) return;
    if (--per_tenant_[it->second.tenant] <= 0) per_tenant_.erase(it->second.tenant);
    open_.erase(it);
  }
  call->Done(status);
}

void JobWatches::Loop() {
  int64_t seen = jobs_->AnyVersion();
  // No lock of ours inside the job manager's wait: the loop holds ours while it asks the manager.
  const auto stopping = [this] { return stopping_.load(); };
  while (!stopping()) {
    seen = jobs_->WaitForAnyChange(seen, absl::InfiniteFuture(), stopping);
    std::vector<std::pair<StreamCall<v1::Job>*, absl::Status>> ended;
    {
      absl::MutexLock lock(&mu_);
      Reads reads;  // each watched job read once per pass, however many watch it
      for (auto& [call, entry] : open_) {
        absl::Status end;
        if (!Update(call, entry, reads, &end)) ended.emplace_back(call, end);
      }
    }
    for (const auto& [call, status] : ended) End(call, status);
  }
}

}  // namespace lensd::server
