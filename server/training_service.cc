#include "server/training_service.h"

#include <openssl/rand.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/eval_spec.h"
#include "core/jobs/job_manager.h"
#include "core/jobs/training_data.h"
#include "core/status_macros.h"
#include "core/training_spec.h"
#include "nlohmann/json.hpp"
#include "server/call.h"
#include "server/job_watches.h"
#include "server/patching_job.h"
#include "server/rpc_handlers.h"

namespace lensd::server {
namespace {

std::string NewJobId() {
  unsigned char bytes[8] = {};
  RAND_bytes(bytes, sizeof(bytes));
  return absl::StrCat("job-", absl::BytesToHexString(absl::string_view(
                                  reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

DataSpec ToData(const v1::DataSource& r) {
  DataSpec d;
  d.path = r.path();
  d.texts.assign(r.texts().texts().begin(), r.texts().texts().end());
  if (!r.text_field().empty()) d.text_field = r.text_field();
  return d;
}

TrainLensSpec ToSpec(const v1::TrainLensJob& r) {
  TrainLensSpec s;
  s.lens_name = r.lens_name();
  if (!r.loss().empty()) s.loss = r.loss();
  if (r.has_token_shift()) s.token_shift = r.token_shift();
  if (r.has_num_steps()) s.num_steps = r.num_steps();
  if (r.has_tokens_per_step()) s.tokens_per_step = r.tokens_per_step();
  if (r.has_seq_len()) s.seq_len = r.seq_len();
  if (r.has_micro_batch()) s.micro_batch = r.micro_batch();
  if (r.has_lr_scale()) s.lr_scale = r.lr_scale();
  if (r.has_momentum()) s.momentum = r.momentum();
  if (r.has_weight_decay()) s.weight_decay = r.weight_decay();
  s.bias_only = r.bias_only();
  s.warm_start = r.warm_start();
  if (r.has_seed()) s.seed = r.seed();
  if (r.has_checkpoint_every()) s.checkpoint_every = r.checkpoint_every();
  if (!r.precision().empty()) s.precision = r.precision();
  s.data = ToData(r.data());
  return s;
}

// The job, if `info`'s tenant may see it (its own, or any for admins); NOT_FOUND otherwise.
absl::StatusOr<JobRecord> Visible(const ServerEnv& env, const CallInfo& info,
                                  const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id: must be set");
  absl::StatusOr<JobRecord> job = env.jobs->Get(id);
  if (!job.ok() ||
      (job->tenant != info.principal().tenant && info.principal().role < Role::kAdmin)) {
    return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  }
  return job;
}

EvalLensSpec ToSpec(const v1::EvalLensJob& r, const ServedModel& model) {
  EvalLensSpec s;
  s.lenses.assign(r.lenses().begin(), r.lenses().end());
  if (s.lenses.empty()) {
    s.lenses = {"logit"};
    for (const LensDescription& lens : model.Lenses()) {
      if (lens.name != "logit") s.lenses.push_back(lens.name);
    }
  }
  if (r.has_seq_len()) s.seq_len = r.seq_len();
  if (r.has_batch()) s.batch = r.batch();
  if (r.has_tokens()) s.tokens = r.tokens();
  if (r.has_token_shift()) s.token_shift = r.token_shift();
  if (r.has_seed()) s.seed = r.seed();
  s.data = ToData(r.data());
  return s;
}

absl::Status CheckDataPath(const ServerEnv& env, const DataSpec& data) {
  if (data.path.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> path = ResolveDataPath(env.data_root, data.path);
  if (path.ok()) return absl::OkStatus();
  return absl::Status(path.status().code(), absl::StrCat("data.path: ", path.status().message()));
}

// Checks what can be checked before queueing: the spec, the model, the lens names, the data path.
absl::StatusOr<JobRecord> NewJob(const ServerEnv& env, const CallInfo& info,
                                 const v1::SubmitJobRequest& request) {
  if (request.model().empty()) return absl::InvalidArgumentError("model: name a loaded model");
  LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> model,
                         env.registry->Get(request.model()));
  JobRecord job;
  job.id = NewJobId();
  job.tenant = info.principal().tenant;
  job.model = request.model();
  job.device = model->device;
  if (request.has_train_lens()) {
    const TrainLensSpec spec = ToSpec(request.train_lens());
    LENSD_RETURN_IF_ERROR(spec.Validate());
    const std::filesystem::path lens_dir =
        std::filesystem::path(env.repository) / request.model() / "lenses" / spec.lens_name;
    if (std::filesystem::exists(lens_dir)) {
      return absl::AlreadyExistsError(absl::StrCat("lens_name: ", request.model(),
                                                   " already has a lens \"", spec.lens_name, "\""));
    }
    LENSD_RETURN_IF_ERROR(CheckDataPath(env, spec.data));
    job.kind = "train";
    job.spec = spec.ToJson();
    job.num_steps = spec.num_steps;
    return job;
  }
  if (request.has_eval_lens()) {
    const EvalLensSpec spec = ToSpec(request.eval_lens(), *model->model);
    LENSD_RETURN_IF_ERROR(spec.Validate());
    for (const std::string& name : spec.lenses) {
      const std::vector<LensDescription> loaded = model->model->Lenses();
      if (std::none_of(loaded.begin(), loaded.end(),
                       [&](const LensDescription& l) { return l.name == name; })) {
        return absl::NotFoundError(absl::StrCat("lenses: \"", name, "\" is not loaded for ",
                                                request.model(), "; LoadLens it first"));
      }
    }
    LENSD_RETURN_IF_ERROR(CheckDataPath(env, spec.data));
    job.kind = "eval";
    job.spec = spec.ToJson();
    return job;
  }
  if (request.has_activation_patching()) {
    LENSD_ASSIGN_OR_RETURN(const PatchingJobPlan plan,
                           PlanPatchingJob(request.activation_patching(), *model, env.limits));
    job.kind = "patch";
    job.spec = plan.spec_json;
    job.num_steps = plan.cells;
    return job;
  }
  return absl::InvalidArgumentError("kind: give train_lens, eval_lens or activation_patching");
}

}  // namespace

TrainingService::TrainingService(const ServerEnv& env)
    : env_(env),
      watches_(std::make_unique<JobWatches>(env.jobs, env.limits.max_watches_per_tenant)) {
  MarkMethodRawCallback(MethodIndex(v1::Training::service_full_name(), "SubmitJob"),
                        UnaryHandler(env, "SubmitJob", this, &TrainingService::SubmitJob));
  MarkMethodRawCallback(MethodIndex(v1::Training::service_full_name(), "GetJob"),
                        UnaryHandler(env, "GetJob", this, &TrainingService::GetJob));
  MarkMethodRawCallback(MethodIndex(v1::Training::service_full_name(), "ListJobs"),
                        UnaryHandler(env, "ListJobs", this, &TrainingService::ListJobs));
  MarkMethodRawCallback(MethodIndex(v1::Training::service_full_name(), "CancelJob"),
                        UnaryHandler(env, "CancelJob", this, &TrainingService::CancelJob));
  MarkMethodRawCallback(MethodIndex(v1::Training::service_full_name(), "WatchJob"),
                        StreamHandler(env, "WatchJob", this, &TrainingService::WatchJob));
}

TrainingService::~TrainingService() = default;

void TrainingService::SubmitJob(UnaryCall* call, const v1::SubmitJobRequest* request,
                                v1::Job* response) {
  absl::Status s = call->info().Admit(Role::kTrain);
  absl::StatusOr<JobRecord> job = s.ok() ? NewJob(env_, call->info(), *request) : s;
  if (!job.ok()) {
    call->Done(job.status());
    return;
  }
  call->info().set_model(request->model());
  env_.background->Run([this, call, response, job = *std::move(job)]() mutable {
    const absl::StatusOr<JobRecord> queued = env_.jobs->Submit(std::move(job));
    if (queued.ok()) FillJob(*queued, response);
    call->Done(queued.status());
  });
}

void TrainingService::GetJob(UnaryCall* call, const v1::GetJobRequest* request, v1::Job* response) {
  call->Done([&]() -> absl::Status {
    LENSD_RETURN_IF_ERROR(call->info().Admit(Role::kRead));
    LENSD_ASSIGN_OR_RETURN(const JobRecord job, Visible(env_, call->info(), request->id()));
    FillJob(job, response);
    return absl::OkStatus();
  }());
}

void TrainingService::ListJobs(UnaryCall* call, const v1::ListJobsRequest* request,
                               v1::ListJobsResponse* response) {
  call->Done([&]() -> absl::Status {
    LENSD_RETURN_IF_ERROR(call->info().Admit(Role::kRead));
    const Principal& who = call->info().principal();
    JobFilter filter;
    filter.tenant = who.tenant;
    if (!request->tenant().empty() && request->tenant() != who.tenant) {
      if (who.role < Role::kAdmin) {
        return absl::PermissionDeniedError("tenant: only admins list other tenants' jobs");
      }
      filter.tenant = request->tenant() == "*" ? "" : request->tenant();
    }
    if (request->limit() < 0 || request->limit() > 1000) {
      return absl::InvalidArgumentError("limit: 0..1000 (0: 100)");
    }
    filter.limit = request->limit() == 0 ? 100 : request->limit();
    if (request->state() != v1::JOB_STATE_UNSPECIFIED) {
      if (!v1::JobState_IsValid(request->state())) return absl::InvalidArgumentError("state");
      filter.state = static_cast<JobState>(request->state() - 1);
    }
    LENSD_ASSIGN_OR_RETURN(const std::vector<JobRecord> jobs, env_.jobs->List(filter));
    for (const JobRecord& j : jobs) FillJob(j, response->add_jobs());
    return absl::OkStatus();
  }());
}

void TrainingService::CancelJob(UnaryCall* call, const v1::CancelJobRequest* request,
                                v1::Job* response) {
  absl::Status s = call->info().Admit(Role::kTrain);
  if (s.ok()) s = Visible(env_, call->info(), request->id()).status();
  if (!s.ok()) {
    call->Done(s);
    return;
  }
  env_.background->Run([this, call, request, response] {
    const Principal& who = call->info().principal();
    absl::Status cancelled = env_.jobs->Cancel(request->id(), who.tenant, who.role >= Role::kAdmin);
    if (cancelled.ok()) {
      absl::StatusOr<JobRecord> job = env_.jobs->Get(request->id());
      cancelled = job.status();
      if (job.ok()) FillJob(*job, response);
    }
    call->Done(cancelled);
  });
}

void TrainingService::WatchJob(StreamCall<v1::Job>* call, const v1::WatchJobRequest* request) {
  absl::Status s = call->info().Admit(Role::kRead);
  if (s.ok()) s = Visible(env_, call->info(), request->id()).status();
  if (!s.ok()) {
    call->Done(s);
    return;
  }
  watches_->Watch(call, request->id(), call->info().principal().tenant);
}

}  // namespace lensd::server
