// The wire's interventions (lensd.v1.Intervention) as core's InterventionSpec: inputs of patches
// and mean references resolved with the model's tokenizer, tensors copied, and the bounds that
// need no model run. Shape, position and head checks against the model are the engine's
// (core/engine/interventions/interventions.h), which names the same fields.
#ifndef LENSD_SERVER_INTERVENTION_CONVERT_H_
#define LENSD_SERVER_INTERVENTION_CONVERT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/intervention_types.h"
#include "core/model_registry.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "lensd/v1/interventions.pb.h"
#include "server/server_env.h"

namespace lensd::server {

inline constexpr int kMaxInterventions = 64;
// Patch sources and mean references of one request, in all (each is one more forward pass).
inline constexpr int kMaxInterventionInputs = 64;

// INVALID_ARGUMENT "interventions[i].<field>: ..." for a missing operation, a bad coefficient or
// too many interventions or inputs; the errors of ResolveInput for a source or reference.
// `source_tokens` receives the tokens of every source and reference (the extra forward work).
absl::StatusOr<std::vector<InterventionSpec>> ToInterventions(
    const google::protobuf::RepeatedPtrField<v1::Intervention>& list, const LoadedModel& model,
    const Limits& limits, int64_t* source_tokens);

}  // namespace lensd::server

#endif  // LENSD_SERVER_INTERVENTION_CONVERT_H_
