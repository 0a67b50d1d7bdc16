#include "server/lens_service.h"

#include <cmath>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/attribution_convert.h"
#include "server/call.h"
#include "server/convert.h"
#include "server/intervention_convert.h"
#include "server/lens_work.h"
#include "server/patching.h"
#include "server/patching_convert.h"
#include "server/request_cost.h"
#include "server/rpc_handlers.h"

namespace lensd::server {
namespace {

// The request's interventions, checked against the model before the call is queued
// (`generating`: Generate's); their patch sources and mean references are counted as tokens of
// the call (each is one more forward pass).
absl::StatusOr<std::vector<InterventionSpec>> InterventionsFor(
    const google::protobuf::RepeatedPtrField<v1::Intervention>& list, const Admitted& a,
    CallInfo& info, bool generating = false) {
  int64_t source_tokens = 0;
  LENSD_ASSIGN_OR_RETURN(
      std::vector<InterventionSpec> specs,
      ToInterventions(list, *a.context.model, info.env().limits, &source_tokens));
  LENSD_RETURN_IF_ERROR(a.context.model->model->ValidateInterventions(
      specs, static_cast<int64_t>(a.tokens.size()), generating));
  info.add_tokens(source_tokens);
  return specs;
}

// The decode spec of an admitted request, checked against the model and charged to the call
// (`stream`: StreamDecode, which also sends every row's log-probabilities).
absl::StatusOr<DecodeSpec> DecodeSpecFor(const v1::DecodeRequest& request, const Admitted& a,
                                         CallInfo& info, bool stream) {
  if (request.bits_per_byte() && a.text_bytes == 0) {
    return absl::InvalidArgumentError("bits_per_byte: needs input.text (bytes are of the text)");
  }
  LENSD_ASSIGN_OR_RETURN(DecodeSpec spec, ToDecodeSpec(request, a.tokens));
  LENSD_RETURN_IF_ERROR(CheckDistinct("layers", spec.layers));
  LENSD_RETURN_IF_ERROR(CheckDistinct("positions", spec.positions));
  LENSD_ASSIGN_OR_RETURN(spec.interventions, InterventionsFor(request.interventions(), a, info));
  const ServedModel& model = *a.context.model->model;
  LENSD_RETURN_IF_ERROR(model.ValidateDecode(spec));
  LENSD_RETURN_IF_ERROR(info.Charge(DecodeCost(spec, model.info(), stream)));
  return spec;
}

// The generation spec of an admitted request, checked and charged to the call.
absl::StatusOr<GenerateSpec> GenerateSpecFor(const v1::GenerateRequest& request, const Admitted& a,
                                             CallInfo& info) {
  LENSD_ASSIGN_OR_RETURN(GenerateSpec spec, ToGenerateSpec(request, a.tokens, info.env().limits));
  const ServedModelInfo& model = a.context.model->model->info();
  if (spec.layer > model.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer: ", spec.layer, " out of range: the model has lens layers 0..",
                     model.num_layers - 1, " and ", model.num_layers, " for its own output"));
  }
  LENSD_ASSIGN_OR_RETURN(spec.interventions,
                         InterventionsFor(request.interventions(), a, info, /*generating=*/true));
  spec.also_unedited = request.also_unedited();
  LENSD_RETURN_IF_ERROR(info.Charge(GenerateCost(spec, model)));
  return spec;
}

// The capture spec of an admitted GetActivations request, checked against the model and charged
// to the call.
absl::StatusOr<ActivationsSpec> ActivationsSpecFor(const v1::GetActivationsRequest& request,
                                                   const Admitted& a, CallInfo& info) {
  const Limits& limits = info.env().limits;
  if (request.hook_points().empty() || request.hook_points_size() > limits.max_hook_points) {
    return absl::InvalidArgumentError(
        absl::StrCat("hook_points: give 1..", limits.max_hook_points,
                     " TransformerLens hook names (GetModel lists them)"));
  }
  if (request.dtype() != "" && request.dtype() != "float32" && request.dtype() != "native") {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype: \"", request.dtype().substr(0, 64), "\" is not float32 or native"));
  }
  if (request.chunk_bytes() != 0 &&
      (request.chunk_bytes() < 4096 || request.chunk_bytes() > (4 << 20))) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes: ", request.chunk_bytes(), " is outside 4096..4194304"));
  }
  ActivationsSpec spec;
  spec.tokens = a.tokens;
  spec.hook_points.assign(request.hook_points().begin(), request.hook_points().end());
  LENSD_RETURN_IF_ERROR(CheckDistinct("hook_points", spec.hook_points));
  spec.native_dtype = request.dtype() == "native";
  spec.gradients = request.gradients();
  if (spec.gradients) {
    LENSD_ASSIGN_OR_RETURN(spec.metric, ToMetricSpec(request.metric()));
  } else if (request.has_metric()) {
    return absl::InvalidArgumentError("metric: given without gradients = true");
  }
  LENSD_ASSIGN_OR_RETURN(spec.interventions, InterventionsFor(request.interventions(), a, info));
  const ServedModel& model = *a.context.model->model;
  if (absl::Status s = model.ValidateHookPoints(spec.hook_points); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("hook_points: ", s.message()));
  }
  LENSD_RETURN_IF_ERROR(info.Charge(ActivationsCost(spec, model.info())));
  return spec;
}

// The sweep spec of an admitted ActivationPatching request (its clean input admitted).
absl::StatusOr<ActivationPatchingSpec> PatchingSpecFor(const v1::ActivationPatchingRequest& request,
                                                       const Admitted& a, CallInfo& info) {
  LENSD_ASSIGN_OR_RETURN(
      std::vector<int64_t> corrupted,
      ResolveOtherInput(request.corrupted(), *a.context.model, info.env().limits, "corrupted"));
  info.add_tokens(static_cast<int64_t>(corrupted.size()));
  const ServedModelInfo& model = a.context.model->model->info();
  LENSD_ASSIGN_OR_RETURN(
      ActivationPatchingSpec spec,
      ToPatchingSpec(request, a.tokens, std::move(corrupted), model, info.env().limits));
  LENSD_RETURN_IF_ERROR(a.context.model->model->ValidatePatching(spec));
  LENSD_RETURN_IF_ERROR(info.Charge(PatchingCost(spec, model, PatchingCellsFor(spec, model))));
  return spec;
}

}  // namespace

LensService::LensService(const ServerEnv& env) : env_(env) {
  MarkMethodRawCallback(MethodIndex(v1::Lens::service_full_name(), "Decode"),
                        UnaryHandler(env, "Decode", this, &LensService::Decode));
  MarkMethodRawCallback(
      MethodIndex(v1::Lens::service_full_name(), "LayerAttribution"),
      UnaryHandler(env, "LayerAttribution", this, &LensService::LayerAttribution));
  MarkMethodRawCallback(MethodIndex(v1::Lens::service_full_name(), "StreamDecode"),
                        StreamHandler(env, "StreamDecode", this, &LensService::StreamDecode));
  MarkMethodRawCallback(MethodIndex(v1::Lens::service_full_name(), "Generate"),
                        StreamHandler(env, "Generate", this, &LensService::Generate));
  MarkMethodRawCallback(MethodIndex(v1::Lens::service_full_name(), "GetActivations"),
                        StreamHandler(env, "GetActivations", this, &LensService::GetActivations));
  MarkMethodRawCallback(
      MethodIndex(v1::Lens::service_full_name(), "ActivationPatching"),
      StreamHandler(env, "ActivationPatching", this, &LensService::ActivationPatching));
}

void LensService::Decode(UnaryCall* call, const v1::DecodeRequest* request,
                         v1::DecodeResponse* response) {
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  absl::StatusOr<DecodeSpec> spec =
      a.ok() ? DecodeSpecFor(*request, *a, call->info(), false) : a.status();
  if (!spec.ok()) {
    call->Done(spec.status());
    return;
  }
  const double bpb = NatsToBitsPerByte(static_cast<int64_t>(a->tokens.size()), a->text_bytes);
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work = std::make_unique<DecodeWork>(call, request, response, std::move(a->context),
                                           *std::move(spec), bpb);
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
}

void LensService::StreamDecode(StreamCall<v1::StreamDecodeResponse>* call,
                               const v1::DecodeRequest* request) {
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  absl::StatusOr<DecodeSpec> spec =
      a.ok() ? DecodeSpecFor(*request, *a, call->info(), true) : a.status();
  if (!spec.ok()) {
    call->Done(spec.status());
    return;
  }
  spec->full_log_probs = true;
  const double bpb = NatsToBitsPerByte(static_cast<int64_t>(a->tokens.size()), a->text_bytes);
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work = std::make_unique<StreamDecodeWork>(call, *request, std::move(a->context),
                                                 *std::move(spec), bpb);
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
}

void LensService::Generate(StreamCall<v1::GenerateResponse>* call,
                           const v1::GenerateRequest* request) {
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  absl::StatusOr<GenerateSpec> spec =
      a.ok() ? GenerateSpecFor(*request, *a, call->info()) : a.status();
  if (!spec.ok()) {
    call->Done(spec.status());
    return;
  }
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work = std::make_unique<GenerateWork>(call, std::move(a->context), *std::move(spec));
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
}

void LensService::GetActivations(StreamCall<v1::TensorChunk>* call,
                                 const v1::GetActivationsRequest* request) {
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  absl::StatusOr<ActivationsSpec> spec =
      a.ok() ? ActivationsSpecFor(*request, *a, call->info()) : a.status();
  if (!spec.ok()) {
    call->Done(spec.status());
    return;
  }
  const int64_t chunk = request->chunk_bytes() == 0 ? (1 << 20) : request->chunk_bytes();
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work =
      std::make_unique<ActivationsWork>(call, std::move(a->context), *std::move(spec), chunk);
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
}

void LensService::LayerAttribution(UnaryCall* call, const v1::LayerAttributionRequest* request,
                                   v1::LayerAttributionResponse* response) {
  RunOnModel(env_, call, request->model(), request->input(),
             [call, request, response](const Admitted& a) -> absl::StatusOr<UnaryFn> {
               LENSD_ASSIGN_OR_RETURN(LayerAttributionSpec spec,
                                      ToLayerAttributionSpec(*request, a.tokens));
               LENSD_ASSIGN_OR_RETURN(spec.interventions,
                                      InterventionsFor(request->interventions(), a, call->info()));
               LENSD_RETURN_IF_ERROR(
                   call->info().Charge(LayerAttributionCost(spec, a.context.model->model->info())));
               return
                   [spec = std::move(spec), model = a.context.model, response](const KeepGoing&) {
                     LENSD_ASSIGN_OR_RETURN(const LayerAttributionOutput out,
                                            model->model->AttributeLayers(spec));
                     FillLayerAttributionResponse(out, *model, spec.tokens, response);
                     return absl::OkStatus();
                   };
             });
}

void LensService::ActivationPatching(StreamCall<v1::ActivationPatchingResponse>* call,
                                     const v1::ActivationPatchingRequest* request) {
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->clean());
  absl::StatusOr<ActivationPatchingSpec> spec =
      a.ok() ? PatchingSpecFor(*request, *a, call->info()) : RenameInputField(a.status(), "clean");
  if (!spec.ok()) {
    call->Done(spec.status());
    return;
  }
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work = std::make_unique<PatchingWork>(call, std::move(a->context), *std::move(spec));
  Schedule(call->info(), call->cancellation(), 2 * static_cast<int64_t>(a->tokens.size()),
           work.get());
  Submit(*model, std::move(work));
}

}  // namespace lensd::server
