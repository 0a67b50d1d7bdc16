// lensd.v1.Training: lens-training jobs submitted, read, cancelled and watched. Jobs run in the
// JobManager (core/jobs/job_manager.h) with server/training_runner.h; store writes (fsync) run on
// the Background thread, and each WatchJob stream on a thread of its own, never on gRPC threads.
#ifndef LENSD_SERVER_TRAINING_SERVICE_H_
#define LENSD_SERVER_TRAINING_SERVICE_H_

#include <memory>

#include "lensd/v1/training.grpc.pb.h"
#include "server/call.h"
#include "server/job_watches.h"
#include "server/server_env.h"

namespace lensd::server {

class TrainingService final : public v1::Training::Service {
 public:
  // Registers every method as a raw callback (rpc_handlers.h).
  explicit TrainingService(const ServerEnv& env);
  ~TrainingService() override;  // ends the open watches

  void SubmitJob(UnaryCall* call, const v1::SubmitJobRequest* request, v1::Job* response);
  void GetJob(UnaryCall* call, const v1::GetJobRequest* request, v1::Job* response);
  void ListJobs(UnaryCall* call, const v1::ListJobsRequest* request,
                v1::ListJobsResponse* response);
  void CancelJob(UnaryCall* call, const v1::CancelJobRequest* request, v1::Job* response);
  void WatchJob(StreamCall<v1::Job>* call, const v1::WatchJobRequest* request);

 private:
  const ServerEnv& env_;
  std::unique_ptr<JobWatches> watches_;  // WatchJob's streams, one thread for all
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_TRAINING_SERVICE_H_
