// ActivationPatching's messages: the request as a sweep spec (patching.proto), refused before any
// work when it is malformed or larger than --max_patching_cells, and the result as the wire's.
#ifndef LENSD_SERVER_PATCHING_CONVERT_H_
#define LENSD_SERVER_PATCHING_CONVERT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_registry.h"
#include "core/patching_types.h"
#include "core/served_model.h"
#include "lensd/v1/patching.pb.h"
#include "server/server_env.h"

namespace lensd::server {

// INVALID_ARGUMENT naming the field (no sweep, a sweep given twice, an unknown site or
// direction, a bad metric); RESOURCE_EXHAUSTED naming the cells and the bound.
absl::StatusOr<ActivationPatchingSpec> ToPatchingSpec(const v1::ActivationPatchingRequest& request,
                                                      std::vector<int64_t> clean,
                                                      std::vector<int64_t> corrupted,
                                                      const ServedModelInfo& info,
                                                      const Limits& limits);

// The patched runs of `spec`'s sweeps on a model described by `info`.
int64_t PatchingCellsFor(const ActivationPatchingSpec& spec, const ServedModelInfo& info);

void FillPatchingResult(const ActivationPatchingOutput& out, const LoadedModel& model,
                        const ActivationPatchingSpec& spec, v1::ActivationPatchingResult* result);

}  // namespace lensd::server

#endif  // LENSD_SERVER_PATCHING_CONVERT_H_
