// Conversions between the wire messages (lensd.v1) and core's request and result types, with
// the validation that needs no model run: every error names the request field.
#ifndef LENSD_SERVER_CONVERT_H_
#define LENSD_SERVER_CONVERT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/lens_types.h"
#include "core/model_registry.h"
#include "lensd/v1/lens.pb.h"
#include "lensd/v1/types.pb.h"
#include "server/server_env.h"

namespace lensd::server {

// The input's token ids (text is tokenized with the model's tokenizer). INVALID_ARGUMENT for an
// empty input; FAILED_PRECONDITION for text on a model without tokenizer.json;
// RESOURCE_EXHAUSTED above max_tokens_per_request. `text_bytes` receives the UTF-8 length of a
// text input (0 for token ids).
absl::StatusOr<std::vector<int64_t>> ResolveInput(const v1::Input& input, const LoadedModel& model,
                                                  const Limits& limits, int64_t* text_bytes);

// `status` naming `field` where it names "input" (ResolveInput's errors), for requests with
// other inputs ("corrupted", "interventions[2].patch"); other statuses as they are.
absl::Status RenameInputField(const absl::Status& status, absl::string_view field);

// The token ids of a request's other input (`field`: "corrupted", "patch", "reference[1]"):
// ResolveInput with its errors naming `field`; the input's text bytes are not counted.
absl::StatusOr<std::vector<int64_t>> ResolveOtherInput(const v1::Input& input,
                                                       const LoadedModel& model,
                                                       const Limits& limits,
                                                       absl::string_view field);

absl::StatusOr<DecodeSpec> ToDecodeSpec(const v1::DecodeRequest& request,
                                        std::vector<int64_t> tokens);
// `bits_per_byte`: multiply entropies and divergences by `nats_to_bpb` and say so.
void FillDecodeResponse(const v1::DecodeRequest& request, const DecodeOutput& output,
                        const LoadedModel& model, const std::vector<int64_t>& tokens,
                        double nats_to_bpb, v1::DecodeResponse* response);

absl::StatusOr<GenerateSpec> ToGenerateSpec(const v1::GenerateRequest& request,
                                            std::vector<int64_t> tokens, const Limits& limits);

// A token decoded alone ("" without a tokenizer).
std::string TokenText(const LoadedModel& model, int64_t id);
void FillToken(const LoadedModel& model, int64_t id, v1::Token* token);

}  // namespace lensd::server

#endif  // LENSD_SERVER_CONVERT_H_
