#include "core/engine/lens/lens_evaluation.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/str_cat.h"
#include "core/engine/model/hooks.h"
#include "core/engine/model/torch_errors.h"
#include "core/engine/training/lens_trainer.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

// Mean token cross-entropy of log-probabilities [b, t, v] against labels [b, t'] (shifted).
double CrossEntropy(const at::Tensor& log_probs, const at::Tensor& labels, int64_t k) {
  return at::cross_entropy_loss(ShiftPreds(log_probs, k).flatten(0, 1), labels.flatten())
      .item<double>();
}

double Entropy(const at::Tensor& log_probs) {
  return (-log_probs.exp() * log_probs).sum(-1).mean().item<double>();
}

}  // namespace

absl::StatusOr<LensMetrics> EvaluateLenses(
    const CausalLm& model, const std::vector<std::pair<std::string, const Lens*>>& lenses,
    const at::Tensor& tokens, int64_t batch, int64_t token_shift,
    const std::function<absl::Status()>& keep_going,
    const std::function<void(int64_t, int64_t)>& on_batch) {
  if (lenses.empty()) return absl::InvalidArgumentError("lenses: name at least one");
  if (!tokens.defined() || tokens.dim() != 2 || tokens.size(1) <= std::abs(token_shift) ||
      batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokens must be [sequences, seq_len] with seq_len > |token_shift| (", token_shift, ")"));
  }
  const int64_t layers = model.config().num_layers;
  LensMetrics out;
  const int64_t total = (tokens.size(0) + batch - 1) / batch;
  for (const auto& [name, lens] : lenses) {
    for (const char* metric : {"ce", "entropy", "kl"}) {
      out.lenses[name][metric].assign(static_cast<size_t>(layers), 0.0);
    }
  }
  LENSD_RETURN_IF_ERROR(CatchTorch("lens evaluation", [&]() -> absl::Status {
    c10::InferenceMode inference;
    for (int64_t first = 0; first < tokens.size(0); first += batch) {
      if (keep_going) LENSD_RETURN_IF_ERROR(keep_going());
      const at::Tensor ids = tokens.narrow(0, first, std::min(batch, tokens.size(0) - first))
                                 .to(model.device(), at::kLong);
      Hooks hooks(layers);
      for (int64_t l = 0; l < layers; ++l) hooks.Capture({HookKind::kResidPre, l});
      LENSD_ASSIGN_OR_RETURN(const ForwardResult forward, model.Forward({ids}, &hooks));
      const at::Tensor final_lps = at::log_softmax(forward.logits.to(at::kFloat), -1);
      const at::Tensor final_probs = final_lps.exp();
      const at::Tensor labels = ShiftLabels(ids, token_shift);
      for (const auto& [name, lens] : lenses) {
        auto& metrics = out.lenses[name];
        for (int64_t l = 0; l < layers; ++l) {
          LENSD_ASSIGN_OR_RETURN(const at::Tensor logits,
                                 lens->Logits(model, hooks.Captured({HookKind::kResidPre, l}), l));
          const at::Tensor lps = at::log_softmax(logits.to(at::kFloat), -1);
          const auto at_layer = static_cast<size_t>(l);
          metrics["ce"][at_layer] += CrossEntropy(lps, labels, token_shift);
          metrics["entropy"][at_layer] += Entropy(lps);
          metrics["kl"][at_layer] +=
              (final_probs * (final_lps - lps)).sum(-1).mean().item<double>();
        }
      }
      out.baseline_ce += CrossEntropy(final_lps, labels, token_shift);
      out.baseline_entropy += Entropy(final_lps);
      ++out.batches;
      if (on_batch) on_batch(out.batches, total);
    }
    return absl::OkStatus();
  }));
  const double n = static_cast<double>(out.batches);
  for (auto& [name, metrics] : out.lenses) {
    for (auto& [metric, values] : metrics) {
      for (double& v : values) v /= n;
    }
  }
  out.baseline_ce /= n;
  out.baseline_entropy /= n;
  return out;
}

}  // namespace lensd::engine
