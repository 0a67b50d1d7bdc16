// The scheduler's work items for the Lens service: each holds one RPC (its reactor, request and
// response), runs on a model worker, and finishes the RPC exactly once from Run or Reject.
#ifndef LENSD_SERVER_LENS_WORK_H_
#define LENSD_SERVER_LENS_WORK_H_

#include <functional>
#include <memory>
#include <vector>

#include "core/lens_types.h"
#include "core/model_registry.h"
#include "core/scheduler.h"
#include "lensd/v1/lens.pb.h"
#include "server/call.h"

namespace lensd::server {

// What every lens work item carries besides its request (the tenant's slot is held by the
// call: CallInfo::Hold).
struct WorkContext {
  std::shared_ptr<const LoadedModel> model;
};

// Sets the scheduling fields of `work` from the call (tenant, deadline, cancellation).
void Schedule(const CallInfo& info, std::shared_ptr<const Cancellation> cancellation,
              int64_t tokens, Work* work);

// A request admitted and resolved against its model: ready to become a work item.
struct Admitted {
  WorkContext context;
  std::vector<int64_t> tokens;
  int64_t text_bytes = 0;
};

// Checks the caller's read role, finds the loaded model, resolves the input and takes a tenant
// slot (held by `info` until the call finishes). Errors as CallInfo::Admit, ModelRegistry::Get,
// ResolveInput and TenantLimiter::Acquire.
absl::StatusOr<Admitted> Admit(const ServerEnv& env, CallInfo& info, const std::string& model,
                               const v1::Input& input);

// Hands the work to the model's scheduler; on refusal the work finishes itself with the reason.
void Submit(const LoadedModel& model, std::unique_ptr<Work> work);

// What a unary RPC runs on the model's worker: fills the response; may poll `keep_going` (OK, or
// CANCELLED / DEADLINE_EXCEEDED once the call should stop) between steps.
using UnaryFn = std::function<absl::Status(const KeepGoing& keep_going)>;

// A unary RPC's work on the model's worker: runs `fn` unless the call was cancelled or its
// deadline passed, then finishes the call with fn's status.
class UnaryWork : public Work {
 public:
  UnaryWork(UnaryCall* call, WorkContext context, UnaryFn fn)
      : call_(call), context_(std::move(context)), fn_(std::move(fn)) {}
  void Run(absl::Span<Work* const> batch) override;
  void Reject(const absl::Status& status) override { call_->Done(status); }

 private:
  UnaryCall* call_;
  WorkContext context_;
  UnaryFn fn_;
};

// Admits `call` and lets `prepare` check the request on the gRPC thread and return the work to
// run on the model's worker (it fills the response); the call finishes with that work's status,
// or at once with the admission or preparation error.
void RunOnModel(const ServerEnv& env, UnaryCall* call, const std::string& model,
                const v1::Input& input,
                const std::function<absl::StatusOr<UnaryFn>(const Admitted&)>& prepare);

class DecodeWork : public Work {
 public:
  DecodeWork(UnaryCall* call, const v1::DecodeRequest* request, v1::DecodeResponse* response,
             WorkContext context, DecodeSpec spec, double nats_to_bpb);
  void Run(absl::Span<Work* const> batch) override;
  void Reject(const absl::Status& status) override { call_->Done(status); }

 private:
  void Finish(const absl::StatusOr<DecodeOutput>& output);

  UnaryCall* call_;
  const v1::DecodeRequest* request_;
  v1::DecodeResponse* response_;
  WorkContext context_;
  DecodeSpec spec_;
  double nats_to_bpb_;
};

class StreamDecodeWork : public Work {
 public:
  StreamDecodeWork(StreamCall<v1::StreamDecodeResponse>* call, v1::DecodeRequest request,
                   WorkContext context, DecodeSpec spec, double nats_to_bpb);
  void Run(absl::Span<Work* const> batch) override;
  void Reject(const absl::Status& status) override { call_->Done(status); }

 private:
  StreamCall<v1::StreamDecodeResponse>* call_;
  v1::DecodeRequest request_;
  WorkContext context_;
  DecodeSpec spec_;
  double nats_to_bpb_;
};

class GenerateWork : public Work {
 public:
  GenerateWork(StreamCall<v1::GenerateResponse>* call, WorkContext context, GenerateSpec spec);
  void Run(absl::Span<Work* const> batch) override;
  void Reject(const absl::Status& status) override { call_->Done(status); }

 private:
  StreamCall<v1::GenerateResponse>* call_;
  WorkContext context_;
  GenerateSpec spec_;
};

class ActivationsWork : public Work {
 public:
  ActivationsWork(StreamCall<v1::TensorChunk>* call, WorkContext context, ActivationsSpec spec,
                  int64_t chunk_bytes);
  void Run(absl::Span<Work* const> batch) override;
  void Reject(const absl::Status& status) override { call_->Done(status); }

 private:
  StreamCall<v1::TensorChunk>* call_;
  WorkContext context_;
  ActivationsSpec spec_;
  int64_t chunk_bytes_;
};

// Splits a tensor into chunks of at most `chunk_bytes` and hands each to `write`.
absl::Status WriteChunks(const std::string& name, const HostTensor& tensor, int64_t chunk_bytes,
                         const std::function<absl::Status(v1::TensorChunk)>& write);

}  // namespace lensd::server

#endif  // LENSD_SERVER_LENS_WORK_H_
