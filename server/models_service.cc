#include "server/models_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/attribution_convert.h"
#include "server/call.h"
#include "server/convert.h"
#include "server/rpc_handlers.h"

namespace lensd::server {
namespace {

v1::ModelState ToProto(ModelState state) {
  switch (state) {
    case ModelState::kAvailable:
      return v1::MODEL_STATE_AVAILABLE;
    case ModelState::kLoading:
      return v1::MODEL_STATE_LOADING;
    case ModelState::kReady:
      return v1::MODEL_STATE_READY;
    case ModelState::kUnloading:
      return v1::MODEL_STATE_UNLOADING;
    case ModelState::kFailed:
      return v1::MODEL_STATE_FAILED;
  }
  return v1::MODEL_STATE_UNSPECIFIED;
}

void FillLens(const LensDescription& lens, v1::LensInfo* out) {
  out->set_name(lens.name);
  out->set_kind(lens.kind);
  out->set_memory_bytes(lens.bytes);
  out->set_base_model(lens.base_model);
}

void FillModel(const ModelStatus& status, v1::ModelInfo* out) {
  out->set_name(status.name);
  out->set_state(ToProto(status.state));
  out->set_state_reason(status.reason);
  for (const std::string& lens : status.available_lenses) out->add_available_lenses(lens);
  for (const std::string& sae : status.available_saes) out->add_available_saes(sae);
  out->set_queue_depth(status.queue_depth);
  if (status.loaded == nullptr) return;
  const ServedModelInfo& info = status.loaded->model->info();
  out->set_architecture(info.architecture);
  out->set_num_layers(info.num_layers);
  out->set_d_model(info.d_model);
  out->set_num_heads(info.num_heads);
  out->set_vocab_size(info.vocab_size);
  out->set_max_positions(info.max_positions);
  out->set_dtype(info.dtype);
  out->set_device(status.loaded->device);
  out->set_memory_bytes(info.parameter_bytes);
  for (const std::string& hook : info.hook_points) out->add_hook_points(hook);
  for (const LensDescription& lens : status.lenses) FillLens(lens, out->add_lenses());
  for (const SaeDescription& sae : status.saes) FillSae(sae, out->add_saes());
  for (const int64_t id : info.eos_token_ids) out->add_eos_token_ids(id);
}

absl::Status Require(const std::string& value, const char* field) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must be set"));
  return absl::OkStatus();
}

// Admits an admin call whose `required` fields (the model first, then what it names) are set,
// then runs `admin` on the background thread and finishes the call with its status. Admission
// errors finish the call at once.
void RunAdmin(const ServerEnv& env, UnaryCall* call,
              const std::vector<std::pair<std::string, const char*>>& required,
              std::function<absl::Status()> admin) {
  absl::Status s = call->info().Admit(Role::kAdmin);
  for (const auto& [value, field] : required) {
    if (s.ok()) s = Require(value, field);
  }
  if (!s.ok()) {
    call->Done(s);
    return;
  }
  call->info().set_model(required.front().first);
  env.background->Run([&env, call, admin = std::move(admin)] {
    const absl::Status s = admin();
    if (env.metrics != nullptr) env.metrics->Refresh(*env.registry);
    call->Done(s);
  });
}

// GetServerInfo's answer for `principal`.
void FillServerInfo(const ServerEnv& env, const Principal& principal, v1::ServerInfo* response) {
  response->set_version(env.version);
  response->set_min_client_version(env.min_client_version);
  for (const MemoryBudget::Device& d : env.registry->Devices()) {
    v1::DeviceInfo* device = response->add_devices();
    device->set_name(d.name);
    device->set_budget_bytes(d.budget);
    device->set_used_bytes(d.used);
    const DeviceMemoryReading now = env.registry->DeviceMemory(d.name);
    device->set_total_bytes(now.total);
    device->set_free_bytes(now.free);
    device->set_allocated_bytes(now.allocated);
    device->set_reserved_bytes(now.reserved);
  }
  const Limits& l = env.limits;
  v1::Limits* limits = response->mutable_limits();
  limits->set_max_tokens_per_request(l.max_tokens_per_request);
  limits->set_max_message_bytes(l.max_message_bytes);
  limits->set_max_concurrent_streams(l.max_concurrent_streams);
  limits->set_max_queue_per_model(l.max_queue_per_model);
  limits->set_max_requests_per_tenant(l.max_requests_per_tenant);
  limits->set_batch_max_tokens(l.batch_max_tokens);
  limits->set_batch_max_delay_us(l.batch_max_delay_us);
  limits->set_max_new_tokens(l.max_new_tokens);
  limits->set_max_request_bytes(l.max_request_bytes);
  limits->set_max_tenant_bytes(l.max_tenant_bytes);
  limits->set_max_stream_buffer_bytes(l.max_stream_buffer_bytes);
  limits->set_max_hook_points(l.max_hook_points);
  limits->set_max_watches_per_tenant(l.max_watches_per_tenant);
  limits->set_max_patching_cells(l.max_patching_cells);
  response->set_auth_enabled(env.tokens.has_value());
  response->set_cpu_training_precision(env.cpu_training_precision);
  if (env.tokens.has_value()) {
    response->set_tenant(principal.tenant);
    response->set_role(RoleName(principal.role));
  }
}

}  // namespace

ModelsService::ModelsService(const ServerEnv& env) : env_(env) {
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "ListModels"),
                        UnaryHandler(env, "ListModels", this, &ModelsService::ListModels));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "GetModel"),
                        UnaryHandler(env, "GetModel", this, &ModelsService::GetModel));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "LoadModel"),
                        UnaryHandler(env, "LoadModel", this, &ModelsService::LoadModel));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "UnloadModel"),
                        UnaryHandler(env, "UnloadModel", this, &ModelsService::UnloadModel));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "LoadLens"),
                        UnaryHandler(env, "LoadLens", this, &ModelsService::LoadLens));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "UnloadLens"),
                        UnaryHandler(env, "UnloadLens", this, &ModelsService::UnloadLens));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "LoadSae"),
                        UnaryHandler(env, "LoadSae", this, &ModelsService::LoadSae));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "UnloadSae"),
                        UnaryHandler(env, "UnloadSae", this, &ModelsService::UnloadSae));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "Tokenize"),
                        UnaryHandler(env, "Tokenize", this, &ModelsService::Tokenize));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "Detokenize"),
                        UnaryHandler(env, "Detokenize", this, &ModelsService::Detokenize));
  MarkMethodRawCallback(MethodIndex(v1::Models::service_full_name(), "GetServerInfo"),
                        UnaryHandler(env, "GetServerInfo", this, &ModelsService::GetServerInfo));
}

void ModelsService::ListModels(UnaryCall* call, const v1::ListModelsRequest* request,
                               v1::ListModelsResponse* response) {
  absl::Status s = call->info().Admit(Role::kRead);
  if (s.ok()) {
    for (const ModelStatus& m : env_.registry->List()) FillModel(m, response->add_models());
  }
  call->Done(s);
}

void ModelsService::GetModel(UnaryCall* call, const v1::GetModelRequest* request,
                             v1::ModelInfo* response) {
  call->Done([&]() -> absl::Status {
    LENSD_RETURN_IF_ERROR(call->info().Admit(Role::kRead));
    LENSD_RETURN_IF_ERROR(Require(request->model(), "model"));
    LENSD_ASSIGN_OR_RETURN(const ModelStatus status, env_.registry->Status(request->model()));
    FillModel(status, response);
    return absl::OkStatus();
  }());
}

void ModelsService::LoadModel(UnaryCall* call, const v1::LoadModelRequest* request,
                              v1::ModelInfo* response) {
  RunAdmin(env_, call, {{request->model(), "model"}}, [this, request, response]() -> absl::Status {
    const absl::StatusOr<ModelStatus> status =
        env_.registry->Load(request->model(), {request->dtype(), request->device()});
    if (env_.models_changed) env_.models_changed();
    LENSD_RETURN_IF_ERROR(status.status());
    FillModel(*status, response);
    return absl::OkStatus();
  });
}

void ModelsService::UnloadModel(UnaryCall* call, const v1::UnloadModelRequest* request,
                                v1::UnloadModelResponse* response) {
  RunAdmin(env_, call, {{request->model(), "model"}}, [this, request, response]() -> absl::Status {
    const absl::StatusOr<int64_t> freed = env_.registry->Unload(request->model());
    if (env_.models_changed) env_.models_changed();
    LENSD_RETURN_IF_ERROR(freed.status());
    response->set_freed_bytes(*freed);
    return absl::OkStatus();
  });
}

void ModelsService::LoadLens(UnaryCall* call, const v1::LoadLensRequest* request,
                             v1::LensInfo* response) {
  RunAdmin(env_, call, {{request->model(), "model"}, {request->lens(), "lens"}},
           [this, request, response]() -> absl::Status {
             LENSD_ASSIGN_OR_RETURN(const LensDescription lens,
                                    env_.registry->LoadLens(request->model(), request->lens()));
             FillLens(lens, response);
             return absl::OkStatus();
           });
}

void ModelsService::UnloadLens(UnaryCall* call, const v1::UnloadLensRequest* request,
                               v1::UnloadLensResponse* response) {
  RunAdmin(env_, call, {{request->model(), "model"}, {request->lens(), "lens"}},
           [this, request, response]() -> absl::Status {
             LENSD_ASSIGN_OR_RETURN(const int64_t freed,
                                    env_.registry->UnloadLens(request->model(), request->lens()));
             response->set_freed_bytes(freed);
             return absl::OkStatus();
           });
}

void ModelsService::LoadSae(UnaryCall* call, const v1::LoadSaeRequest* request,
                            v1::SaeInfo* response) {
  RunAdmin(env_, call, {{request->model(), "model"}, {request->sae(), "sae"}},
           [this, request, response]() -> absl::Status {
             const SaeLoadOptions options{request->hook_point(), request->dtype()};
             LENSD_ASSIGN_OR_RETURN(
                 const SaeDescription sae,
                 env_.registry->LoadSae(request->model(), request->sae(), options));
             FillSae(sae, response);
             return absl::OkStatus();
           });
}

void ModelsService::UnloadSae(UnaryCall* call, const v1::UnloadSaeRequest* request,
                              v1::UnloadSaeResponse* response) {
  RunAdmin(env_, call, {{request->model(), "model"}, {request->sae(), "sae"}},
           [this, request, response]() -> absl::Status {
             LENSD_ASSIGN_OR_RETURN(const int64_t freed,
                                    env_.registry->UnloadSae(request->model(), request->sae()));
             response->set_freed_bytes(freed);
             return absl::OkStatus();
           });
}

void ModelsService::Tokenize(UnaryCall* call, const v1::TokenizeRequest* request,
                             v1::TokenizeResponse* response) {
  call->Done([&]() -> absl::Status {
    LENSD_RETURN_IF_ERROR(call->info().Admit(Role::kRead));
    LENSD_RETURN_IF_ERROR(Require(request->model(), "model"));
    LENSD_ASSIGN_OR_RETURN(const auto model, env_.registry->Get(request->model()));
    v1::Input input;
    input.set_text(request->text());
    input.set_add_special_tokens(request->add_special_tokens());
    int64_t bytes = 0;
    LENSD_ASSIGN_OR_RETURN(const std::vector<int64_t> ids,
                           ResolveInput(input, *model, env_.limits, &bytes));
    for (const int64_t id : ids) FillToken(*model, id, response->add_tokens());
    return absl::OkStatus();
  }());
}

void ModelsService::Detokenize(UnaryCall* call, const v1::DetokenizeRequest* request,
                               v1::DetokenizeResponse* response) {
  call->Done([&]() -> absl::Status {
    LENSD_RETURN_IF_ERROR(call->info().Admit(Role::kRead));
    LENSD_RETURN_IF_ERROR(Require(request->model(), "model"));
    LENSD_ASSIGN_OR_RETURN(const auto model, env_.registry->Get(request->model()));
    if (model->tokenizer == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("model ", model->name, " has no tokenizer.json"));
    }
    const int64_t vocab = model->model->info().vocab_size;
    std::vector<int32_t> ids;
    for (const int64_t id : request->ids()) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("ids: token id ", id, " out of range 0..", vocab - 1));
      }
      ids.push_back(static_cast<int32_t>(id));
    }
    response->set_text(model->tokenizer->Decode(ids, request->skip_special_tokens()));
    return absl::OkStatus();
  }());
}

void ModelsService::GetServerInfo(UnaryCall* call, const v1::GetServerInfoRequest* request,
                                  v1::ServerInfo* response) {
  const absl::Status s = call->info().Admit(Role::kRead);
  if (s.ok()) FillServerInfo(env_, call->info().principal(), response);
  call->Done(s);
}

}  // namespace lensd::server
