// The SAEs attached to one served model, and the SAE and attribution work that uses them
// (EncodeSae, NodeAttribution, LayerAttribution, activation gradients). ServedModel's
// implementation owns one and forwards to it.
//
// Thread-safe: loads and unloads may happen while requests run; a request keeps the SAEs it
// started with alive until it ends.
#ifndef LENSD_CORE_ENGINE_SERVED_SERVED_SAES_H_
#define LENSD_CORE_ENGINE_SERVED_SERVED_SAES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/attribution_types.h"
#include "core/engine/attribution/attribution.h"
#include "core/engine/interventions/interventions.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/sae/sae.h"
#include "core/lens_types.h"
#include "core/served_model.h"

namespace lensd::engine {

class ServedSaes {
 public:
  explicit ServedSaes(const CausalLm& model) : model_(model) {}

  // Loads the SAE folder `dir` as `name` onto the model's device. ALREADY_EXISTS for a name in
  // use; INVALID_ARGUMENT for a bad dtype or a hook point the model lacks or whose width is not
  // the SAE's d_in; otherwise the errors of Sae::Load.
  absl::StatusOr<SaeDescription> Load(const std::string& name, const std::string& dir,
                                      const SaeLoadOptions& options);
  // NOT_FOUND for an unknown SAE. Returns the bytes freed (once the last request using it ends).
  absl::StatusOr<int64_t> Unload(const std::string& name);
  std::vector<SaeDescription> List() const;
  // Finds loaded SAEs by name for interventions (valid while this object lives).
  SaeLookup Lookup() const;
  // Bytes the folder's weights will take in the dtype `options` asks for (cfg.json and the
  // safetensors header only).
  absl::StatusOr<int64_t> EstimateBytes(const std::string& dir,
                                        const SaeLoadOptions& options) const;

  // Tokens are validated by the caller. NOT_FOUND naming the field for an SAE not loaded;
  // INVALID_ARGUMENT when no SAE is loaded and none is named.
  absl::StatusOr<std::vector<SaeEncoding>> Encode(const EncodeSaeSpec& spec) const;
  absl::StatusOr<NodeAttributionOutput> Attribute(const NodeAttributionSpec& spec,
                                                  const KeepGoing& keep_going) const;

 private:
  struct Entry {
    std::shared_ptr<const Sae> sae;
    HookPoint point;
    SaeDescription description;
  };
  // The named SAEs (all when `names` is empty) as sites, with the references that keep them.
  absl::StatusOr<std::vector<Entry>> Find(const std::vector<std::string>& names,
                                          const char* field) const;
  static std::vector<SaeSite> Sites(const std::vector<Entry>& entries);

  const CausalLm& model_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> saes_ ABSL_GUARDED_BY(mu_);
};

// The values at the spec's hook points and, when spec.gradients, d metric / d value at each,
// from one forward (and backward) of the sequence; `sink` gets them in request order (a value,
// then its gradient named "<point>.grad"), after `interventions` (optional). INVALID_ARGUMENT for
// an unknown point or a bad metric.
absl::Status ActivationsWithGradients(
    const CausalLm& model, const ActivationsSpec& spec, const Interventions* interventions,
    const std::function<absl::Status(const std::string&, const at::Tensor&)>& sink);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_SERVED_SERVED_SAES_H_
