// lensd.v1.Lens ActivationPatching: the request as a sweep spec (patching.proto), refused before
// any work when it is malformed or larger than --max_patching_cells, and the streamed work that
// runs it on the model's worker (progress after each batched pass, then the grids).
#ifndef LENSD_SERVER_PATCHING_H_
#define LENSD_SERVER_PATCHING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/patching_types.h"
#include "core/served_model.h"
#include "lensd/v1/patching.pb.h"
#include "server/call.h"
#include "server/lens_work.h"
#include "server/server_env.h"

namespace lensd::server {

// INVALID_ARGUMENT naming the field (no sweep, a sweep given twice, an unknown site or
// direction, a bad metric); RESOURCE_EXHAUSTED naming the cells and the bound.
absl::StatusOr<ActivationPatchingSpec> ToPatchingSpec(const v1::ActivationPatchingRequest& request,
                                                      std::vector<int64_t> clean,
                                                      std::vector<int64_t> corrupted,
                                                      const ServedModelInfo& info,
                                                      const Limits& limits);

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
