// Runs lens-training jobs for the job manager: reads and chunks the job's data (from under the
// data root, or inline), shuffles it with the job's seed, trains through the loaded model's
// ServedModel::TrainLens with progress and checkpoints reported to the job, writes the lens into
// <repository>/<model>/lenses/<name>/ and loads it, so that Decode and Generate can use it the
// moment the job succeeds.
// Thread-safe (one Run per job thread).
#ifndef LENSD_SERVER_TRAINING_RUNNER_H_
#define LENSD_SERVER_TRAINING_RUNNER_H_

#include <string>

#include "core/job_manager.h"
#include "core/model_registry.h"
#include "core/training_data.h"
#include "core/training_spec.h"

namespace lensd::server {

class TrainingRunner : public JobRunner {
 public:
  TrainingRunner(ModelRegistry* registry, std::string repository, std::string data_root)
      : registry_(registry), repository_(std::move(repository)), data_root_(std::move(data_root)) {}

  absl::StatusOr<std::string> Run(const JobRecord& job, JobContext& context) override;

  // The job's data, chunked to spec.seq_len: INVALID_ARGUMENT (file and line for malformed
  // files), PERMISSION_DENIED (outside the data root), NOT_FOUND.
  absl::StatusOr<ChunkedData> LoadData(const TrainLensSpec& spec, const LoadedModel& model) const;

 private:
  ModelRegistry* registry_;
  std::string repository_;
  std::string data_root_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_TRAINING_RUNNER_H_
