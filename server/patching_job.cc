#include "server/patching_job.h"

#include <google/protobuf/util/json_util.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log_status.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/convert.h"
#include "server/patching_convert.h"
#include "server/request_cost.h"

namespace lensd::server {
namespace {

constexpr char kField[] = "activation_patching.";
// A result cell's metric and normalized effect as JSON text rather than two 4-byte floats.
constexpr int64_t kJsonBytesPerBinaryByte = 3;

absl::Status Prefixed(const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(kField, status.message()));
}

absl::StatusOr<std::vector<int64_t>> Tokens(const v1::Input& input, const LoadedModel& model,
                                            const Limits& limits, const char* field) {
  absl::StatusOr<std::vector<int64_t>> tokens = ResolveOtherInput(input, model, limits, field);
  if (!tokens.ok()) return Prefixed(tokens.status());
  return tokens;
}

void SetTokens(const std::vector<int64_t>& ids, v1::Input* input) {
  input->Clear();
  input->mutable_tokens()->mutable_ids()->Add(ids.begin(), ids.end());
}

// The sweep of a request whose inputs are resolved, checked against the model and its limits.
absl::StatusOr<ActivationPatchingSpec> CheckedSpec(const v1::ActivationPatchingRequest& request,
                                                   std::vector<int64_t> clean,
                                                   std::vector<int64_t> corrupted,
                                                   const LoadedModel& model, const Limits& limits) {
  const ServedModelInfo& info = model.model->info();
  absl::StatusOr<ActivationPatchingSpec> spec =
      ToPatchingSpec(request, std::move(clean), std::move(corrupted), info, limits);
  if (!spec.ok()) return Prefixed(spec.status());
  LENSD_RETURN_IF_ERROR(Prefixed(model.model->ValidatePatching(*spec)));
  RequestCost cost = PatchingCost(*spec, info, PatchingCellsFor(*spec, info));
  cost.answer_bytes *= kJsonBytesPerBinaryByte;
  cost.message_bytes *= kJsonBytesPerBinaryByte;
  cost.what += ", the result as JSON";
  LENSD_RETURN_IF_ERROR(CheckRequestCost(cost, limits));
  return spec;
}

}  // namespace

absl::StatusOr<PatchingJobPlan> PlanPatchingJob(const v1::ActivationPatchingRequest& request,
                                                const LoadedModel& model, const Limits& limits) {
  if (!request.model().empty() && request.model() != model.name) {
    return absl::InvalidArgumentError(absl::StrCat(kField, "model: \"", request.model(),
                                                   "\" where the job's model is \"", model.name,
                                                   "\"; leave it empty or give the same"));
  }
  LENSD_ASSIGN_OR_RETURN(std::vector<int64_t> clean,
                         Tokens(request.clean(), model, limits, "clean"));
  LENSD_ASSIGN_OR_RETURN(std::vector<int64_t> corrupted,
                         Tokens(request.corrupted(), model, limits, "corrupted"));
  v1::ActivationPatchingRequest kept = request;
  kept.set_model(model.name);
  SetTokens(clean, kept.mutable_clean());
  SetTokens(corrupted, kept.mutable_corrupted());
  LENSD_ASSIGN_OR_RETURN(const ActivationPatchingSpec spec,
                         CheckedSpec(kept, std::move(clean), std::move(corrupted), model, limits));
  PatchingJobPlan plan;
  plan.cells = PatchingCellsFor(spec, model.model->info());
  const auto printed = google::protobuf::util::MessageToJsonString(kept, &plan.spec_json);
  if (!printed.ok()) return absl::InternalError(absl::StrCat("spec as JSON: ", printed.ToString()));
  return plan;
}

absl::StatusOr<std::string> RunPatchingJob(const std::string& spec_json, const LoadedModel& model,
                                           const Limits& limits, JobContext& context) {
  v1::ActivationPatchingRequest request;
  const auto parsed = google::protobuf::util::JsonStringToMessage(spec_json, &request);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the job's spec: ", parsed.ToString()));
  }
  LENSD_ASSIGN_OR_RETURN(std::vector<int64_t> clean,
                         Tokens(request.clean(), model, limits, "clean"));
  LENSD_ASSIGN_OR_RETURN(std::vector<int64_t> corrupted,
                         Tokens(request.corrupted(), model, limits, "corrupted"));
  LENSD_ASSIGN_OR_RETURN(
      const ActivationPatchingSpec spec,
      CheckedSpec(request, std::move(clean), std::move(corrupted), model, limits));
  LENSD_RETURN_IF_ERROR(context.KeepGoing());
  const absl::Time start = absl::Now();
  LENSD_ASSIGN_OR_RETURN(
      const ActivationPatchingOutput out,
      model.model->PatchActivations(spec, [&](int64_t done, int64_t total) -> absl::Status {
        LENSD_RETURN_IF_ERROR(context.KeepGoing());
        const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
        const double eta =
            done > 0 ? seconds * static_cast<double>(total - done) / static_cast<double>(done) : 0;
        const nlohmann::json progress = {
            {"step", done}, {"num_steps", total}, {"eta_seconds", eta}};
        LogIfError(context.Progress(done, progress.dump()), "job store: recording progress");
        return absl::OkStatus();
      }));
  v1::ActivationPatchingResult result;
  FillPatchingResult(out, model, spec, &result);
  std::string json;
  const auto printed = google::protobuf::util::MessageToJsonString(result, &json);
  if (!printed.ok()) {
    return absl::InternalError(absl::StrCat("result as JSON: ", printed.ToString()));
  }
  return json;
}

}  // namespace lensd::server
