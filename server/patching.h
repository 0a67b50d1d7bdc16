// lensd.v1.Lens ActivationPatching's work item: the sweep (patching_convert.h) run on the model's
// worker, progress streamed after each batched pass, then the grids.
#ifndef LENSD_SERVER_PATCHING_H_
#define LENSD_SERVER_PATCHING_H_

#include "core/patching_types.h"
#include "lensd/v1/patching.pb.h"
#include "server/call.h"
#include "server/lens_work.h"

namespace lensd::server {

class PatchingWork : public Work {
 public:
  PatchingWork(StreamCall<v1::ActivationPatchingResponse>* call, WorkContext context,
               ActivationPatchingSpec spec);
  void Run(absl::Span<Work* const> batch) override;
  void Reject(const absl::Status& status) override { call_->Done(status); }

 private:
  StreamCall<v1::ActivationPatchingResponse>* call_;
  WorkContext context_;
  ActivationPatchingSpec spec_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_PATCHING_H_
