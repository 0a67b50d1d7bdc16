// A ServedModel for tests of the serving core (registry, scheduler, services): no weights, no
// torch. It reports the info it was made with, counts live instances (so that a test sees when
// the registry really let go of a model) and answers every request with UNIMPLEMENTED, which
// the tests of admission and lifetime never reach.
#ifndef LENSD_CORE_TESTING_FAKE_SERVED_MODEL_H_
#define LENSD_CORE_TESTING_FAKE_SERVED_MODEL_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/served_model.h"

namespace lensd::testing {

class FakeServedModel : public ServedModel {
 public:
  explicit FakeServedModel(ServedModelInfo info, std::atomic<int>* live = nullptr)
      : info_(std::move(info)), live_(live) {
    if (live_ != nullptr) ++*live_;
  }
  ~FakeServedModel() override {
    if (live_ != nullptr) --*live_;
  }

  const ServedModelInfo& info() const override { return info_; }
  absl::StatusOr<LensDescription> LoadLens(const std::string& name, const std::string&) override {
    return Unimplemented("LoadLens");
  }
  absl::StatusOr<int64_t> UnloadLens(const std::string&) override {
    return Unimplemented("UnloadLens");
  }
  std::vector<LensDescription> Lenses() const override { return {{"logit", "logit", 0, ""}}; }
  absl::StatusOr<int64_t> EstimateLensBytes(const std::string&) const override { return 0; }
  absl::StatusOr<std::vector<DecodeOutput>> Decode(absl::Span<const DecodeSpec* const>,
                                                   const KeepGoing&,
                                                   const HostLogProbSink&) const override {
    return Unimplemented("Decode");
  }
  absl::Status ValidateDecode(const DecodeSpec&) const override { return absl::OkStatus(); }
  absl::StatusOr<GenerateOutput> Generate(
      const GenerateSpec&, const std::function<absl::Status(int64_t, int64_t)>&) const override {
    return Unimplemented("Generate");
  }
  absl::Status Activations(
      const ActivationsSpec&,
      const std::function<absl::Status(const std::string&, HostTensor)>&) const override {
    return Unimplemented("Activations");
  }
  absl::Status ValidateHookPoints(const std::vector<std::string>&) const override {
    return absl::OkStatus();
  }
  absl::Status ValidateInterventions(const std::vector<InterventionSpec>&, int64_t,
                                     bool) const override {
    return absl::OkStatus();
  }
  absl::StatusOr<TrainLensResult> TrainLens(const TrainLensRun&) const override {
    return Unimplemented("TrainLens");
  }
  absl::StatusOr<LensMetrics> EvaluateLenses(const EvalLensRun&) const override {
    return Unimplemented("EvaluateLenses");
  }
  absl::StatusOr<SaeDescription> LoadSae(const std::string&, const std::string&,
                                         const SaeLoadOptions&) override {
    return Unimplemented("LoadSae");
  }
  absl::StatusOr<int64_t> UnloadSae(const std::string&) override {
    return Unimplemented("UnloadSae");
  }
  std::vector<SaeDescription> Saes() const override { return {}; }
  absl::StatusOr<int64_t> EstimateSaeBytes(const std::string&,
                                           const SaeLoadOptions&) const override {
    return 0;
  }
  absl::StatusOr<std::vector<SaeEncoding>> EncodeSae(const EncodeSaeSpec&) const override {
    return Unimplemented("EncodeSae");
  }
  absl::StatusOr<NodeAttributionOutput> AttributeNodes(const NodeAttributionSpec&,
                                                       const KeepGoing&) const override {
    return Unimplemented("AttributeNodes");
  }
  absl::StatusOr<LayerAttributionOutput> AttributeLayers(
      const LayerAttributionSpec&) const override {
    return Unimplemented("AttributeLayers");
  }
  absl::StatusOr<ActivationPatchingOutput> PatchActivations(
      const ActivationPatchingSpec&, const PatchingProgress&) const override {
    return Unimplemented("PatchActivations");
  }
  absl::Status ValidatePatching(const ActivationPatchingSpec&) const override {
    return absl::OkStatus();
  }

 private:
  static absl::Status Unimplemented(const char* what) {
    return absl::UnimplementedError(std::string("the fake model does not run ") + what);
  }

  ServedModelInfo info_;
  std::atomic<int>* live_;
};

}  // namespace lensd::testing

#endif  // LENSD_CORE_TESTING_FAKE_SERVED_MODEL_H_
