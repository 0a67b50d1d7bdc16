#include "server/attribution_service.h"

#include <functional>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/attribution_convert.h"
#include "server/call.h"
#include "server/convert.h"
#include "server/intervention_convert.h"
#include "server/lens_work.h"
#include "server/request_cost.h"
#include "server/rpc_handlers.h"

namespace lensd::server {
AttributionService::AttributionService(const ServerEnv& env) : env_(env) {
  MarkMethodRawCallback(MethodIndex(v1::Attribution::service_full_name(), "EncodeSae"),
                        UnaryHandler(env, "EncodeSae", this, &AttributionService::EncodeSae));
  MarkMethodRawCallback(
      MethodIndex(v1::Attribution::service_full_name(), "NodeAttribution"),
      UnaryHandler(env, "NodeAttribution", this, &AttributionService::NodeAttribution));
}

void AttributionService::EncodeSae(UnaryCall* call, const v1::EncodeSaeRequest* request,
                                   v1::EncodeSaeResponse* response) {
  RunOnModel(
      env_, call, request->model(), request->input(),
      [call, request, response](const Admitted& a) -> absl::StatusOr<UnaryFn> {
        LENSD_ASSIGN_OR_RETURN(EncodeSaeSpec spec, ToEncodeSaeSpec(*request, a.tokens));
        LENSD_RETURN_IF_ERROR(CheckDistinct("saes", spec.saes));
        LENSD_RETURN_IF_ERROR(call->info().Charge(
            EncodeSaeCost(spec, NamedSaes(*a.context.model->model, spec.saes))));
        spec.excluded_positions =
            ExcludedPositions(*a.context.model, spec.tokens, spec.saes,
                              request->has_exclude_special_tokens()
                                  ? std::optional<bool>(request->exclude_special_tokens())
                                  : std::nullopt);
        return [spec = std::move(spec), model = a.context.model, response](const KeepGoing&) {
          LENSD_ASSIGN_OR_RETURN(const std::vector<SaeEncoding> out, model->model->EncodeSae(spec));
          FillEncodeSaeResponse(out, *model, spec.tokens, response);
          return absl::OkStatus();
        };
      });
}

namespace {

// The spec of an admitted NodeAttribution request: its other inputs resolved and counted, its
// cost charged to the call.
absl::StatusOr<NodeAttributionSpec> NodeAttributionSpecFor(
    const ServerEnv& env, UnaryCall* call, const v1::NodeAttributionRequest& request,
    const Admitted& a) {
  const LoadedModel& model = *a.context.model;
  std::vector<int64_t> patch;
  if (request.has_patch()) {
    LENSD_ASSIGN_OR_RETURN(patch, ResolveOtherInput(request.patch(), model, env.limits, "patch"));
  }
  std::vector<std::vector<int64_t>> reference;
  int64_t total = static_cast<int64_t>(a.tokens.size() + patch.size());
  for (int i = 0; i < request.reference_size(); ++i) {
    LENSD_ASSIGN_OR_RETURN(reference.emplace_back(),
                           ResolveOtherInput(request.reference(i), model, env.limits,
                                             absl::StrCat("reference[", i, "]")));
    total += static_cast<int64_t>(reference.back().size());
  }
  if (total > env.limits.max_tokens_per_request * 16) {
    return absl::ResourceExhaustedError(
        absl::StrCat("reference: ", total, " tokens in all inputs exceed ",
                     env.limits.max_tokens_per_request * 16, " (16 x max_tokens_per_request)"));
  }
  call->info().add_tokens(total - static_cast<int64_t>(a.tokens.size()));
  LENSD_ASSIGN_OR_RETURN(
      NodeAttributionSpec spec,
      ToNodeAttributionSpec(request, a.tokens, std::move(patch), std::move(reference)));
  int64_t source_tokens = 0;
  LENSD_ASSIGN_OR_RETURN(spec.interventions, ToInterventions(request.interventions(), model,
                                                             env.limits, &source_tokens));
  LENSD_RETURN_IF_ERROR(model.model->ValidateInterventions(
      spec.interventions, static_cast<int64_t>(a.tokens.size()), /*generating=*/false));
  call->info().add_tokens(source_tokens);
  LENSD_RETURN_IF_ERROR(CheckDistinct("saes", spec.saes));
  LENSD_RETURN_IF_ERROR(call->info().Charge(
      NodeAttributionCost(spec, model.model->info(), NamedSaes(*model.model, spec.saes))));
  spec.excluded_positions = ExcludedPositions(
      model, spec.tokens, spec.saes,
      request.has_exclude_special_tokens() ? std::optional<bool>(request.exclude_special_tokens())
                                           : std::nullopt);
  return spec;
}

}  // namespace

void AttributionService::NodeAttribution(UnaryCall* call, const v1::NodeAttributionRequest* request,
                                         v1::NodeAttributionResponse* response) {
  const ServerEnv& env = env_;
  RunOnModel(env_, call, request->model(), request->input(),
             [&env, call, request, response](const Admitted& a) -> absl::StatusOr<UnaryFn> {
               LENSD_ASSIGN_OR_RETURN(NodeAttributionSpec spec,
                                      NodeAttributionSpecFor(env, call, *request, a));
               return [spec = std::move(spec), loaded = a.context.model,
                       response](const KeepGoing& keep_going) {
                 LENSD_ASSIGN_OR_RETURN(const NodeAttributionOutput out,
                                        loaded->model->AttributeNodes(spec, keep_going));
                 FillNodeAttributionResponse(out, *loaded, spec.tokens, response);
                 return absl::OkStatus();
               };
             });
}

}  // namespace lensd::server
