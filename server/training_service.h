// lensd.v1.Training: lens-training jobs submitted, read, cancelled and watched. Jobs run in the
// JobManager (core/job_manager.h) with server/training_runner.h; store writes (fsync) run on the
// Background thread, and each WatchJob stream on a thread of its own, never on gRPC threads.
#ifndef LENSD_SERVER_TRAINING_SERVICE_H_
#define LENSD_SERVER_TRAINING_SERVICE_H_

#include <atomic>
#include <list>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "lensd/v1/training.grpc.pb.h"
#include "server/server_env.h"

namespace lensd::server {

class TrainingService final : public v1::Training::CallbackService {
 public:
  explicit TrainingService(const ServerEnv& env) : env_(env) {}
  ~TrainingService() override;  // joins the watch threads

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerWriteReactor<v1::Job>* WatchJob(grpc::CallbackServerContext* context,
                                              const v1::WatchJobRequest* request) override;

 private:
  struct Watcher {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  const ServerEnv& env_;
  absl::Mutex mu_;
  std::list<Watcher> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_TRAINING_SERVICE_H_
