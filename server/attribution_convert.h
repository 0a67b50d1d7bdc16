// Conversions between the SAE and attribution messages (attribution.proto, LayerAttribution and
// the SAE parts of models.proto) and core's attribution types, with the validation that needs no
// model run: every error names the request field.
#ifndef LENSD_SERVER_ATTRIBUTION_CONVERT_H_
#define LENSD_SERVER_ATTRIBUTION_CONVERT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/attribution_types.h"
#include "core/model_registry.h"
#include "lensd/v1/attribution.pb.h"
#include "lensd/v1/lens.pb.h"
#include "lensd/v1/models.pb.h"
#include "lensd/v1/types.pb.h"
#include "server/server_env.h"

namespace lensd::server {

// Most nodes one NodeAttribution response carries (top_n 0 or above it keeps this many).
inline constexpr int64_t kMaxAttributionNodes = 100000;

absl::StatusOr<MetricSpec> ToMetricSpec(const v1::Metric& metric);

// Positions of the tokenizer's special tokens (none without a tokenizer) when `exclude` is set,
// or when it is absent and any of the SAEs (all loaded ones when `saes` is empty) asks for it.
std::vector<int64_t> ExcludedPositions(const LoadedModel& model, const std::vector<int64_t>& tokens,
                                       const std::vector<std::string>& saes,
                                       std::optional<bool> exclude);

absl::StatusOr<EncodeSaeSpec> ToEncodeSaeSpec(const v1::EncodeSaeRequest& request,
                                              std::vector<int64_t> tokens);
void FillEncodeSaeResponse(const std::vector<SaeEncoding>& encodings, const LoadedModel& model,
                           const std::vector<int64_t>& tokens, v1::EncodeSaeResponse* response);

// `patch` and `reference` are the resolved token ids of those inputs.
absl::StatusOr<NodeAttributionSpec> ToNodeAttributionSpec(
    const v1::NodeAttributionRequest& request, std::vector<int64_t> tokens,
    std::vector<int64_t> patch, std::vector<std::vector<int64_t>> reference);
void FillNodeAttributionResponse(const NodeAttributionOutput& output, const LoadedModel& model,
                                 const std::vector<int64_t>& tokens,
                                 v1::NodeAttributionResponse* response);

absl::StatusOr<LayerAttributionSpec> ToLayerAttributionSpec(
    const v1::LayerAttributionRequest& request, std::vector<int64_t> tokens);
void FillLayerAttributionResponse(const LayerAttributionOutput& output, const LoadedModel& model,
                                  const std::vector<int64_t>& tokens,
                                  v1::LayerAttributionResponse* response);

void FillSae(const SaeDescription& sae, v1::SaeInfo* out);

}  // namespace lensd::server

#endif  // LENSD_SERVER_ATTRIBUTION_CONVERT_H_
