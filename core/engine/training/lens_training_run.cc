#include "core/engine/training/lens_training_run.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/engine/lens/lens_checkpoint.h"
#include "core/engine/lens/lens_writer.h"
#include "core/engine/model/device.h"
#include "core/engine/model/torch_errors.h"
#include "core/engine/training/lens_trainer.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

using Clock = std::chrono::steady_clock;

LensTrainingOptions OptionsOf(const TrainLensSpec& spec, const at::Device& device) {
  LensTrainingOptions o;
  o.loss = spec.loss == "ce" ? LensLoss::kCrossEntropy : LensLoss::kKl;
  o.token_shift = spec.token_shift;
  o.num_steps = spec.num_steps;
  o.grad_acc_steps = spec.grad_acc_steps();
  o.lr_scale = spec.lr_scale;
  o.momentum = spec.momentum;
  o.weight_decay = spec.weight_decay;
  o.bias_only = spec.bias_only;
  o.bf16_autocast = spec.precision == "bfloat16" ||
                    (spec.precision == "auto" && (device.is_cuda() || CpuAutoUsesBf16()));
  return o;
}

// Sequences order[first .. first + count) of the chunked data as a [count, seq_len] tensor.
at::Tensor Gather(const TrainLensRun& run, int64_t first, int64_t count) {
  at::Tensor out = at::empty({count, run.seq_len}, at::kInt);
  auto* dst = out.data_ptr<int32_t>();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t chunk = run.order[static_cast<size_t>(first + i)];
    std::memcpy(dst + i * run.seq_len, run.tokens->data() + chunk * run.seq_len,
                static_cast<size_t>(run.seq_len) * sizeof(int32_t));
  }
  return out.to(at::kLong);
}

std::string CheckpointPath(const TrainLensRun& run, int64_t step) {
  return (std::filesystem::path(run.checkpoint_dir) / absl::StrCat("step-", step, ".safetensors"))
      .string();
}

}  // namespace

absl::StatusOr<TrainLensResult> RunLensTraining(const CausalLm& model, const TunedLens* warm_start,
                                                const TrainLensRun& run) {
  const TrainLensSpec& spec = run.spec;
  LENSD_RETURN_IF_ERROR(spec.Validate());
  if (run.tokens == nullptr || run.seq_len != spec.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len: the data is chunked to ", run.seq_len,
                                                   " tokens, not ", spec.seq_len));
  }
  const auto available = static_cast<int64_t>(run.order.size());
  if (available < spec.sequences_needed()) {
    // tuned-lens #113: the loop used to stop silently when the data ran out.
    return absl::InvalidArgumentError(absl::StrCat(
        "data: ", available, " sequences of ", spec.seq_len, " tokens cannot fill ", spec.num_steps,
        " steps of ", spec.grad_acc_steps() * spec.micro_batch, " sequences (",
        spec.sequences_needed(), " needed); give more data or fewer steps"));
  }
  LENSD_ASSIGN_OR_RETURN(std::unique_ptr<LensTrainer> trainer,
                         LensTrainer::Create(model, OptionsOf(spec, model.device()), warm_start));
  int64_t next = 0;
  TrainLensResult result;
  double earlier_seconds = 0;  // of the segments before a resume
  if (!run.resume_from.empty()) {
    LENSD_ASSIGN_OR_RETURN(TrainingCheckpoint checkpoint, LoadTrainingCheckpoint(run.resume_from));
    LENSD_RETURN_IF_ERROR(trainer->Restore(checkpoint.state));
    next = checkpoint.next_sequence;
    earlier_seconds = static_cast<double>(checkpoint.elapsed_us) / 1e6;
    result.resumed_from_step = checkpoint.state.step;
  }
  const auto start = Clock::now();
  const auto job_seconds = [&] {
    return earlier_seconds + std::chrono::duration<double>(Clock::now() - start).count();
  };
  std::string previous_checkpoint;
  int64_t steps_this_run = 0;  // after a resume: the steps since
  const int64_t tokens_per_step = spec.grad_acc_steps() * spec.micro_batch * spec.seq_len;
  while (!trainer->done()) {
    const auto step_start = Clock::now();
    std::vector<double> mean;
    for (int64_t m = 0; m < spec.grad_acc_steps(); ++m) {
      if (run.keep_going) LENSD_RETURN_IF_ERROR(run.keep_going());
      LENSD_ASSIGN_OR_RETURN(const at::Tensor batch,
                             CatchTorch("training data", [&]() -> absl::StatusOr<at::Tensor> {
                               return Gather(run, next, spec.micro_batch);
                             }));
      next += spec.micro_batch;
      LENSD_ASSIGN_OR_RETURN(const std::vector<double> losses, trainer->MicroBatch(batch));
      mean.resize(losses.size(), 0.0);
      for (size_t l = 0; l < losses.size(); ++l) {
        mean[l] += losses[l] / static_cast<double>(spec.grad_acc_steps());
      }
    }
    ++steps_this_run;
    const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const int64_t step = trainer->step();
    if (run.on_step) {
      TrainingProgress p;
      p.step = step;
      p.num_steps = spec.num_steps;
      p.layer_losses = mean;
      p.tokens_per_second = static_cast<double>(tokens_per_step) / std::max(step_seconds, 1e-9);
      p.eta_seconds = elapsed / static_cast<double>(steps_this_run) *
                      static_cast<double>(spec.num_steps - step);
      run.on_step(p);
    }
    result.final_layer_losses = std::move(mean);
    if (step % spec.checkpoint_every == 0 || trainer->done()) {
      LENSD_ASSIGN_OR_RETURN(LensTrainerState state, trainer->State());
      const std::string path = CheckpointPath(run, step);
      const auto elapsed_us = static_cast<int64_t>(job_seconds() * 1e6);
      LENSD_RETURN_IF_ERROR(SaveTrainingCheckpoint({std::move(state), next, elapsed_us}, path));
      if (run.on_checkpoint) LENSD_RETURN_IF_ERROR(run.on_checkpoint(step, path));
      std::error_code ec;
      if (!previous_checkpoint.empty()) std::filesystem::remove(previous_checkpoint, ec);
      previous_checkpoint = path;
    }
  }
  TunedLensConfig config;
  config.base_model = run.base_model;
  LENSD_ASSIGN_OR_RETURN(std::unique_ptr<TunedLens> lens,
                         trainer->MakeLens(spec.lens_name, config));
  LENSD_RETURN_IF_ERROR(SaveTunedLens(*lens, run.output_dir));
  result.steps = trainer->step();
  result.tokens = next * spec.seq_len;  // every sequence of the job, before a resume too
  result.seconds = job_seconds();
  return result;
}

}  // namespace lensd::engine
