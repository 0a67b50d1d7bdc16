#include "core/engine/training/lens_trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/version.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/engine/model/hooks.h"
#include "core/engine/model/ops.h"
#include "core/engine/model/torch_errors.h"
#include "core/engine/training/kl_loss.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

// bfloat16 autocast on `device` for the guard's scope, as Python's `with th.autocast(...)`: the
// previous state comes back, and the cast cache is cleared when the outermost region ends.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, at::DeviceType device) : enabled_(enabled), device_(device) {
    if (!enabled_) return;
    was_enabled_ = at::autocast::is_autocast_enabled(device_);
    was_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, was_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  at::DeviceType device_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

absl::Status CheckOptions(const LensTrainingOptions& o) {
  const auto bad = [](const char* field, double value, const char* want) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", value, " is not ", want));
  };
  if (o.num_steps < 1) return bad("num_steps", static_cast<double>(o.num_steps), ">= 1");
  if (o.grad_acc_steps < 1) {
    return bad("grad_acc_steps", static_cast<double>(o.grad_acc_steps), ">= 1");
  }
  if (!(o.lr_scale > 0)) return bad("lr_scale", o.lr_scale, "> 0");
  if (!(o.momentum >= 0 && o.momentum < 1)) return bad("momentum", o.momentum, "in [0, 1)");
  if (!(o.weight_decay >= 0)) return bad("weight_decay", o.weight_decay, ">= 0");
  if (!(o.max_grad_norm > 0)) return bad("max_grad_norm", o.max_grad_norm, "> 0");
  return absl::OkStatus();
}

std::vector<at::Tensor> CpuCopies(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (const at::Tensor& t : tensors) out.push_back(t.detach().to(at::kCPU).clone());
  return out;
}

}  // namespace

at::Tensor ShiftLabels(const at::Tensor& x, int64_t k) {
  if (k > 0) return x.slice(1, k);
  if (k < 0) return x.slice(1, 0, x.size(1) + k);
  return x;
}

at::Tensor ShiftPreds(const at::Tensor& x, int64_t k) {
  if (k > 0) return x.slice(1, 0, x.size(1) - k);
  if (k < 0) return x.slice(1, -k);
  return x;
}

absl::StatusOr<std::unique_ptr<LensTrainer>> LensTrainer::Create(const CausalLm& model,
                                                                 LensTrainingOptions options,
                                                                 const TunedLens* warm_start) {
  LENSD_RETURN_IF_ERROR(CheckOptions(options));
  const int64_t layers = model.config().num_layers, d = model.config().d_model;
  if (warm_start != nullptr &&
      (warm_start->config().num_layers != layers || warm_start->config().d_model != d)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lens: the warm-start lens has ", warm_start->config().num_layers, " layers of width ",
        warm_start->config().d_model, "; the model has ", layers, " of width ", d));
  }
  std::unique_ptr<LensTrainer> trainer(new LensTrainer(model, options));
  LENSD_RETURN_IF_ERROR(CatchTorch("lens training setup", [&]() -> absl::Status {
    c10::NoGradGuard no_grad;
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(model.device());
    for (int64_t l = 0; l < layers; ++l) {
      at::Tensor w =
          warm_start == nullptr ? at::zeros({d, d}, f32) : warm_start->weights()[l].to(f32).clone();
      at::Tensor b =
          warm_start == nullptr ? at::zeros({d}, f32) : warm_start->biases()[l].to(f32).clone();
      trainer->weights_.push_back(w.requires_grad_(!options.bias_only));
      trainer->biases_.push_back(b.requires_grad_(true));
    }
    // Autocast casts a frozen float32 matrix again on every call; one bfloat16 copy gives the
    // same products.
    if (options.bf16_autocast && model.unembed().scalar_type() == at::kFloat) {
      trainer->unembed_ = model.unembed().to(at::kBFloat16);
    }
    return absl::OkStatus();
  }));
  return trainer;
}

int64_t LensTrainer::shift() const {
  if (options_.token_shift.has_value()) return *options_.token_shift;
  return options_.loss == LensLoss::kKl ? 0 : 1;
}

double LensTrainer::learning_rate() const {
  // get_linear_schedule_with_warmup with no warmup: lr x (N - step) / N.
  const double base = options_.lr_scale * (1 - options_.momentum);
  const double n = static_cast<double>(options_.num_steps);
  return base * std::max(0.0, (n - static_cast<double>(step_)) / std::max(1.0, n));
}

absl::StatusOr<std::vector<double>> LensTrainer::MicroBatch(const at::Tensor& tokens) {
  if (done()) {
    return absl::FailedPreconditionError(
        absl::StrCat("training already took its ", options_.num_steps, " steps"));
  }
  const int64_t k = shift();
  if (tokens.dim() != 2 || tokens.size(1) <= std::abs(k)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokens must be [batch, seq_len] with seq_len > ", std::abs(k), " (the token shift)"));
  }
  const int64_t layers = model_.config().num_layers;
  return CatchTorch("lens training", [&]() -> absl::StatusOr<std::vector<double>> {
    const at::Tensor ids = tokens.to(model_.device(), at::kLong);
    Hooks hooks(layers);
    for (int64_t l = 0; l < layers; ++l) hooks.Capture({HookKind::kResidPre, l});
    LENSD_ASSIGN_OR_RETURN(const ForwardResult forward, model_.Forward({ids}, &hooks));
    // The forward ran in inference mode; copies outside it can be saved for backward.
    at::Tensor target;  // KL: p_final (probabilities); CE: the token ids
    at::Tensor log_target;
    {
      c10::NoGradGuard no_grad;
      if (options_.loss == LensLoss::kKl) {
        log_target = ShiftLabels(at::log_softmax(forward.logits.to(at::kFloat), -1), k).clone();
        target = log_target.exp();
      } else {
        target = ShiftLabels(ids, k).clone();
      }
    }
    const double scale = 1.0 / static_cast<double>(options_.grad_acc_steps);
    // On the CPU, for a plain unembedding, the KL loss runs fused, its target prepared once for
    // every layer.
    std::optional<KlTarget> kl;
    if (options_.loss == LensLoss::kKl && model_.device().is_cpu() && model_.plain_unembed()) {
      kl = PrepareKlTarget(log_target.flatten(0, -2), target.flatten(0, -2), scale,
                           options_.bf16_autocast ? at::kBFloat16 : at::kFloat);
    }
    std::vector<double> losses;
    losses.reserve(static_cast<size_t>(layers));
    for (int64_t l = 0; l < layers; ++l) {
      const at::Tensor h = hooks.Captured({HookKind::kResidPre, l}).to(at::kFloat).clone();
      LENSD_ASSIGN_OR_RETURN(const double loss,
                             LayerLossBackward(l, h, target, log_target, scale, kl));
      losses.push_back(loss);
    }
    if (++micro_batches_ == options_.grad_acc_steps) {
      OptimizerStep();
      micro_batches_ = 0;
      ++step_;
    }
    return losses;
  });
}

absl::StatusOr<double> LensTrainer::LayerLossBackward(int64_t layer, const at::Tensor& h,
                                                      const at::Tensor& target,
                                                      const at::Tensor& log_target, double scale,
                                                      const std::optional<KlTarget>& kl) {
  if (kl.has_value()) return FusedLayerLossBackward(layer, h, *kl);
  at::Tensor loss;
  double value = 0;
  {
    const AutocastGuard autocast(options_.bf16_autocast, model_.device().type());
    const at::Tensor translated = h + at::linear(h, weights_[layer], biases_[layer]);
    LENSD_ASSIGN_OR_RETURN(at::Tensor logits, unembed_.defined()
                                                  ? model_.FinalNormAndUnembed(translated, unembed_)
                                                  : model_.FinalNormAndUnembed(translated));
    logits = ShiftPreds(logits, shift());
    if (!options_.bf16_autocast) logits = logits.to(at::kFloat);
    loss = options_.loss == LensLoss::kKl
               ? (target * (log_target - at::log_softmax(logits, -1))).sum(-1).mean()
               : at::cross_entropy_loss(logits.flatten(0, -2), target.flatten());
    value = loss.item<double>();
    loss = loss * scale;  // tuned-lens divides inside the region too
  }
  loss.backward();  // outside the autocast region, as tuned-lens calls it
  return value;
}

absl::StatusOr<double> LensTrainer::FusedLayerLossBackward(int64_t layer, const at::Tensor& h,
                                                           const KlTarget& kl) {
  at::Tensor normed;  // the final norm's output for the predicted positions, [rows, d]
  at::Tensor grad;    // the loss's gradient with respect to it
  double value = 0;
  {
    const AutocastGuard autocast(options_.bf16_autocast, model_.device().type());
    const at::Tensor translated = h + at::linear(h, weights_[layer], biases_[layer]);
    LENSD_ASSIGN_OR_RETURN(normed, model_.FinalNormOnly(translated));
    normed = ShiftPreds(normed, shift()).flatten(0, -2);
    // The unembedding's products as autograd would run them (autocast's bfloat16 casts included),
    // outside the graph: float32 ones take oneDNN's matmul there (onednn_linear.h).
    c10::NoGradGuard no_grad;
    const at::Tensor& w = unembed_.defined() ? unembed_ : model_.unembed();
    const at::Tensor product = Linear(normed.detach(), w, at::Tensor());
    const at::Tensor logits = options_.bf16_autocast ? product : product.to(at::kFloat);
    if (logits.scalar_type() != kl.logits_dtype) {
      return absl::InternalError(
          absl::StrCat("lens training: ", c10::toString(logits.scalar_type()), " logits for a ",
                       c10::toString(kl.logits_dtype), " loss"));
    }
    KlLoss fused = FusedKlLoss(logits, kl);
    value = fused.loss;
    // linear's backward for its input, in the product's dtype, then cast as the norm's output.
    grad = at::mm(fused.grad.to(product.scalar_type()), w).to(normed.scalar_type());
  }
  normed.backward(grad);  // outside the autocast region, as tuned-lens calls backward
  return value;
}

void LensTrainer::OptimizerStep() {
  c10::NoGradGuard no_grad;
  // torch.optim.SGD's parameter order: translator 0's weight and bias, then translator 1's, ...
  std::vector<at::Tensor*> params;
  std::vector<at::Tensor*> buffers;
  if (weight_momentum_.empty()) weight_momentum_.resize(weights_.size());
  if (bias_momentum_.empty()) bias_momentum_.resize(biases_.size());
  for (size_t l = 0; l < weights_.size(); ++l) {
    if (!options_.bias_only) {
      params.push_back(&weights_[l]);
      buffers.push_back(&weight_momentum_[l]);
    }
    params.push_back(&biases_[l]);
    buffers.push_back(&bias_momentum_[l]);
  }
  // clip_grad_norm_(max_norm): the norm of the per-parameter norms; every gradient scaled by
  // min(1, max_norm / (norm + 1e-6)).
  std::vector<at::Tensor> norms;
  norms.reserve(params.size());
  for (at::Tensor* p : params) norms.push_back(at::norm(p->grad(), 2));
  const at::Tensor total = at::norm(at::stack(norms), 2);
  const at::Tensor coef = at::clamp_max(options_.max_grad_norm / (total + 1e-6), 1.0);
  const double lr = learning_rate();
  const double m = options_.momentum;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = *params[i];
    at::Tensor grad = p.mutable_grad();
    grad.mul_(coef);
    at::Tensor d = options_.weight_decay != 0 ? grad.add(p, options_.weight_decay) : grad;
    at::Tensor& buffer = *buffers[i];
    if (m != 0) {
      if (!buffer.defined()) {
        buffer = d.clone();
      } else {
        buffer.mul_(m).add_(d);
      }
      d = d.add(buffer, m);  // Nesterov
    }
    p.add_(d, -lr);
    grad.zero_();
  }
}

absl::StatusOr<LensTrainerState> LensTrainer::State() const {
  if (micro_batches_ != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the trainer is ", micro_batches_, " micro-batches into a step; save between steps"));
  }
  LensTrainerState s;
  s.weights = CpuCopies(weights_);
  s.biases = CpuCopies(biases_);
  if (!bias_momentum_.empty() && bias_momentum_.front().defined()) {
    if (!options_.bias_only) s.weight_momentum = CpuCopies(weight_momentum_);
    s.bias_momentum = CpuCopies(bias_momentum_);
  }
  s.step = step_;
  return s;
}

absl::Status LensTrainer::Restore(const LensTrainerState& s) {
  const size_t layers = weights_.size();
  const int64_t d = model_.config().d_model;
  const bool momentum = !s.bias_momentum.empty();
  const auto fits = [&](const std::vector<at::Tensor>& v, at::IntArrayRef shape) {
    return v.size() == layers &&
           std::all_of(v.begin(), v.end(), [&](const at::Tensor& t) { return t.sizes() == shape; });
  };
  if (!fits(s.weights, {d, d}) || !fits(s.biases, {d}) ||
      (momentum && !fits(s.bias_momentum, {d})) ||
      (momentum && !options_.bias_only && !fits(s.weight_momentum, {d, d})) || s.step < 0 ||
      s.step > options_.num_steps) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint: translators or momentum of the wrong shape for ", layers,
                     " layers of width ", d, ", or a step outside the schedule"));
  }
  return CatchTorch("lens training restore", [&]() -> absl::Status {
    c10::NoGradGuard no_grad;
    for (size_t l = 0; l < layers; ++l) {
      weights_[l].copy_(s.weights[l]);
      biases_[l].copy_(s.biases[l]);
    }
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(model_.device());
    weight_momentum_.assign(layers, at::Tensor());
    bias_momentum_.assign(layers, at::Tensor());
    if (momentum) {
      for (size_t l = 0; l < layers; ++l) {
        bias_momentum_[l] = s.bias_momentum[l].to(f32).clone();
        if (!options_.bias_only) weight_momentum_[l] = s.weight_momentum[l].to(f32).clone();
      }
    }
    step_ = s.step;
    micro_batches_ = 0;
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<TunedLens>> LensTrainer::MakeLens(std::string name,
                                                                 TunedLensConfig config) const {
  return CatchTorch("lens training result", [&]() -> absl::StatusOr<std::unique_ptr<TunedLens>> {
    c10::NoGradGuard no_grad;
    const auto options = at::TensorOptions().dtype(model_.dtype()).device(model_.device());
    config.d_model = model_.config().d_model;
    config.num_layers = model_.config().num_layers;
    return TunedLens::FromTranslators(std::move(name), std::move(config),
                                      at::stack(weights_).detach().to(options),
                                      at::stack(biases_).detach().to(options));
  });
}

}  // namespace lensd::engine
