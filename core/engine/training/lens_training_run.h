// A whole lens-training run: the trainer fed micro-batches in the run's data order, progress
// after every step, a checkpoint every `checkpoint_every` steps (and at the end) from which a run
// resumes bit-for-bit, and the trained lens written in tuned-lens format. Called by
// ServedModel::TrainLens on a job thread.
#ifndef LENSD_CORE_ENGINE_TRAINING_LENS_TRAINING_RUN_H_
#define LENSD_CORE_ENGINE_TRAINING_LENS_TRAINING_RUN_H_

#include "absl/status/statusor.h"
#include "core/engine/lens/lens.h"
#include "core/engine/model/causal_lm.h"
#include "core/training_spec.h"

namespace lensd::engine {

// INVALID_ARGUMENT up front when the data cannot fill the requested steps (naming both counts)
// or the chunks are not spec.seq_len long; CANCELLED / ABORTED as run.keep_going says; the
// errors of checkpoint and lens writing (RESOURCE_EXHAUSTED for a full disk) naming the path.
absl::StatusOr<TrainLensResult> RunLensTraining(const CausalLm& model, const TunedLens* warm_start,
                                                const TrainLensRun& run);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_TRAINING_LENS_TRAINING_RUN_H_
