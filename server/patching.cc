#include "server/patching.h"

#include <utility>

#include "core/status_macros.h"
#include "server/patching_convert.h"

namespace lensd::server {

PatchingWork::PatchingWork(StreamCall<v1::ActivationPatchingResponse>* call, WorkContext context,
                           ActivationPatchingSpec spec)
    : call_(call), context_(std::move(context)), spec_(std::move(spec)) {}

void PatchingWork::Run(absl::Span<Work* const> batch) {
  if (absl::Status s = KeepGoing(); !s.ok()) {
    call_->Done(s);
    return;
  }
  const LoadedModel& model = *context_.model;
  absl::StatusOr<ActivationPatchingOutput> out =
      model.model->PatchActivations(spec_, [this](int64_t done, int64_t total) -> absl::Status {
        Yield();  // between batched passes
        LENSD_RETURN_IF_ERROR(KeepGoing());
        v1::ActivationPatchingResponse message;
        message.mutable_progress()->set_done(done);
        message.mutable_progress()->set_total(total);
        return call_->Write(message);
      });
  if (!out.ok()) {
    call_->Done(out.status());
    return;
  }
  v1::ActivationPatchingResponse message;
  FillPatchingResult(*out, model, spec_, message.mutable_result());
  call_->Done(call_->Write(message));
}

}  // namespace lensd::server
