// Admission by cost: what a request will make the server spend, estimated from its spec before
// any work starts, and the bounds that refuse it. An estimate counts the bytes of the answer (the
// serialized messages the client receives) and of the largest tensors the work holds at once.
// Repeated layers, positions, hook points and SAEs are refused (each costs the work again and
// the answer would carry it twice).
#ifndef LENSD_SERVER_REQUEST_COST_H_
#define LENSD_SERVER_REQUEST_COST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/attribution_types.h"
#include "core/lens_types.h"
#include "core/patching_types.h"
#include "core/served_model.h"
#include "server/server_env.h"

namespace lensd::server {

struct RequestCost {
  int64_t answer_bytes = 0;   // all the client receives, serialized
  int64_t message_bytes = 0;  // the largest single message of it (bounded by max_message_bytes)
  int64_t work_bytes = 0;     // the largest tensors the work holds at once
  std::string what;           // how the estimate was made: "13 rows x 2000 positions x top_k 50"
};

// `stream`: StreamDecode (every cell also carries its [vocab] log-probabilities).
RequestCost DecodeCost(const DecodeSpec& spec, const ServedModelInfo& info, bool stream);
// Generation: the streamed tokens, and the key/value cache of every layer over the prompt and
// the new tokens (the model's dtype; grouped-query heads counted as full ones).
RequestCost GenerateCost(const GenerateSpec& spec, const ServedModelInfo& info);
// Hook points the model lacks count nothing (they are refused by name elsewhere).
RequestCost ActivationsCost(const ActivationsSpec& spec, const ServedModelInfo& info);
// `saes`: the SAEs the request reads (every loaded one when it names none).
RequestCost EncodeSaeCost(const EncodeSaeSpec& spec, const std::vector<SaeDescription>& saes);
RequestCost NodeAttributionCost(const NodeAttributionSpec& spec, const ServedModelInfo& info,
                                const std::vector<SaeDescription>& saes);
// The full forward's captured components and logits, the components through the unembedding,
// and with per_head a batch of H + 1 rows to each layer (attention scores included).
RequestCost LayerAttributionCost(const LayerAttributionSpec& spec, const ServedModelInfo& info);
// `cells`: the sweep's patched runs (PatchingCells). The stream entering each layer kept, the
// patched values captured from the source run, and one batched pass of patched rows.
RequestCost PatchingCost(const ActivationPatchingSpec& spec, const ServedModelInfo& info,
                         int64_t cells);

// RESOURCE_EXHAUSTED naming the estimate and the bound it passes (--max_message_bytes for one
// message, --max_request_bytes for the whole answer or the work).
absl::Status CheckRequestCost(const RequestCost& cost, const Limits& limits);

// INVALID_ARGUMENT naming `field` and the first entry given twice.
absl::Status CheckDistinct(const char* field, const std::vector<int64_t>& values);
absl::Status CheckDistinct(const char* field, const std::vector<std::string>& values);

// The SAEs a request names (all loaded ones when `names` is empty); unknown names are skipped
// (the model refuses them by name when the work runs).
std::vector<SaeDescription> NamedSaes(const AttachmentsModel& model,
                                      const std::vector<std::string>& names);

}  // namespace lensd::server

#endif  // LENSD_SERVER_REQUEST_COST_H_
