// Activation patching as a durable job (Training.SubmitJob's activation_patching), for sweeps
// that take longer than a client wants to hold a stream open: checked at submission as the
// ActivationPatching RPC checks it (errors named "activation_patching.<field>"), its inputs kept
// as token ids in the job's spec, run on a job thread with the job's progress (patched runs done
// of all) and cancellation, its result the RPC's ActivationPatchingResult as JSON.
#ifndef LENSD_SERVER_PATCHING_JOB_H_
#define LENSD_SERVER_PATCHING_JOB_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/jobs/job_manager.h"
#include "core/model_registry.h"
#include "lensd/v1/patching.pb.h"
#include "server/server_env.h"

namespace lensd::server {

struct PatchingJobPlan {
  std::string spec_json;  // the request with token-id inputs, proto3 JSON
  int64_t cells = 0;      // patched runs
};

// The job's plan for `request` on `model` (loaded as model.name): INVALID_ARGUMENT naming the
// field, RESOURCE_EXHAUSTED past --max_patching_cells or when the result JSON would pass
// --max_message_bytes (or the work --max_request_bytes).
absl::StatusOr<PatchingJobPlan> PlanPatchingJob(const v1::ActivationPatchingRequest& request,
                                                const LoadedModel& model, const Limits& limits);

// Runs a "patch" job's spec: the result JSON. CANCELLED or ABORTED as context.KeepGoing says.
absl::StatusOr<std::string> RunPatchingJob(const std::string& spec_json, const LoadedModel& model,
                                           const Limits& limits, JobContext& context);

}  // namespace lensd::server

#endif  // LENSD_SERVER_PATCHING_JOB_H_
