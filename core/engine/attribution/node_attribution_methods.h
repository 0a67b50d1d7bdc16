// The pieces of node attribution (node_attribution.cc) that run the model beyond the clean
// pass: baselines, integrated gradients and exact patching (node_attribution_methods.cc).
// Internal to core/engine.
#ifndef LENSD_CORE_ENGINE_ATTRIBUTION_NODE_ATTRIBUTION_METHODS_H_
#define LENSD_CORE_ENGINE_ATTRIBUTION_NODE_ATTRIBUTION_METHODS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/attribution_types.h"
#include "core/engine/attribution/attribution.h"
#include "core/engine/attribution/attribution_metric.h"

namespace lensd::engine::attribution_internal {

// One site's clean values and baseline, [T, d] / [T, F] (baselines may be [1, ...]).
struct Site {
  const SaeSite* site = nullptr;
  std::vector<int64_t> shape;  // the point's activation shape for one sequence, [1, T, ...]
  at::Tensor a;                // activation, SAE dtype
  at::Tensor grad;             // dm/da, float32
  SaeCode code;
  at::Tensor x_hat;
  at::Tensor e;  // a - x_hat
  at::Tensor f0;
  at::Tensor e0;
  at::Tensor feature_grad;  // dm/df (AtP) or the IG average, float32
  at::Tensor error_grad;    // dm/de
};

// A node: a feature, an error dimension, or a contracted error (index -1) at one position.
struct Candidate {
  size_t site;
  int64_t position;
  bool error;
  int64_t index;  // feature, error dimension, or -1
};

// `rows` copies of the sequence, logits at every position.
ForwardRequest Batch(const std::vector<int64_t>& tokens, int64_t rows);
// [B, T, heads, d_head] -> [B, T, heads x d_head]; other shapes as they are.
at::Tensor Flat(const at::Tensor& value);
// Encodes one sequence's activation at a site with the excluded positions' features zeroed.
void EncodeAt(Site& s, const at::Tensor& activation, const at::Tensor& keep);

// Sets each site's f0 and e0: zero, the mean over the reference sequences, or the patch's values.
absl::Status SetBaselines(const CausalLm& model, std::vector<Site>& sites,
                          const NodeAttributionSpec& spec, const at::Tensor& keep,
                          const Interventions* edits);
// Integrated gradients at one site: the site's output replaced by D(f_a) + e_a for N values of a
// in one batched forward; sets the averaged gradients.
absl::Status IntegratedGradients(const CausalLm& model, Site& s, const std::vector<int64_t>& tokens,
                                 const ResolvedMetric& metric, int64_t steps,
                                 const Interventions* edits);
// Exact patching: m with each node set to its baseline, minus m(clean), batched; `keep_going` is
// polled before each batch.
absl::StatusOr<std::vector<double>> ExactEffects(
    const CausalLm& model, const std::vector<Site>& sites, const std::vector<Candidate>& nodes,
    const std::vector<int64_t>& tokens, const ResolvedMetric& metric, double clean,
    const std::function<absl::Status()>& keep_going, const Interventions* edits);

}  // namespace lensd::engine::attribution_internal

#endif  // LENSD_CORE_ENGINE_ATTRIBUTION_NODE_ATTRIBUTION_METHODS_H_
