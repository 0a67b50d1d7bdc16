// SAE features, node attribution and layer attribution on a loaded model
// (../shared/specs/attribution.md §1, §4). Every function runs its own forward passes and is
// thread-safe on a shared const model and const SAEs.
//
// Node attribution with a zero, mean or patch baseline needs no surgery in the forward pass:
// one forward and backward of the unmodified model gives each site's activation a and gradient
// G = dm/da; the SAE splice with pass-through gradients (§1.3) has feature gradients
// g_f = FeatureGrad(G) and error gradients G, so every upstream gradient is the model's own.
// Integrated gradients replace one site at a time by D(f_a) + e_a along the straight line from
// the clean to the baseline values (a = k/N, k = 0..N-1, §1.6); exact patching runs one forward
// per node.
#ifndef LENSD_CORE_ENGINE_ATTRIBUTION_ATTRIBUTION_H_
#define LENSD_CORE_ENGINE_ATTRIBUTION_ATTRIBUTION_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/attribution_types.h"
#include "core/engine/interventions/interventions.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/model/hook_names.h"
#include "core/engine/sae/sae.h"

namespace lensd::engine {

// An SAE attached to a hook point of the model.
struct SaeSite {
  std::string name;
  const Sae* sae = nullptr;
  HookPoint point;
};

// The hook point an SAE reads: `hook_override` when given, else its cfg's hook name
// (TransformerLens names; sparsify's module paths "layers.N", "h.N", "layers.N.mlp",
// "h.N.attn", "embed_tokens" map to resid_post, mlp_out, attn_out and hook_embed).
// INVALID_ARGUMENT when there is none, the model lacks it, or its width is not the SAE's d_in
// (attn.hook_z counts heads x d_head).
absl::StatusOr<HookPoint> SaeHookPoint(const SaeConfig& config, const std::string& hook_override,
                                       const ModelConfig& model);

// Width of the flattened activation at a point; 0 for points an SAE cannot read.
int64_t HookWidth(HookPoint point, const ModelConfig& model);

// Features, reconstruction error and FVU of each site on one sequence.
absl::StatusOr<std::vector<SaeEncoding>> EncodeSaes(const CausalLm& model,
                                                    const std::vector<SaeSite>& sites,
                                                    const EncodeSaeSpec& spec);

// Indirect effects of every SAE feature and error node of the sites on the metric.
// INVALID_ARGUMENT for a bad metric, baseline (patch of another length, no reference), or an
// exact patching run over the node limit. `keep_going` (optional) is polled before each
// integrated-gradients site and exact-patching chunk; its error (CANCELLED, DEADLINE_EXCEEDED)
// stops the run. `edits` (optional: spec.interventions, prepared) apply in every pass.
absl::StatusOr<NodeAttributionOutput> AttributeNodes(
    const CausalLm& model, const std::vector<SaeSite>& sites, const NodeAttributionSpec& spec,
    const std::function<absl::Status()>& keep_going = nullptr,
    const Interventions* edits = nullptr);

// Direct logit attribution (terms + bias sum to the logit; optionally per attention head) or
// the logit lens per layer.
// `edits` (optional): spec.interventions, prepared.
absl::StatusOr<LayerAttributionOutput> AttributeLayers(const CausalLm& model,
                                                       const LayerAttributionSpec& spec,
                                                       const Interventions* edits = nullptr);

// Exact patching runs one forward pass per node; more nodes than this is refused.
inline constexpr int64_t kMaxExactNodes = 4096;

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_ATTRIBUTION_ATTRIBUTION_H_
