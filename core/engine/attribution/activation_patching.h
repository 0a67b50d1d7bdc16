// Activation patching sweeps (core/patching_types.h) as TransformerLens's patching module defines
// them (generic_activation_patch: one run per cell, the metric of its logits), computed as a
// server should: the run being patched is done once and its stream entering each layer kept, so
// every cell at layer l starts there instead of at the embedding; the cells of a layer run as
// the rows of batched passes; only the metric's positions are unembedded.
// Stateless; thread-safe on a shared model.
#ifndef LENSD_CORE_ENGINE_ATTRIBUTION_ACTIVATION_PATCHING_H_
#define LENSD_CORE_ENGINE_ATTRIBUTION_ACTIVATION_PATCHING_H_

#include "absl/status/statusor.h"
#include "core/engine/model/causal_lm.h"
#include "core/patching_types.h"

namespace lensd::engine {

// Token rows per batched pass (rows x tokens); a sweep's layer runs in ceil(cells / rows) passes.
inline constexpr int64_t kPatchingTokensPerPass = 4096;

// INVALID_ARGUMENT naming the field: inputs of different lengths, a layer or position out of
// range or given twice, no sweep, resid_mid on a parallel-residual model, a bad metric
// ("metric.<field>"). Runs nothing.
absl::Status ValidatePatching(const CausalLm& model, const ActivationPatchingSpec& spec);

// ValidatePatching's errors, then the sweeps. `progress` (optional) is called after each pass.
absl::StatusOr<ActivationPatchingOutput> PatchActivations(const CausalLm& model,
                                                          const ActivationPatchingSpec& spec,
                                                          const PatchingProgress& progress);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_ATTRIBUTION_ACTIVATION_PATCHING_H_
