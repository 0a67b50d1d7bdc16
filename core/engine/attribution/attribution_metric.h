// The scalar metric m whose gradients node attribution and GetActivations take
// (attribution.md §1.2): cross-entropy of the next token, a target's logit, log-probability or
// probability, or a logit difference, at chosen positions, summed over positions.
#ifndef LENSD_CORE_ENGINE_ATTRIBUTION_ATTRIBUTION_METRIC_H_
#define LENSD_CORE_ENGINE_ATTRIBUTION_ATTRIBUTION_METRIC_H_

#include <ATen/core/Tensor.h>

#include <vector>

#include "absl/status/statusor.h"
#include "core/attribution_types.h"

namespace lensd::engine {

// A MetricSpec checked against a sequence: positions filled in, target resolved.
struct ResolvedMetric {
  MetricKind kind = MetricKind::kLoss;
  std::vector<int64_t> positions;
  int64_t target = -1;  // -1 until resolved from logits (when the spec left it out)
  int64_t foil = -1;
  std::vector<int64_t> labels;  // kLoss: tokens[p + 1] per position
};

// INVALID_ARGUMENT naming "metric.<field>": positions out of range (kLoss needs p + 1 < T),
// target/foil outside the vocabulary, kLogitDiff without a foil.
absl::StatusOr<ResolvedMetric> ResolveMetric(const MetricSpec& spec,
                                             const std::vector<int64_t>& tokens,
                                             int64_t vocab_size);

// Sets metric.target to the top-1 token of logits [1 or more, T, vocab] at the first position
// of the first row when it is -1 and the kind needs one.
void ResolveTarget(ResolvedMetric& metric, const at::Tensor& logits);

// m for each row of logits [B, T, vocab]: [B] float32, differentiable.
at::Tensor MetricValues(const at::Tensor& logits, const ResolvedMetric& metric);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_ATTRIBUTION_ATTRIBUTION_METRIC_H_
