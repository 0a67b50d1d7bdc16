// Runs the job manager's jobs. Both kinds read and chunk the job's data (from under the data root,
// or inline) and shuffle it with the job's seed. "train" trains through the loaded model's
// ServedModel::TrainLens with progress and checkpoints reported to the job, writes the lens into
// <repository>/<model>/lenses/<name>/ and loads it, so that Decode and Generate can use it the
// moment the job succeeds. "eval" evaluates loaded lenses (ServedModel::EvaluateLenses) with
// progress per batch; its result holds tuned-lens's aggregate_metrics.json in bits per byte and
// the same in nats. "patch" runs an activation patching sweep (server/patching_job.h).
// Thread-safe (one Run per job thread).
#ifndef LENSD_SERVER_TRAINING_RUNNER_H_
#define LENSD_SERVER_TRAINING_RUNNER_H_

#include <string>

#include "core/eval_spec.h"
#include "core/jobs/job_manager.h"
#include "core/jobs/training_data.h"
#include "core/model_registry.h"
#include "core/training_spec.h"
#include "server/server_env.h"

namespace lensd::server {

class TrainingRunner : public JobRunner {
 public:
  TrainingRunner(ModelRegistry* registry, std::string repository, std::string data_root,
                 const Limits& limits)
      : registry_(registry),
        repository_(std::move(repository)),
        data_root_(std::move(data_root)),
        limits_(limits) {}

  absl::StatusOr<std::string> Run(const JobRecord& job, JobContext& context) override;

  // The job's data, chunked to `seq_len`: INVALID_ARGUMENT (file and line for malformed
  // files), PERMISSION_DENIED (outside the data root), NOT_FOUND.
  absl::StatusOr<ChunkedData> LoadData(const DataSpec& data, int64_t seq_len,
                                       const LoadedModel& model) const;

 private:
  absl::StatusOr<std::string> Train(const JobRecord& job, JobContext& context);
  absl::StatusOr<std::string> Evaluate(const JobRecord& job, JobContext& context);

  ModelRegistry* registry_;
  std::string repository_;
  std::string data_root_;
  Limits limits_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_TRAINING_RUNNER_H_
