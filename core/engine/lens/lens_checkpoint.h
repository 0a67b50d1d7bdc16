// Training checkpoints: everything a lens-training job needs to continue exactly where it
// stopped between two optimizer steps — translators, momentum buffers, the step and the next data
// sequence — in one .safetensors file (tensors "weight.<l>", "bias.<l>",
// "weight_momentum.<l>", "bias_momentum.<l>"; the counters in its metadata), written atomically.
#ifndef LENSD_CORE_ENGINE_LENS_LENS_CHECKPOINT_H_
#define LENSD_CORE_ENGINE_LENS_LENS_CHECKPOINT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/engine/training/lens_trainer.h"

namespace lensd::engine {

struct TrainingCheckpoint {
  LensTrainerState state;
  int64_t next_sequence = 0;  // index into the job's shuffled data order
  int64_t elapsed_us = 0;     // training time of the job so far, over every resumed segment
};

// The errors of WriteFileAtomically (RESOURCE_EXHAUSTED for a full disk, ...), naming `path`.
absl::Status SaveTrainingCheckpoint(const TrainingCheckpoint& checkpoint, const std::string& path);
// INVALID_ARGUMENT naming the file for anything that is not a lensd training checkpoint.
absl::StatusOr<TrainingCheckpoint> LoadTrainingCheckpoint(const std::string& path);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_LENS_CHECKPOINT_H_
