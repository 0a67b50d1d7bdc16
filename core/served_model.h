// A loaded model with its lenses, as the registry, the scheduler's work items and the server see
// it: torch-free interfaces, one per role (decoding, activations, attachments, jobs,
// attribution), that core/engine implements in one class (core/engine/served/engine_factory.h
// makes them). Requests and results are the plain types of core/lens_types.h; tensors never cross.
//
// Thread-safe: Decode, Generate, Activations and the SAE work may run concurrently on one
// ServedModel; lens and SAE loads and unloads may happen while they run (a request keeps the lens
// or SAEs it started with).
#ifndef LENSD_CORE_SERVED_MODEL_H_
#define LENSD_CORE_SERVED_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/attribution_types.h"
#include "core/eval_spec.h"
#include "core/lens_types.h"
#include "core/patching_types.h"
#include "core/training_spec.h"

namespace lensd {

struct ServedModelOptions {
  std::string dtype = "float32";  // float32 | bfloat16 | float16 | auto
  std::string device = "cpu";     // cpu | cuda | cuda:<index>
};

// What a loaded model is; fixed after load.
struct ServedModelInfo {
  std::string architecture;  // config.json model_type
  int64_t num_layers = 0;
  int64_t d_model = 0;
  int64_t num_heads = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;  // 0: unbounded (rotary)
  bool absolute_positions = false;
  std::string dtype;
  std::string device;  // canonical: "cpu", "cuda:0"
  int64_t parameter_bytes = 0;
  std::vector<int64_t> eos_token_ids;
  std::vector<std::string> hook_points;  // TransformerLens names, forward order
  // Per hook point (same order): elements per position; attention scores and patterns hold
  // that many per pair of query and key positions (hook_per_key_position).
  std::vector<int64_t> hook_widths;
  std::vector<bool> hook_per_key_position;
};

struct LensDescription {
  std::string name;
  std::string kind;  // "logit" or "tuned"
  int64_t bytes = 0;
  std::string base_model;
};

// Receives one row's log-probabilities [positions, vocab] (float32, nats) for the request at
// `index` of a Decode batch.
using HostLogProbSink =
    std::function<absl::Status(size_t index, int64_t row_layer, const HostTensor& log_probs)>;
// Returns non-OK (CANCELLED, DEADLINE_EXCEEDED) to stop the work at the next check.
using KeepGoing = std::function<absl::Status()>;

// The roles a loaded model plays, one interface each, so that a part of the server depends only
// on the role it uses and a test fakes only that role (core/testing/fake_served_model.h).

// Decoding and generation: the Lens service's Decode, StreamDecode and Generate.
class DecodingModel {
 public:
  virtual ~DecodingModel() = default;
  // Decodes a batch of compatible specs (equal BatchKey()) in one forward pass; one output per
  // spec, in order. INVALID_ARGUMENT naming the field for bad specs (a batch is validated as a
  // whole; callers validate single specs with ValidateDecode first); NOT_FOUND for an unknown lens.
  virtual absl::StatusOr<std::vector<DecodeOutput>> Decode(
      absl::Span<const DecodeSpec* const> batch, const KeepGoing& keep_going,
      const HostLogProbSink& sink) const = 0;
  // Checks one spec against the model without running it.
  virtual absl::Status ValidateDecode(const DecodeSpec& spec) const = 0;
  // Generates, calling on_token(step, token) after each new token.
  virtual absl::StatusOr<GenerateOutput> Generate(
      const GenerateSpec& spec,
      const std::function<absl::Status(int64_t, int64_t)>& on_token) const = 0;
};

// Activation capture and the checks of hook points and interventions that every run shares.
class ActivationsModel {
 public:
  virtual ~ActivationsModel() = default;
  // Runs the sequence and hands each requested point's value to `sink` in request order.
  virtual absl::Status Activations(
      const ActivationsSpec& spec,
      const std::function<absl::Status(const std::string& name, HostTensor tensor)>& sink)
      const = 0;
  // INVALID_ARGUMENT naming the hook point that this model lacks.
  virtual absl::Status ValidateHookPoints(const std::vector<std::string>& names) const = 0;
  // Checks a request's interventions against the model without running anything, for a sequence
  // of `length` tokens (`generating`: Generate, whose positions go past it): INVALID_ARGUMENT
  // "interventions[i].<field>: ..." saying what would fit; NOT_FOUND for a clamp on an SAE not
  // loaded.
  virtual absl::Status ValidateInterventions(const std::vector<InterventionSpec>& specs,
                                             int64_t length, bool generating) const = 0;
};

// Lenses and SAEs attached to the model; loads and unloads may happen while requests run (a
// request keeps the lens or SAEs it started with).
class AttachmentsModel {
 public:
  virtual ~AttachmentsModel() = default;
  // Loads the tuned-lens folder `dir` as `name`. ALREADY_EXISTS for a name in use; otherwise the
  // errors of TunedLens::Load.
  virtual absl::StatusOr<LensDescription> LoadLens(const std::string& name,
                                                   const std::string& dir) = 0;
  // NOT_FOUND for an unknown lens; INVALID_ARGUMENT for "logit". Returns the bytes freed (once
  // the last request using the lens is done).
  virtual absl::StatusOr<int64_t> UnloadLens(const std::string& name) = 0;
  virtual std::vector<LensDescription> Lenses() const = 0;
  // Bytes a tuned-lens folder's translators will take on this model's device (config.json only).
  virtual absl::StatusOr<int64_t> EstimateLensBytes(const std::string& dir) const = 0;
  // Attaches the SAE folder `dir` (SAELens or sparsify) as `name`. ALREADY_EXISTS for a name in
  // use; INVALID_ARGUMENT naming the file or field for a malformed folder, a bad dtype, or a hook
  // point the model lacks or whose width is not the SAE's d_in.
  virtual absl::StatusOr<SaeDescription> LoadSae(const std::string& name, const std::string& dir,
                                                 const SaeLoadOptions& options) = 0;
  // NOT_FOUND for an unknown SAE. Returns the bytes freed (once the last request using it ends).
  virtual absl::StatusOr<int64_t> UnloadSae(const std::string& name) = 0;
  virtual std::vector<SaeDescription> Saes() const = 0;
  // Bytes the SAE folder's weights will take on this model's device (headers only).
  virtual absl::StatusOr<int64_t> EstimateSaeBytes(const std::string& dir,
                                                   const SaeLoadOptions& options) const = 0;
};

// Lens training and evaluation: a job's work, on the caller's thread.
class JobsModel {
 public:
  virtual ~JobsModel() = default;
  // Trains a tuned lens of this model and writes it to run.output_dir. A warm-start lens
  // (run.spec.warm_start) must be loaded: FAILED_PRECONDITION otherwise. Other errors as
  // engine/training/lens_training_run.h.
  virtual absl::StatusOr<TrainLensResult> TrainLens(const TrainLensRun& run) const = 0;
  // Evaluates run.spec.lenses (each loaded: NOT_FOUND otherwise) on the first
  // spec.num_batches() x spec.batch chunks in run.order. INVALID_ARGUMENT when there is no chunk;
  // CANCELLED / ABORTED as run.keep_going says.
  virtual absl::StatusOr<LensMetrics> EvaluateLenses(const EvalLensRun& run) const = 0;
};

// SAE features, attribution and activation patching: the Attribution service and patching jobs.
class AttributionModel {
 public:
  virtual ~AttributionModel() = default;
  // Sparse feature activations of the named SAEs (all when none is named) on one sequence.
  // NOT_FOUND naming "saes" for an SAE not loaded; FAILED_PRECONDITION when none is loaded.
  virtual absl::StatusOr<std::vector<SaeEncoding>> EncodeSae(const EncodeSaeSpec& spec) const = 0;
  // Indirect effects of SAE features and error nodes on a metric (engine/attribution/);
  // `keep_going` (optional) is polled between integrated-gradients sites and exact-patching chunks.
  virtual absl::StatusOr<NodeAttributionOutput> AttributeNodes(
      const NodeAttributionSpec& spec, const KeepGoing& keep_going = nullptr) const = 0;
  // Direct logit attribution or the logit lens per layer at one position.
  virtual absl::StatusOr<LayerAttributionOutput> AttributeLayers(
      const LayerAttributionSpec& spec) const = 0;
  // Activation patching sweeps (core/patching_types.h); `progress` after each batched pass.
  virtual absl::StatusOr<ActivationPatchingOutput> PatchActivations(
      const ActivationPatchingSpec& spec, const PatchingProgress& progress) const = 0;
  // PatchActivations's INVALID_ARGUMENT errors (lengths, token ids, layers, positions, sites,
  // metric) without running anything.
  virtual absl::Status ValidatePatching(const ActivationPatchingSpec& spec) const = 0;
};

// A loaded model: what it is, and every role.
class ServedModel : public DecodingModel,
                    public ActivationsModel,
                    public AttachmentsModel,
                    public JobsModel,
                    public AttributionModel {
 public:
  ~ServedModel() override = default;
  virtual const ServedModelInfo& info() const = 0;

 protected:
  ServedModel() = default;
};

}  // namespace lensd

#endif  // LENSD_CORE_SERVED_MODEL_H_
