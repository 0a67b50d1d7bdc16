// WatchJob's streams, served by one thread for all of them (not a thread per stream): each open
// watch gets the job's state at once and again after every change, until the job is final, the
// client cancels or its deadline passes, or the server shuts down. A tenant may have at most
// `max_per_tenant` watches open.
#ifndef LENSD_SERVER_JOB_WATCHES_H_
#define LENSD_SERVER_JOB_WATCHES_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/jobs/job_manager.h"
#include "lensd/v1/training.pb.h"
#include "server/call.h"

namespace lensd::server {

// The wire form of a job record.
void FillJob(const JobRecord& job, v1::Job* out);

class JobWatches {
 public:
  JobWatches(JobManager* jobs, int64_t max_per_tenant);
  // Ends every open watch UNAVAILABLE ("watch again") and joins the thread.
  ~JobWatches();
  JobWatches(const JobWatches&) = delete;
  JobWatches& operator=(const JobWatches&) = delete;

  // Takes over `call` (already admitted, the job visible to its tenant): writes the job now and
  // on every change. RESOURCE_EXHAUSTED (the call finished) when the tenant has the most open.
  void Watch(StreamCall<v1::Job>* call, const std::string& id, const std::string& tenant);
  int64_t open() const;

 private:
  struct Entry {
    std::string id;
    std::string tenant;
    int64_t sent = -1;  // the job version last written
  };
  // A job as read once for every watch of it in one pass (version, record).
  // The record is read only once some watch needs it.
  using Reads = std::map<std::string, std::pair<int64_t, std::optional<absl::StatusOr<JobRecord>>>>;
  // Writes the job if it changed since `entry.sent`; false ends the watch with `end` (OK: the
  // job is final). `reads` holds the jobs already read in this pass.
  bool Update(StreamCall<v1::Job>* call, Entry& entry, Reads& reads, absl::Status* end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the watch and finishes its call with `status`; nothing if it is already gone.
  void End(StreamCall<v1::Job>* call, const absl::Status& status);
  void Loop();

  JobManager* jobs_;
  const int64_t max_per_tenant_;
  mutable absl::Mutex mu_;
  std::map<StreamCall<v1::Job>*, Entry> open_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> per_tenant_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_JOB_WATCHES_H_
