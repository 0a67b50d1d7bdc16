#include "server/lens_service.h"

#include <cmath>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/attribution_convert.h"
#include "server/call.h"
#include "server/convert.h"
#include "server/lens_work.h"

namespace lensd::server {
namespace {

double NatsToBitsPerByte(int64_t tokens, int64_t bytes) {
  return bytes > 0 ? static_cast<double>(tokens) / static_cast<double>(bytes) / std::log(2.0) : 0.0;
}

// The decode spec of an admitted request, checked against the model.
absl::StatusOr<DecodeSpec> DecodeSpecFor(const v1::DecodeRequest& request, const Admitted& a) {
  if (request.bits_per_byte() && a.text_bytes == 0) {
    return absl::InvalidArgumentError("bits_per_byte: needs input.text (bytes are of the text)");
  }
  LENSD_ASSIGN_OR_RETURN(DecodeSpec spec, ToDecodeSpec(request, a.tokens));
  LENSD_RETURN_IF_ERROR(a.context.model->model->ValidateDecode(spec));
  return spec;
}

}  // namespace

grpc::ServerUnaryReactor* LensService::Decode(grpc::CallbackServerContext* context,
                                              const v1::DecodeRequest* request,
                                              v1::DecodeResponse* response) {
  auto* call = new UnaryCall(env_, context, "Decode");
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  absl::StatusOr<DecodeSpec> spec = a.ok() ? DecodeSpecFor(*request, *a) : a.status();
  if (!spec.ok()) {
    call->Done(spec.status());
    return call;
  }
  const double bpb = NatsToBitsPerByte(static_cast<int64_t>(a->tokens.size()), a->text_bytes);
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work = std::make_unique<DecodeWork>(call, request, response, std::move(a->context),
                                           *std::move(spec), bpb);
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
  return call;
}

grpc::ServerWriteReactor<v1::StreamDecodeResponse>* LensService::StreamDecode(
    grpc::CallbackServerContext* context, const v1::DecodeRequest* request) {
  auto* call = new StreamCall<v1::StreamDecodeResponse>(env_, context, "StreamDecode");
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  absl::StatusOr<DecodeSpec> spec = a.ok() ? DecodeSpecFor(*request, *a) : a.status();
  if (!spec.ok()) {
    call->Done(spec.status());
    return call;
  }
  spec->full_log_probs = true;
  const double bpb = NatsToBitsPerByte(static_cast<int64_t>(a->tokens.size()), a->text_bytes);
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work = std::make_unique<StreamDecodeWork>(call, *request, std::move(a->context),
                                                 *std::move(spec), bpb);
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
  return call;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* LensService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  auto* call = new StreamCall<v1::GenerateResponse>(env_, context, "Generate");
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  absl::StatusOr<GenerateSpec> spec =
      a.ok() ? ToGenerateSpec(*request, a->tokens, env_.limits) : a.status();
  if (spec.ok() && spec->layer > a->context.model->model->info().num_layers) {
    const int64_t layers = a->context.model->model->info().num_layers;
    spec = absl::InvalidArgumentError(
        absl::StrCat("layer: ", spec->layer, " out of range: the model has lens layers 0..",
                     layers - 1, " and ", layers, " for its own output"));
  }
  if (!spec.ok()) {
    call->Done(spec.status());
    return call;
  }
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work = std::make_unique<GenerateWork>(call, std::move(a->context), *std::move(spec));
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
  return call;
}

grpc::ServerWriteReactor<v1::TensorChunk>* LensService::GetActivations(
    grpc::CallbackServerContext* context, const v1::GetActivationsRequest* request) {
  auto* call = new StreamCall<v1::TensorChunk>(env_, context, "GetActivations");
  absl::StatusOr<Admitted> a = Admit(env_, call->info(), request->model(), request->input());
  ActivationsSpec spec;
  absl::Status s = a.status();
  const int64_t chunk = request->chunk_bytes() == 0 ? (1 << 20) : request->chunk_bytes();
  if (s.ok() && (request->hook_points().empty() ||
                 request->hook_points_size() > env_.limits.max_hook_points)) {
    s = absl::InvalidArgumentError(
        absl::StrCat("hook_points: give 1..", env_.limits.max_hook_points,
                     " TransformerLens hook names (GetModel lists them)"));
  }
  if (s.ok() && request->dtype() != "" && request->dtype() != "float32" &&
      request->dtype() != "native") {
    s = absl::InvalidArgumentError(
        absl::StrCat("dtype: \"", request->dtype(), "\" is not float32 or native"));
  }
  if (s.ok() && (chunk < 4096 || chunk > (4 << 20))) {
    s = absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes: ", chunk, " is outside 4096..4194304"));
  }
  if (s.ok()) {
    spec.tokens = a->tokens;
    spec.hook_points.assign(request->hook_points().begin(), request->hook_points().end());
    spec.native_dtype = request->dtype() == "native";
    spec.gradients = request->gradients();
    if (spec.gradients) {
      absl::StatusOr<MetricSpec> metric = ToMetricSpec(request->metric());
      if (metric.ok()) {
        spec.metric = *std::move(metric);
      } else {
        s = metric.status();
      }
    } else if (request->has_metric()) {
      s = absl::InvalidArgumentError("metric: given without gradients = true");
    }
  }
  if (s.ok()) {
    s = a->context.model->model->ValidateHookPoints(spec.hook_points);
    if (!s.ok()) s = absl::InvalidArgumentError(absl::StrCat("hook_points: ", s.message()));
  }
  if (!s.ok()) {
    call->Done(s);
    return call;
  }
  const std::shared_ptr<const LoadedModel> model = a->context.model;
  auto work =
      std::make_unique<ActivationsWork>(call, std::move(a->context), std::move(spec), chunk);
  Schedule(call->info(), call->cancellation(), static_cast<int64_t>(a->tokens.size()), work.get());
  Submit(*model, std::move(work));
  return call;
}

grpc::ServerUnaryReactor* LensService::LayerAttribution(grpc::CallbackServerContext* context,
                                                        const v1::LayerAttributionRequest* request,
                                                        v1::LayerAttributionResponse* response) {
  auto* call = new UnaryCall(env_, context, "LayerAttribution");
  RunOnModel(env_, call, request->model(), request->input(),
             [request, response](const Admitted& a) -> absl::StatusOr<UnaryFn> {
               LENSD_ASSIGN_OR_RETURN(LayerAttributionSpec spec,
                                      ToLayerAttributionSpec(*request, a.tokens));
               return
                   [spec = std::move(spec), model = a.context.model, response](const KeepGoing&) {
                     LENSD_ASSIGN_OR_RETURN(const LayerAttributionOutput out,
                                            model->model->AttributeLayers(spec));
                     FillLayerAttributionResponse(out, *model, spec.tokens, response);
                     return absl::OkStatus();
                   };
             });
  return call;
}

}  // namespace lensd::server
