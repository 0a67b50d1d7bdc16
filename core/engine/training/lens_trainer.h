// Trains a tuned lens as tuned-lens's train loop does (tuned-lens.md §2): per micro-batch, the
// model runs once without gradients; then for each layer in turn the lens logits, the loss
// (KL(p_final || q_lens) by default, or next-token cross-entropy) and its backward, so that one
// layer's [batch x positions x vocab] logits are freed before the next layer's exist. Every
// `grad_acc_steps` micro-batches: one global gradient-norm clip across all layers, one step of
// SGD with Nesterov momentum and coupled weight decay, and the linear decay of the learning rate
// to zero over `num_steps`.
//
// Translators are float32 master weights initialised to zero (or from a warm-start lens). With
// `bf16_autocast` each layer's lens and loss run under bfloat16 autocast on the model's device,
// as tuned-lens's loop does (`th.autocast(device.type, dtype=th.bfloat16)`): matmuls in bfloat16,
// softmaxes and reductions as autocast's policy says. Without it every computation is float32
// (a bfloat16 or float16 model's norm and unembedding still run in the model's dtype).
// Not thread-safe; one trainer belongs to one job.
#ifndef LENSD_CORE_ENGINE_TRAINING_LENS_TRAINER_H_
#define LENSD_CORE_ENGINE_TRAINING_LENS_TRAINER_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/lens/lens.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/training/kl_loss.h"

namespace lensd::engine {

enum class LensLoss { kKl, kCrossEntropy };

// tuned_lens.utils shift_labels / shift_preds along the sequence dimension (1): for k > 0 the
// labels drop their first k positions and the predictions their last k; mirrored for k < 0.
at::Tensor ShiftLabels(const at::Tensor& x, int64_t k);
at::Tensor ShiftPreds(const at::Tensor& x, int64_t k);

struct LensTrainingOptions {
  LensLoss loss = LensLoss::kKl;
  // Labels are shifted by this many positions against the predictions (1: the next token);
  // default 0 for KL and 1 for cross-entropy.
  std::optional<int64_t> token_shift;
  int64_t num_steps = 250;
  int64_t grad_acc_steps = 1;  // micro-batches per optimizer step
  double lr_scale = 1.0;       // SGD learning rate = lr_scale x (1 - momentum)
  double momentum = 0.9;
  double weight_decay = 1e-3;
  double max_grad_norm = 1.0;
  bool bias_only = false;      // train the biases only; the weights stay as initialised
  bool bf16_autocast = false;  // lens and loss under bfloat16 autocast, as tuned-lens
};

// Everything a checkpoint needs to continue exactly where training stopped, taken between
// optimizer steps (as tuned-lens's snapshots are).
struct LensTrainerState {
  std::vector<at::Tensor> weights;          // per layer [d, d], float32, CPU
  std::vector<at::Tensor> biases;           // per layer [d]
  std::vector<at::Tensor> weight_momentum;  // empty until the first step
  std::vector<at::Tensor> bias_momentum;
  int64_t step = 0;  // optimizer steps taken
};

class LensTrainer {
 public:
  // INVALID_ARGUMENT naming the option (num_steps, grad_acc_steps, lr_scale, momentum,
  // weight_decay, max_grad_norm) or a warm-start lens of another shape.
  static absl::StatusOr<std::unique_ptr<LensTrainer>> Create(const CausalLm& model,
                                                             LensTrainingOptions options,
                                                             const TunedLens* warm_start);

  // Accumulates the gradients of one micro-batch of token ids [batch, seq_len] and returns each
  // layer's loss (mean over tokens, nats, before the 1/grad_acc_steps scaling). Takes the
  // optimizer step itself after the step's last micro-batch. FAILED_PRECONDITION once num_steps
  // steps are done; INVALID_ARGUMENT for tokens too short for the token shift.
  absl::StatusOr<std::vector<double>> MicroBatch(const at::Tensor& tokens);

  int64_t step() const { return step_; }
  int64_t num_steps() const { return options_.num_steps; }
  bool done() const { return step_ >= options_.num_steps; }
  // The learning rate of the next optimizer step.
  double learning_rate() const;

  // FAILED_PRECONDITION in the middle of a step (its accumulated gradients are not state).
  absl::StatusOr<LensTrainerState> State() const;
  // INVALID_ARGUMENT when the state's shapes do not fit this model.
  absl::Status Restore(const LensTrainerState& state);

  // The translators as they are now, as a lens on the model's dtype and device.
  absl::StatusOr<std::unique_ptr<TunedLens>> MakeLens(std::string name,
                                                      TunedLensConfig config) const;

 private:
  LensTrainer(const CausalLm& model, LensTrainingOptions options)
      : model_(model), options_(options) {}
  // One layer's lens and loss on its residual `h` [batch, seq, d] (float32) and the loss's
  // backward, the gradient scaled by `scale`; returns the unscaled loss. With `kl` (the KL loss on
  // the CPU, a plain unembedding) FusedLayerLossBackward; else autograd throughout.
  absl::StatusOr<double> LayerLossBackward(int64_t layer, const at::Tensor& h,
                                           const at::Tensor& target, const at::Tensor& log_target,
                                           double scale, const std::optional<KlTarget>& kl);
  // The same with the unembedding's products and the loss run outside autograd (the loss fused,
  // kl_loss.h) and the gradient handed back at the final norm's output.
  absl::StatusOr<double> FusedLayerLossBackward(int64_t layer, const at::Tensor& h,
                                                const KlTarget& kl);
  void OptimizerStep();
  int64_t shift() const;

  const CausalLm& model_;
  LensTrainingOptions options_;
  std::vector<at::Tensor> weights_;  // leaves, float32, on the model's device
  std::vector<at::Tensor> biases_;
  std::vector<at::Tensor> weight_momentum_;
  std::vector<at::Tensor> bias_momentum_;
  // A bfloat16 copy of a float32 model's unembedding under bf16 autocast (vocab x d_model x 2
  // bytes for the trainer's life), else undefined.
  at::Tensor unembed_;
  int64_t step_ = 0;
  int64_t micro_batches_ = 0;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_TRAINING_LENS_TRAINER_H_
