#include "core/engine/attribution/attribution_metric.h"

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lensd::engine {

absl::StatusOr<ResolvedMetric> ResolveMetric(const MetricSpec& spec,
                                             const std::vector<int64_t>& tokens,
                                             int64_t vocab_size) {
  ResolvedMetric m;
  m.kind = spec.kind;
  const auto t = static_cast<int64_t>(tokens.size());
  const bool loss = spec.kind == MetricKind::kLoss;
  const int64_t last = loss ? t - 2 : t - 1;
  if (last < 0) {
    return absl::InvalidArgumentError(
        "input: the loss metric needs at least 2 tokens (a prediction and its label)");
  }
  m.positions = spec.positions.empty() ? std::vector<int64_t>{last} : spec.positions;
  for (const int64_t p : m.positions) {
    if (p < 0 || p > last) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric.positions: ", p, " is out of range 0..", last,
                       loss ? " (the loss at p scores token p + 1)" : "", " for ", t, " tokens"));
    }
    if (loss) m.labels.push_back(tokens[static_cast<size_t>(p + 1)]);
  }
  for (const auto& [value, field] : {std::pair{spec.target, "target"}, {spec.foil, "foil"}}) {
    if (value < -1 || value >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("metric.", field, ": token id ", value,
                                                     " out of range 0..", vocab_size - 1));
    }
  }
  if (spec.kind == MetricKind::kLogitDiff && spec.foil < 0) {
    return absl::InvalidArgumentError(
        "metric.foil: the logit-difference metric needs a foil token (logit(target) - "
        "logit(foil))");
  }
  m.target = spec.target;
  m.foil = spec.foil;
  return m;
}

void ResolveTarget(ResolvedMetric& metric, const at::Tensor& logits) {
  if (metric.kind == MetricKind::kLoss || metric.target >= 0) return;
  metric.target = logits[0][metric.positions.front()].argmax().item<int64_t>();
}

at::Tensor MetricValues(const at::Tensor& logits, const ResolvedMetric& metric) {
  const at::Tensor positions =
      at::tensor(metric.positions, at::TensorOptions().dtype(at::kLong)).to(logits.device());
  const at::Tensor rows = logits.index_select(1, positions).to(at::kFloat);  // [B, P, V]
  switch (metric.kind) {
    case MetricKind::kLoss: {
      const at::Tensor labels =
          at::tensor(metric.labels, at::TensorOptions().dtype(at::kLong)).to(logits.device());
      const at::Tensor log_probs = rows.log_softmax(-1);
      const at::Tensor index = labels.view({1, -1, 1}).expand({rows.size(0), -1, 1});
      return -log_probs.gather(-1, index).squeeze(-1).sum(-1);
    }
    case MetricKind::kLogit:
      return rows.select(-1, metric.target).sum(-1);
    case MetricKind::kLogProb:
      return rows.log_softmax(-1).select(-1, metric.target).sum(-1);
    case MetricKind::kProb:
      return rows.softmax(-1).select(-1, metric.target).sum(-1);
    case MetricKind::kLogitDiff:
      return (rows.select(-1, metric.target) - rows.select(-1, metric.foil)).sum(-1);
  }
  return rows.sum({1, 2});
}

}  // namespace lensd::engine
