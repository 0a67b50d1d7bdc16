// What a lens-training job is asked to do, with tuned-lens's defaults (tuned-lens.md §2.3), as
// the job store keeps it (JSON) and as the engine runs it. Torch-free.
#ifndef LENSD_CORE_TRAINING_SPEC_H_
#define LENSD_CORE_TRAINING_SPEC_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace lensd {

// Where the text comes from: a file under the server's data root, or texts given inline.
struct DataSpec {
  std::string path;                 // .jsonl, .txt, .u16 or .u32, relative to the data root
  std::string text_field = "text";  // of .jsonl lines
  std::vector<std::string> texts;   // inline documents (when path is empty)

  // INVALID_ARGUMENT unless exactly one of path and texts is given.
  absl::Status Validate() const;
  nlohmann::ordered_json ToJson() const;
  static absl::StatusOr<DataSpec> FromJson(const nlohmann::json& data);
};

// A lens folder name: 1-128 letters, digits, '-', '_' or '.', not starting with '.', not "logit".
bool IsValidLensName(const std::string& name);

struct TrainLensSpec {
  std::string lens_name;    // the folder written under <repository>/<model>/lenses/
  std::string loss = "kl";  // "kl" (KL(p_final || q_lens)) or "ce" (next-token cross-entropy)
  std::optional<int64_t> token_shift;  // default 0 for kl, 1 for ce
  int64_t num_steps = 250;
  int64_t tokens_per_step = 1 << 18;
  int64_t seq_len = 2048;
  int64_t micro_batch = 1;  // sequences per forward pass
  double lr_scale = 1.0;
  double momentum = 0.9;
  double weight_decay = 1e-3;
  bool bias_only = false;
  std::string warm_start;         // a lens of the model to start from ("" = zero translators)
  uint64_t seed = 42;             // data shuffling
  int64_t checkpoint_every = 25;  // steps between checkpoints
  // "auto" (bfloat16 autocast on a GPU, float32 on the CPU), "bfloat16" (autocast on any device,
  // as tuned-lens's loop does) or "float32".
  std::string precision = "auto";
  DataSpec data;

  // tokens_per_step / seq_len sequences per step, in ceil(that / micro_batch) micro-batches.
  int64_t grad_acc_steps() const;
  // Sequences the whole run consumes.
  int64_t sequences_needed() const;

  std::string ToJson() const;
  // INVALID_ARGUMENT naming the field for a value out of range or of the wrong type.
  static absl::StatusOr<TrainLensSpec> FromJson(const std::string& json);
  absl::Status Validate() const;
};

// Progress of a training run, reported after every optimizer step.
struct TrainingProgress {
  int64_t step = 0;
  int64_t num_steps = 0;
  std::vector<double> layer_losses;  // mean over the step's micro-batches, nats
  double tokens_per_second = 0;
  double eta_seconds = 0;
};

// A training run as the engine executes it (ServedModel::TrainLens).
struct TrainLensRun {
  TrainLensSpec spec;
  int64_t seq_len = 0;                 // chunk length of `tokens`
  const std::vector<int32_t>* tokens;  // chunks, row-major
  std::vector<int64_t> order;          // chunk indices in training order
  std::string resume_from;             // a checkpoint file, or "" to start fresh
  std::string checkpoint_dir;          // where checkpoints go
  std::string output_dir;              // the lens folder to write (must not exist)
  std::string base_model;              // config.json base_model_name_or_path of the lens
  std::function<absl::Status()> keep_going;
  std::function<void(const TrainingProgress&)> on_step;
  std::function<absl::Status(int64_t step, const std::string& path)> on_checkpoint;
};

struct TrainLensResult {
  int64_t steps = 0;
  int64_t tokens = 0;             // trained on by the whole job (every segment, when it resumed)
  double seconds = 0;             // training time of the whole job
  int64_t resumed_from_step = 0;  // the checkpoint's step it resumed from (0: it did not)
  std::vector<double> final_layer_losses;
};

}  // namespace lensd

#endif  // LENSD_CORE_TRAINING_SPEC_H_
