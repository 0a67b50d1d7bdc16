// A ServedModel for tests of the serving core and the server: no weights, no torch. It reports
// the info it was made with, counts live instances (so that a test sees when the registry really
// let go of a model), and hands each role's calls to the fake of that role the test gave it
// (FakeRoles); a role not given answers UNIMPLEMENTED and validates everything, and its lists are
// empty but for the logit lens.
#ifndef LENSD_CORE_TESTING_FAKE_SERVED_MODEL_H_
#define LENSD_CORE_TESTING_FAKE_SERVED_MODEL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/served_model.h"

namespace lensd::testing {

// The role fakes a test gives a FakeServedModel (shared: one fake may serve several models).
struct FakeRoles {
  std::shared_ptr<DecodingModel> decoding;
  std::shared_ptr<ActivationsModel> activations;
  std::shared_ptr<AttachmentsModel> attachments;
  std::shared_ptr<JobsModel> jobs;
  std::shared_ptr<AttributionModel> attribution;
};

class FakeServedModel : public ServedModel {
 public:
  explicit FakeServedModel(ServedModelInfo info, std::atomic<int>* live = nullptr,
                           FakeRoles roles = {})
      : info_(std::move(info)), live_(live), roles_(std::move(roles)) {
    if (live_ != nullptr) ++*live_;
  }
  ~FakeServedModel() override {
    if (live_ != nullptr) --*live_;
  }

  const ServedModelInfo& info() const override { return info_; }

  // DecodingModel
  absl::StatusOr<std::vector<DecodeOutput>> Decode(absl::Span<const DecodeSpec* const> batch,
                                                   const KeepGoing& keep_going,
                                                   const HostLogProbSink& sink) const override {
    if (!roles_.decoding) return Unimplemented("Decode");
    return roles_.decoding->Decode(batch, keep_going, sink);
  }
  absl::Status ValidateDecode(const DecodeSpec& spec) const override {
    return roles_.decoding ? roles_.decoding->ValidateDecode(spec) : absl::OkStatus();
  }
  absl::StatusOr<GenerateOutput> Generate(
      const GenerateSpec& spec,
      const std::function<absl::Status(int64_t, int64_t)>& on_token) const override {
    if (!roles_.decoding) return Unimplemented("Generate");
    return roles_.decoding->Generate(spec, on_token);
  }

  // ActivationsModel
  absl::Status Activations(
      const ActivationsSpec& spec,
      const std::function<absl::Status(const std::string&, HostTensor)>& sink) const override {
    if (!roles_.activations) return Unimplemented("Activations");
    return roles_.activations->Activations(spec, sink);
  }
  absl::Status ValidateHookPoints(const std::vector<std::string>& names) const override {
    return roles_.activations ? roles_.activations->ValidateHookPoints(names) : absl::OkStatus();
  }
  absl::Status ValidateInterventions(const std::vector<InterventionSpec>& specs, int64_t length,
                                     bool generating) const override {
    return roles_.activations ? roles_.activations->ValidateInterventions(specs, length, generating)
                              : absl::OkStatus();
  }

  // AttachmentsModel
  absl::StatusOr<LensDescription> LoadLens(const std::string& name,
                                           const std::string& dir) override {
    if (!roles_.attachments) return Unimplemented("LoadLens");
    return roles_.attachments->LoadLens(name, dir);
  }
  absl::StatusOr<int64_t> UnloadLens(const std::string& name) override {
    if (!roles_.attachments) return Unimplemented("UnloadLens");
    return roles_.attachments->UnloadLens(name);
  }
  std::vector<LensDescription> Lenses() const override {
    if (!roles_.attachments) return {{"logit", "logit", 0, ""}};
    return roles_.attachments->Lenses();
  }
  absl::StatusOr<int64_t> EstimateLensBytes(const std::string& dir) const override {
    return roles_.attachments ? roles_.attachments->EstimateLensBytes(dir) : 0;
  }
  absl::StatusOr<SaeDescription> LoadSae(const std::string& name, const std::string& dir,
                                         const SaeLoadOptions& options) override {
    if (!roles_.attachments) return Unimplemented("LoadSae");
    return roles_.attachments->LoadSae(name, dir, options);
  }
  absl::StatusOr<int64_t> UnloadSae(const std::string& name) override {
    if (!roles_.attachments) return Unimplemented("UnloadSae");
    return roles_.attachments->UnloadSae(name);
  }
  std::vector<SaeDescription> Saes() const override {
    return roles_.attachments ? roles_.attachments->Saes() : std::vector<SaeDescription>{};
  }
  absl::StatusOr<int64_t> EstimateSaeBytes(const std::string& dir,
                                           const SaeLoadOptions& options) const override {
    return roles_.attachments ? roles_.attachments->EstimateSaeBytes(dir, options) : 0;
  }

  // JobsModel
  absl::StatusOr<TrainLensResult> TrainLens(const TrainLensRun& run) const override {
    if (!roles_.jobs) return Unimplemented("TrainLens");
    return roles_.jobs->TrainLens(run);
  }
  absl::StatusOr<LensMetrics> EvaluateLenses(const EvalLensRun& run) const override {
    if (!roles_.jobs) return Unimplemented("EvaluateLenses");
    return roles_.jobs->EvaluateLenses(run);
  }

  // AttributionModel
  absl::StatusOr<std::vector<SaeEncoding>> EncodeSae(const EncodeSaeSpec& spec) const override {
    if (!roles_.attribution) return Unimplemented("EncodeSae");
    return roles_.attribution->EncodeSae(spec);
  }
  absl::StatusOr<NodeAttributionOutput> AttributeNodes(const NodeAttributionSpec& spec,
                                                       const KeepGoing& keep_going) const override {
    if (!roles_.attribution) return Unimplemented("AttributeNodes");
    return roles_.attribution->AttributeNodes(spec, keep_going);
  }
  absl::StatusOr<LayerAttributionOutput> AttributeLayers(
      const LayerAttributionSpec& spec) const override {
    if (!roles_.attribution) return Unimplemented("AttributeLayers");
    return roles_.attribution->AttributeLayers(spec);
  }
  absl::StatusOr<ActivationPatchingOutput> PatchActivations(
      const ActivationPatchingSpec& spec, const PatchingProgress& progress) const override {
    if (!roles_.attribution) return Unimplemented("PatchActivations");
    return roles_.attribution->PatchActivations(spec, progress);
  }
  absl::Status ValidatePatching(const ActivationPatchingSpec& spec) const override {
    return roles_.attribution ? roles_.attribution->ValidatePatching(spec) : absl::OkStatus();
  }

 private:
  static absl::Status Unimplemented(const char* what) {
    return absl::UnimplementedError(std::string("the fake model does not run ") + what);
  }

  ServedModelInfo info_;
  std::atomic<int>* live_;
  FakeRoles roles_;
};

}  // namespace lensd::testing

#endif  // LENSD_CORE_TESTING_FAKE_SERVED_MODEL_H_
