// Interventions made ready for a forward pass: each InterventionSpec (core/intervention_types.h)
// checked against the model and the run, its tensors on the model's device, the source runs of
// patches and the reference means computed; Install turns them into edits of a Hooks object.
//
// Edits see the positions of a KV-cache step (Hooks' offset), so Generate applies them at every
// step to the positions asked for, and the cache holds the edited keys and values.
// Immutable after Prepare; thread-safe to Install into any number of Hooks.
#ifndef LENSD_CORE_ENGINE_INTERVENTIONS_INTERVENTIONS_H_
#define LENSD_CORE_ENGINE_INTERVENTIONS_INTERVENTIONS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/model/hooks.h"
#include "core/engine/sae/sae.h"
#include "core/intervention_types.h"

namespace lensd::engine {

// A loaded SAE and its hook point, by name; NOT_FOUND naming the SAE otherwise.
using SaeLookup = std::function<absl::StatusOr<std::pair<std::shared_ptr<const Sae>, HookPoint>>(
    const std::string& name)>;

// What the interventions run on.
struct InterventionRun {
  int64_t length = 0;       // tokens of the sequence (the prompt, in Generate)
  bool generating = false;  // positions past `length` will be computed (Generate)
};

class Interventions {
 public:
  Interventions() = default;

  // Checks every spec without running anything: INVALID_ARGUMENT "interventions[i].<field>: ..."
  // saying what would fit (unknown hook point, position or head out of range, a tensor of the
  // wrong shape or dtype, a patch source whose positions do not align); NOT_FOUND for an SAE
  // clamp on an SAE not loaded.
  static absl::Status Validate(const CausalLm& model, const std::vector<InterventionSpec>& specs,
                               const InterventionRun& run, const SaeLookup& saes);
  // Validates, then runs the patch sources and reference inputs (one clean forward each).
  static absl::StatusOr<Interventions> Prepare(const CausalLm& model,
                                               const std::vector<InterventionSpec>& specs,
                                               const InterventionRun& run, const SaeLookup& saes);

  bool empty() const { return edits_.empty(); }
  // Adds the edits to `hooks`, after any it holds, in spec order.
  void Install(Hooks& hooks) const;

  struct Edit;

 private:
  std::vector<std::shared_ptr<const Edit>> edits_;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_INTERVENTIONS_INTERVENTIONS_H_
